"""Delivery over a real uvicorn server with the stock python-socketio client (memory store)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from _serving import serve_asgi, until
from socketio_delivery import RESYNC_EVENT, Delivery


class App:
    def __init__(self, **options: Any) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.delivery = Delivery(self.sio, store="memory://", **options)
        self.connects: list[tuple[str, bool, str | None]] = []
        self.calls = 0
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            self.connects.append((sid, self.delivery.recovered(sid), self.delivery.recovery_failed(sid)))
            if not self.delivery.recovered(sid) and auth and auth.get("room"):
                await sio.enter_room(sid, auth["room"])
                await sio.save_session(sid, {"user": auth.get("user")})

        @sio.event
        async def whoami(sid: str) -> Any:
            return (await sio.get_session(sid)).get("user")

        @sio.event
        async def order(sid: str, payload: dict[str, Any]) -> Any:
            self.calls += 1
            await asyncio.sleep(payload.get("delay", 0))
            return {"n": self.calls, "item": payload["item"]}


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> tuple[App, str]:
            app = App(**options)
            stack.push_async_callback(app.delivery.close)  # after its server stopped
            url = await stack.enter_async_context(serve_asgi(socketio.ASGIApp(app.sio)))
            return app, url

        yield start


class Client:
    """A stock AsyncClient plus the few lines a CSR client needs (pid + last offset)."""

    def __init__(self, auth: dict[str, Any] | None = None, reconnection_delay: float = 0.05) -> None:
        self.sio = socketio.AsyncClient(
            reconnection_delay=reconnection_delay,
            reconnection_delay_max=reconnection_delay,
            randomization_factor=0,
        )
        self.auth = auth or {}
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False
        self.received: list[tuple[str, Any]] = []
        self.resyncs: list[Any] = []
        self.connected = asyncio.Event()
        original = self.sio._handle_connect

        async def handle_connect(namespace: str, data: Any) -> None:
            pid = (data or {}).get("pid")
            self.recovered = pid is not None and pid == self.pid
            self.pid = pid
            await original(namespace, data)
            self.connected.set()

        self.sio._handle_connect = handle_connect

        @self.sio.on("*")
        async def any_event(event: str, *args: Any) -> None:
            if event == RESYNC_EVENT:
                self.resyncs.append(args[0])
                return
            *payload, offset = args
            self.offset = offset
            self.received.append((event, payload[0] if len(payload) == 1 else payload))

    def _auth(self) -> dict[str, Any]:
        extra = {"pid": self.pid, **({"offset": self.offset} if self.offset else {})} if self.pid else {}
        return {**self.auth, **extra}

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, auth=self._auth, transports=["websocket"])
        await self.connected.wait()

    async def connect_with(self, url: str, auth: dict[str, Any]) -> None:
        """Connect presenting ``auth`` (say another client's pid); remembers that pid."""
        self.pid = auth.get("pid")
        await self.sio.connect(url, auth=auth, transports=["websocket"])
        await self.connected.wait()

    async def drop(self) -> None:
        """Close the transport without a goodbye; the client reconnects by itself."""
        self.connected.clear()
        await self.sio.eio.ws.close()

    async def wait_for(self, count: int) -> None:
        for _ in range(500):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"got {len(self.received)} events, wanted {count}: {self.received}")


async def test_emits_carry_increasing_offsets(serve: Callable[..., Any]) -> None:
    app, url = await serve()
    client = Client({"room": "r1"})
    await client.connect(url)
    for n in range(5):
        await app.sio.emit("tick", {"n": n}, room="r1")
    await client.wait_for(5)
    assert [data["n"] for _, data in client.received] == list(range(5))
    assert client.pid
    assert len(client.pid) >= 22
    await client.sio.disconnect()


async def test_reconnect_recovers_sid_rooms_session_and_missed_events(serve: Callable[..., Any]) -> None:
    app, url = await serve()
    client = Client({"room": "r1", "user": "ada"}, reconnection_delay=0.5)
    await client.connect(url)
    sid = client.sio.get_sid()
    await app.sio.emit("tick", 0, room="r1")
    await client.wait_for(1)
    await client.drop()
    # the client comes back after 0.5 s; the server notices the drop at once
    await until(lambda: not app.sio.manager.is_connected(sid, "/"), "the server to see the drop")
    for n in range(1, 4):
        await app.sio.emit("tick", n, room="r1")
    await app.sio.emit("other", "x", room="r2")
    await client.connected.wait()
    await client.wait_for(4)
    assert client.recovered
    assert client.sio.get_sid() == sid
    assert [data for _, data in client.received] == [0, 1, 2, 3]
    assert app.connects[-1] == (sid, True, None)
    assert await client.sio.call("whoami") == "ada"
    await app.sio.emit("tick", 4, room="r1")
    await client.wait_for(5)
    assert [data for _, data in client.received] == [0, 1, 2, 3, 4]
    await client.sio.disconnect()


