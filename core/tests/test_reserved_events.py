"""Event names a client must not send (issue 10, item 5): dropped and logged, never dispatched.

A raw Socket.IO client over one WebSocket sends what no real client sends: an EVENT named
``disconnect`` (python-socketio would run its disconnect path, and Delivery would save the session
as disconnected while its transport stays up), or ``connect`` (python-socketio would run the app's
connect handler again with client-chosen ``environ``/``auth``, Delivery or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
import websockets
from _serving import serve_asgi, until
from socketio_delivery import Delivery
from socketio_delivery.wire import RESERVED_EVENTS

WAIT = 10.0


class Raw:
    """One Engine.IO v4 WebSocket speaking Socket.IO v5 on ``/``; a reader answers every ping."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[str] = []
        self._packets: asyncio.Queue[str] = asyncio.Queue()
        self._ack = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Raw]:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(ws_url) as ws:
            opening = str(await asyncio.wait_for(ws.recv(), WAIT))
            assert opening.startswith("0{"), opening
            raw = cls(ws)
            reader = asyncio.create_task(raw._read())
            try:
                yield raw
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.ws:
                if message == "2":
                    await self.ws.send("3")  # answered at once: this connection is alive
                    continue
                self.received.append(str(message)[1:])
                self._packets.put_nowait(str(message)[1:])

    async def packet(self) -> str:
        return await asyncio.wait_for(self._packets.get(), WAIT)

    async def connect(self, payload: Any = None) -> dict[str, Any]:
        await self.ws.send("40" + ("" if payload is None else json.dumps(payload)))
        while True:
            packet = await self.packet()
            if packet.startswith("0"):
                reply: dict[str, Any] = json.loads(packet[1:])
                return reply
            assert not packet.startswith("4"), packet

    async def send_event(self, *data: Any) -> None:
        await self.ws.send("42" + json.dumps(list(data)))

    async def call(self, *data: Any) -> Any:
        """Emit with an ack and return the ack's arguments."""
        self._ack += 1
        await self.ws.send(f"42{self._ack}" + json.dumps(list(data)))
        while True:
            packet = await self.packet()
            if packet.startswith(f"3{self._ack}["):
                return json.loads(packet[len(str(self._ack)) + 1 :])


class App:
    """A Delivery app on the memory store that records its connect and disconnect handler runs."""

    def __init__(self) -> None:
        # async_handlers=False: a handler's exception reaches Engine.IO's handler, which logs it
        self.sio = socketio.AsyncServer(async_mode="asgi", async_handlers=False)
        self.delivery = Delivery(self.sio, store="memory://")
        self.connects: list[tuple[str, Any]] = []
        self.disconnects: list[tuple[str, Any]] = []
        self.events: list[tuple[str, Any]] = []
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            self.connects.append((sid, auth))
            await sio.enter_room(sid, "members")

        @sio.event
        async def disconnect(sid: str, reason: Any) -> None:
            self.disconnects.append((sid, reason))

        @sio.on("*")
        async def any_event(event: str, sid: str, *args: Any) -> None:
            self.events.append((event, args))

        @sio.event
        async def echo(sid: str, data: Any) -> Any:
            return data

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        async with serve_asgi(socketio.ASGIApp(self.sio)) as url:
            try:
                yield url
            finally:
                await self.delivery.close()


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_event_named_disconnect_does_not_disconnect_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    async with app.serve() as url, Raw.open(url) as raw:
        reply = await raw.connect()
        await raw.send_event("disconnect", "transport close")
        assert await raw.call("echo", "still here") == ["still here"]
        # the session is connected: its pid recovers nothing while the transport is up
        async with Raw.open(url) as thief:
            await thief.ws.send("40" + json.dumps({"pid": reply["pid"]}))
            with contextlib.suppress(asyncio.TimeoutError):  # refused for now: connected elsewhere
                await asyncio.wait_for(thief.ws.wait_closed(), 5)
        assert not any(p.startswith("0") for p in thief.received), thief.received
        assert app.disconnects == []
        assert await raw.call("echo", "mine") == ["mine"]
        await app.sio.emit("news", "for members", room="members")
        await until(lambda: any(p.startswith('2["news"') for p in raw.received), "the live event")
    assert _errors(caplog) == []


async def test_an_event_named_disconnect_with_a_list_reason_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    async with app.serve() as url, Raw.open(url) as raw:
        await raw.connect()
        await raw.send_event("disconnect", ["x"])
        await raw.send_event("disconnect")
        assert await raw.call("echo", 1) == [1]
        assert app.disconnects == []
    assert _errors(caplog) == []


async def test_an_event_named_connect_does_not_run_the_connect_handler_again() -> None:
    app = App()
    async with app.serve() as url, Raw.open(url) as raw:
        reply = await raw.connect({"user": "guest"})
        await raw.send_event("connect", {}, {"user": "root"})
        await raw.send_event("connect_error", {"message": "forged"})
        assert await raw.call("echo", "ok") == ["ok"]
        assert app.connects == [(reply["sid"], {"user": "guest"})]


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
async def test_no_reserved_name_reaches_a_handler_and_drops_are_logged_once(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    caplog.set_level(logging.WARNING, logger="socketio_delivery")
    async with app.serve() as url, Raw.open(url) as raw:
        await raw.connect()
        for _ in range(20):
            await raw.send_event(name, {"forged": True})
        await raw.send_event("normal", 1)
        assert await raw.call("echo", "ok") == ["ok"]
        assert ("normal", (1,)) in app.events
        assert all(event != name for event, _ in app.events)
        assert len(app.connects) == 1
        assert app.disconnects == []
    drops = [r for r in caplog.records if r.name == "socketio_delivery" and repr(name) in r.getMessage()]
    assert 1 <= len(drops) <= 2, [r.getMessage() for r in drops]
