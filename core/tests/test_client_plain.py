"""DeliveryClient against a plain python-socketio AsyncServer (no Delivery, no recovery).

Nothing is stripped (the server appends no offsets and sends no pid), nothing is added to the
CONNECT auth, and the reliable emit still queues and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from _serving import serve_asgi, until
from socketio_delivery.client import DeliveryClient


@pytest.fixture
async def plain() -> AsyncIterator[tuple[str, socketio.AsyncServer, dict[str, Any]]]:
    sio = socketio.AsyncServer(async_mode="asgi")
    seen: dict[str, Any] = {"auth": [], "runs": Counter()}

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any) -> None:
        seen["auth"].append(auth)

    @sio.on("emit-to-me")
    async def emit_to_me(sid: str, spec: dict[str, Any]) -> bool:
        await sio.emit(spec["event"], tuple(spec["args"]), to=sid)
        return True

    retried = asyncio.Event()

    @sio.on("slow-first")
    async def slow_first(sid: str, payload: dict[str, Any]) -> str:
        key: str = payload["idempotencyKey"]
        seen["runs"][key] += 1
        if seen["runs"][key] == 1:
            await retried.wait()  # the first run ends only once a retry came in
        else:
            retried.set()
        return key

    async with serve_asgi(socketio.ASGIApp(sio)) as url:
        yield url, sio, seen


async def test_nothing_is_stripped_or_added_without_a_recovery_server(
    plain: tuple[str, socketio.AsyncServer, dict[str, Any]],
) -> None:
    url, _sio, seen = plain
    client = DeliveryClient(handle_sigint=False)
    got: list[tuple[str, str]] = []
    client.on("two", lambda a, b: got.append((a, b)))
    try:
        await client.connect(url, auth={"token": "t"})
        await client.emit("emit-to-me", {"event": "two", "args": ["x", "a string last"]})
        await until(lambda: bool(got), "the event", timeout=10)
        assert got == [("x", "a string last")]
        assert client.offset is None
        assert seen["auth"] == [{"token": "t"}]
        # the queue retries here too; without Delivery the handler runs once per attempt
        key = await client.emit("slow-first", {}, ack_timeout=0.2, retries=10)
        assert seen["runs"][key] == 2
    finally:
        with contextlib.suppress(Exception):
            await client.shutdown()
