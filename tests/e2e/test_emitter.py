"""A process without a Socket.IO server emits through the shared store with ``Emitter``.

The server is a separate process (tests/support/delivery_app.py) on the same SQLite file; the
test process holds only an ``Emitter`` and a stock python-socketio client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_pyclient import PyClient
from socketio_delivery import ConfigurationError, Emitter, InvalidArgumentError, StoreUnavailableError

AppFactory = Callable[..., DeliveryAppProcess]


async def test_emits_from_another_process_are_delivered_live_and_replayed(
    make_app: AppFactory, sqlite_url: str, room: str
) -> None:
    app = make_app(store=sqlite_url)
    async with Emitter(sqlite_url) as emitter:
        first = await emitter.publish("news", {"n": 1}, room=room)
        second = await emitter.publish("news", {"n": 2}, room=room)
        await emitter.publish("news", {"n": "other room"}, room=f"{room}-other")

        # a client that had seen `first` gets what it missed, from the server process
        async with PyClient.connect(app.url, auth={"offset": first, "rooms": [room]}) as client:
            missed = await client.wait_event("news")
            assert missed["args"] == [{"id": second, "data": {"n": 2}}, second]

            live = await emitter.emit("tick", ({"n": 3}, "two args"), room=room)
            assert (await client.wait_event("tick"))["args"] == [{"n": 3}, "two args", live]
            blob = await emitter.emit("file", b"\x00\x01", to=client.sid)
            assert (await client.wait_event("file"))["args"] == [b"\x00\x01", blob]
            skipped = await emitter.emit("tick", {"n": "skipped"}, room=room, skip_sid=client.sid)
            after = await emitter.emit("tick", {"n": 4})  # everyone on the namespace
            assert (await client.wait_event("tick"))["args"] == [{"n": 4}, after]
            assert skipped < after
            assert [e["event"] for e in client.events] == ["news", "tick", "file", "tick"]

    log = await app.control("connects")
    assert log, "the server saw the client"


async def test_an_emitter_needs_a_store_shared_between_processes_and_a_real_event(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError, match="not shared between processes"):
        Emitter("memory://")
    async with Emitter(sqlite_url) as emitter:
        bad: list[Any] = ["", "connect", "disconnect", "delivery:resync", 42]
        for event in bad:
            with pytest.raises(InvalidArgumentError):
                await emitter.emit(event, 1)
        with pytest.raises(InvalidArgumentError):
            await emitter.emit("tick", {1, 2})  # not JSON, not bytes


async def test_an_emitter_whose_store_is_down_raises() -> None:
    emitter = Emitter("redis://127.0.0.1:1/0?socket_connect_timeout=0.5&retries=0")
    with pytest.raises(StoreUnavailableError):
        await emitter.emit("tick", 1)
    await emitter.close()