async def test_forged_pid_gets_new_session_and_resync(serve: Callable[..., Any]) -> None:
    _app, url = await serve()
    client = Client({"room": "r1"})
    client.pid = "forged-forged-forged-1"
    await client.connect(url)
    assert not client.recovered
    await until(lambda: bool(client.resyncs), "the resync event")
    assert client.resyncs == [{"reason": "unknown, expired or already used session"}]
    await client.sio.disconnect()


async def test_retried_emit_runs_handler_once(serve: Callable[..., Any]) -> None:
    app, url = await serve()
    client = Client()
    await client.connect(url)
    first = await client.sio.call("order", {"idempotencyKey": "k1", "item": 7})
    again = await client.sio.call("order", {"idempotencyKey": "k1", "item": 7})
    other = await client.sio.call("order", {"idempotencyKey": "k2", "item": 8})
    assert first == again == {"n": 1, "item": 7}
    assert other == {"n": 2, "item": 8}
    both = await asyncio.gather(
        client.sio.call("order", {"idempotencyKey": "k3", "item": 9, "delay": 0.2}),
        client.sio.call("order", {"idempotencyKey": "k3", "item": 9, "delay": 0.2}),
    )
    assert both[0] == both[1] == {"n": 3, "item": 9}
    assert app.calls == 3
    await client.sio.disconnect()


async def _connect_with(url: str, auth: dict[str, Any]) -> Client | None:
    """A client presenting ``auth`` once (no reconnection); ``None`` when the server turned it away."""
    client = Client()
    client.sio.reconnection = False
    try:
        await asyncio.wait_for(client.connect_with(url, auth), 5)
    except (socketio.exceptions.ConnectionError, asyncio.TimeoutError):
        await client.sio.disconnect()
        return None
    return client


async def test_a_pid_recovers_its_session_once(serve: Callable[..., Any]) -> None:
    """While a session is connected (recovered or not), another use of its pid recovers nothing."""
    app, url = await serve()
    owner = Client({"room": "r1", "user": "ada"}, reconnection_delay=5.0)
    await owner.connect(url)
    sid = owner.sio.get_sid()
    await app.sio.emit("tick", 0, room="r1")
    await owner.wait_for(1)
    stolen = {"pid": owner.pid, "offset": owner.offset}

    assert await _connect_with(url, stolen) is None  # connected: turned away, the owner keeps it
    assert owner.sio.connected
    assert app.sio.manager.is_connected(sid, "/")

    await owner.drop()  # away for 5 s: two uses of its pid race for the session
    await until(lambda: not app.sio.manager.is_connected(sid, "/"), "the server to see the drop")
    await app.sio.emit("tick", 1, room="r1")
    uses = await asyncio.gather(_connect_with(url, stolen), _connect_with(url, stolen))
    winners = [c for c in uses if c is not None]
    assert len(winners) == 1, "exactly one use recovers"
    winner = winners[0]
    assert (winner.recovered, winner.sio.get_sid()) == (True, sid)
    await winner.wait_for(1)
    assert [data for _, data in winner.received] == [1]
    assert await _connect_with(url, stolen) is None  # and while it is connected, no third one
    await winner.sio.disconnect()
    await owner.sio.disconnect()


async def test_a_failed_recovery_does_not_leave_the_session_behind(serve: Callable[..., Any]) -> None:
    """The client is told to resync with a new session: the old pid must not recover later."""
    app, url = await serve()
    owner = Client({"room": "r1"}, reconnection_delay=30.0)
    await owner.connect(url)
    sid, pid = owner.sio.get_sid(), owner.pid
    await app.sio.emit("tick", 0, room="r1")
    await owner.wait_for(1)
    assert owner.offset is not None
    epoch, seq = owner.offset.split("-")
    unknown = f"{epoch}-{int(seq, 16) + 1000:012x}"  # well-formed, never handed out
    await owner.drop()  # away for 30 s
    await until(lambda: not app.sio.manager.is_connected(sid, "/"), "the server to see the drop")
    first = await _connect_with(url, {"pid": pid, "offset": unknown})
    assert first is not None
    assert not first.recovered
    assert first.sio.get_sid() != sid
    second = await _connect_with(url, {"pid": pid})
    assert second is not None
    assert not second.recovered
    await until(lambda: bool(first.resyncs and second.resyncs), "the resync events")
    assert first.resyncs == [{"reason": "offset no longer available"}]
    assert second.resyncs == [{"reason": "unknown, expired or already used session"}]
    for client in (first, second, owner):
        await client.sio.disconnect()
