"""Issue 10: nothing a client sends, and no store fault, breaks delivery for anyone.

Real uvicorn servers, the stock python-socketio client (plus the few lines a CSR client
needs), and raw Engine.IO/Socket.IO over websockets where a client must misbehave. Stores
are ``MemoryEventStore`` subclasses that fail or hang on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
import websockets
from _serving import serve_asgi, until
from socketio_delivery import (
    RESYNC_EVENT,
    Delivery,
    Emitter,
    InvalidArgumentError,
    UndeliveredError,
)
from socketio_delivery._compat import server as compat
from socketio_delivery.dedup import invalid_key
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.recovery import ConnectRequest


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class FaultyStore(MemoryEventStore):
    """The memory store, with switches that make it fail, hang or lose its data."""

    def __init__(self) -> None:
        super().__init__()
        self.fetch_raises: BaseException | None = None
        self.claim_hangs = False

    async def fetch_since(self, stream: str, offset: str | None, **kwargs: Any) -> Any:
        if self.fetch_raises is not None and offset is not None:
            raise self.fetch_raises
        return await super().fetch_since(stream, offset, **kwargs)

    async def claim_session(self, key: str, *, lease: float | None = None) -> Any:
        if self.claim_hangs:
            await asyncio.sleep(3600)
        return await super().claim_session(key, lease=lease)

    def wipe(self) -> None:
        """Lose every event and start a new epoch (a store restarted without its data)."""
        self._streams.clear()
        self.epoch = secrets.token_hex(4)


class App:
    def __init__(self, store: MemoryEventStore, **options: Any) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi", **options.pop("sio", {}))
        self.store = store
        self.delivery = Delivery(self.sio, store=store, **options)
        self.calls = 0
        sio = self.sio

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            if not self.delivery.recovered(sid):
                await sio.enter_room(sid, "r")

        @sio.event
        async def relay(sid: str, data: Any) -> None:
            await sio.emit("relayed", data, room="r")

        @sio.event
        async def blob(sid: str, payload: Any) -> Any:
            self.calls += 1
            return (payload.get("size") and b"\x00" * payload["size"]) or b"\x01\x02"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(store: MemoryEventStore | None = None, **options: Any) -> tuple[App, str]:
            app = App(store or FaultyStore(), **options)
            stack.push_async_callback(app.delivery.close)
            url = await stack.enter_async_context(serve_asgi(socketio.ASGIApp(app.sio)))
            return app, url

        yield start


class Client:
    """A stock AsyncClient that keeps its pid and last offset, and records what it got."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.05)
        self.pid: str | None = None
        self.offset: str | None = None
        self.events: list[tuple[str, Any]] = []
        self.resyncs: list[Any] = []
        self.connected = asyncio.Event()
        original = self.sio._handle_connect

        async def handle_connect(namespace: str, data: Any) -> None:
            self.pid = (data or {}).get("pid")
            await original(namespace, data)
            self.connected.set()

        self.sio._handle_connect = handle_connect

        @self.sio.on("*")
        async def any_event(event: str, *args: Any) -> None:
            if event == RESYNC_EVENT:
                self.resyncs.append(args[0])
                return
            *payload, self.offset = args
            self.events.append((event, payload[0] if payload else None))

    async def connect(self, url: str, auth: dict[str, Any] | None = None) -> None:
        await self.sio.connect(url, auth=auth, transports=["websocket"])
        await self.connected.wait()


@contextlib.asynccontextmanager
async def raw_client(url: str, auth: Any = None) -> AsyncIterator[Any]:
    """A raw Engine.IO/Socket.IO websocket, connected to "/" (it answers no pings)."""
    ws = await websockets.connect(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
    async with ws:
        await ws.recv()  # the Engine.IO open packet
        await ws.send("40" + (json.dumps(auth) if auth is not None else ""))
        yield ws


async def test_an_event_that_cannot_be_sent_is_refused_before_it_is_stored(serve: Callable[..., Any]) -> None:
    app, url = await serve(max_event_bytes=2000)
    client = Client()
    await client.connect(url)
    before = await app.store.last_offset("/")
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        await app.sio.emit("relayed", nested(500), room="r")
    with pytest.raises(InvalidArgumentError, match="max_event_bytes"):
        await app.sio.emit("relayed", "x" * 3000, room="r")
    with pytest.raises(InvalidArgumentError, match="reserved"):
        await app.delivery.publish("disconnect", {"x": 1})
    assert await app.store.last_offset("/") == before  # nothing stored
    await app.sio.emit("relayed", "fine", room="r")
    await until(lambda: client.events == [("relayed", "fine")], "the next event")
    await client.sio.disconnect()


async def test_a_client_relaying_a_poison_value_does_not_stall_the_namespace(
    serve: Callable[..., Any],
) -> None:
    _app, url = await serve()
    victim = Client()
    await victim.connect(url)
    async with raw_client(url) as attacker:
        await attacker.send("42" + json.dumps(["relay", nested(500)]))  # the app's emit raises
        await attacker.send("42" + json.dumps(["relay", "after"]))
        await until(lambda: ("relayed", "after") in victim.events, "the next event")
    assert victim.events == [("relayed", "after")]
    await victim.sio.disconnect()


async def test_a_poison_event_in_the_store_is_skipped_live_and_in_replays(serve: Callable[..., Any]) -> None:
    app, url = await serve()
    client = Client()
    await client.connect(url)
    await app.sio.emit("relayed", 1, room="r")
    await until(lambda: len(client.events) == 1, "the first event")
    offset = client.offset
    # written by hand (an older version, an Emitter, an operator): it cannot be encoded
    await app.store.persist("/", {"e": "relayed", "a": [nested(700)]}, rooms=["r"])
    await app.sio.emit("relayed", 2, room="r")
    await until(lambda: len(client.events) == 2, "the event after the poison one")
    assert client.events == [("relayed", 1), ("relayed", 2)]
    tailer = app.delivery.live.tailers["/"]
    assert tailer.failures == 1
    # a recovery from before the poison event gets its CONNECT reply and the rest
    late = Client()
    await asyncio.wait_for(late.connect(url, {"offset": offset}), 10)  # the explicit recipe
    await until(lambda: len(late.events) == 1, "the replay")
    assert late.events == [("relayed", 2)]
    await late.sio.disconnect()


async def test_emit_raises_when_this_process_could_not_deliver_it(
    serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = await serve()
    client = Client()
    await client.connect(url)

    async def broken(*args: Any) -> list[str]:
        raise RuntimeError("socket writer broke")

    monkeypatch.setattr(compat, "local_emit", broken)
    with pytest.raises(UndeliveredError, match="socket writer broke") as caught:
        await app.sio.emit("relayed", 1, room="r")
    assert caught.value.offset
    monkeypatch.undo()
    await app.sio.emit("relayed", 2, room="r")
    await until(lambda: client.events == [("relayed", 2)], "the next event")
    await client.sio.disconnect()


@pytest.mark.parametrize(
    "auth",
    [
        {"pid": "\ud800abc"},
        {"pid": "x" * 22, "offset": "\udfff"},
        {"pid": ["not", "a", "string"]},
        {"pid": "x" * 22, "offset": 2**64},
        {"offset": {"nested": [1]}},
    ],
)
async def test_malformed_recovery_fields_get_a_new_session_and_a_resync(
    serve: Callable[..., Any], auth: dict[str, Any]
) -> None:
    _app, url = await serve()
    client = Client()
    await asyncio.wait_for(client.connect(url, auth), 10)
    await until(lambda: bool(client.resyncs), "the resync event")
    assert client.resyncs[0]["reason"].startswith("malformed")
    await client.sio.disconnect()


async def test_a_store_that_raises_anything_on_an_offset_still_answers_the_connect(
    serve: Callable[..., Any],
) -> None:
    app, url = await serve()
    first = Client()
    await first.connect(url)
    await app.sio.emit("relayed", 1, room="r")
    await until(lambda: first.offset is not None, "an offset")
    await first.sio.disconnect()
    app.store.fetch_raises = OverflowError("Python int too large to convert to SQLite INTEGER")
    again = Client()
    await asyncio.wait_for(again.connect(url, {"offset": first.offset}), 10)  # the explicit recipe
    await until(lambda: bool(again.resyncs), "the resync event")
    assert again.resyncs == [{"reason": "malformed offset"}]
    await again.sio.disconnect()


async def test_a_connect_whose_store_call_hangs_is_closed_within_the_deadline(
    serve: Callable[..., Any],
) -> None:
    app, url = await serve(connect_timeout=1.0)
    first = Client()
    await first.connect(url)
    pid = first.pid
    await first.sio.disconnect()
    app.store.claim_hangs = True
    raw = await websockets.connect(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
    async with raw:
        await raw.recv()  # the Engine.IO open packet
        await raw.send("40" + json.dumps({"pid": pid}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                message = await asyncio.wait_for(raw.recv(), 5)
                assert not str(message).startswith("40"), message
        assert loop.time() - started < 3


async def test_a_live_session_is_not_taken_from_a_client_slow_to_answer_pings(
    serve: Callable[..., Any],
) -> None:
    """The old connection counts as dead only when it misses Engine.IO's own ping timeout."""
    _app, url = await serve(sio={"ping_interval": 1, "ping_timeout": 4})
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    slow = await websockets.connect(ws_url)
    await slow.recv()
    await slow.send("40")
    reply = json.loads(str(await slow.recv())[2:])

    async def answer_pings_late() -> None:
        async for message in slow:
            if message == "2":
                await asyncio.sleep(2.0)  # slower than the old 1.5 s check, within ping_timeout
                await slow.send("3")

    answering = asyncio.create_task(answer_pings_late())
    try:
        for _ in range(3):
            thief = await websockets.connect(ws_url)
            await thief.recv()
            await thief.send("40" + json.dumps({"pid": reply["pid"]}))
            with contextlib.suppress(websockets.ConnectionClosed, asyncio.TimeoutError):
                while True:
                    message = str(await asyncio.wait_for(thief.recv(), 6))
                    assert not message.startswith("40"), f"the session was handed over: {message}"
            await thief.close()
        assert not answering.done()  # the rightful client is still connected
    finally:
        answering.cancel()
        await slow.close()


async def test_a_wiped_store_sends_resync_and_delivery_resumes_in_the_new_epoch(
    serve: Callable[..., Any],
) -> None:
    app, url = await serve()
    clients = [Client() for _ in range(3)]
    for client in clients:
        await client.connect(url)
    await app.sio.emit("relayed", "old", room="r")
    await until(lambda: all(c.events for c in clients), "the first event")
    app.store.wipe()
    # persisted in the new epoch before the tailer noticed (an Emitter, another node)
    await app.store.persist("/", {"e": "relayed", "a": ["first of the new epoch"]}, rooms=["r"])
    await app.sio.emit("relayed", "new", room="r")
    for client in clients:
        await until(lambda c=client: len(c.events) == 3, "the events of the new epoch")  # type: ignore[misc]
        assert client.resyncs == [{"reason": "epoch changed"}]
        assert [data for _, data in client.events] == ["old", "first of the new epoch", "new"]
        await client.sio.disconnect()


async def test_a_binary_ack_is_processed_once(serve: Callable[..., Any]) -> None:
    app, url = await serve()
    client = Client()
    await client.connect(url)
    acks = [await client.sio.call("blob", {"idempotencyKey": "k"}) for _ in range(3)]
    assert acks == [b"\x01\x02"] * 3
    assert app.calls == 1
    await client.sio.disconnect()


async def test_an_ack_over_max_result_bytes_is_an_error_and_runs_once(serve: Callable[..., Any]) -> None:
    app, url = await serve(max_result_bytes=1000)
    client = Client()
    await client.connect(url)
    acks = [await client.sio.call("blob", {"idempotencyKey": "big", "size": 5000}) for _ in range(2)]
    assert acks[0] == acks[1]
    assert acks[0]["error"] == "ack too large"
    assert app.calls == 1
    await client.sio.disconnect()


async def test_a_reopened_delivery_renews_its_session_leases(serve: Callable[..., Any]) -> None:
    app, url = await serve(session_lease=0.6)
    await app.delivery.close()
    await app.delivery.open()
    client = Client()
    await client.connect(url)
    await asyncio.sleep(1.5)  # past the lease: only renewals keep it
    thief = Client()
    thief.sio.reconnection = False
    with pytest.raises(socketio.exceptions.ConnectionError):  # turned away: still leased
        await asyncio.wait_for(thief.connect(url, {"pid": client.pid}), 5)
    assert client.sio.connected
    await client.sio.disconnect()


def test_refusals_ack_a_fresh_dict_each_time() -> None:
    refusal = invalid_key()
    refusal["error"] = "changed by a handler"
    assert invalid_key() == {"error": "invalid idempotency key"}


async def test_an_emitter_given_no_store_uses_the_default_sqlite_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOCKETIO_DELIVERY_STORE_URL", raising=False)
    emitter = Emitter()
    assert type(emitter.store).__name__ == "SQLiteEventStore"
    with pytest.raises(InvalidArgumentError):
        await emitter.emit("connect", {})
    await emitter.close()


def test_lone_surrogates_in_recovery_fields_are_malformed() -> None:
    assert ConnectRequest.parse({"pid": "\ud800abc"}).malformed == "malformed pid"
    assert ConnectRequest.parse({"pid": "abc", "offset": "a\udfff"}).malformed == "malformed offset"
    assert ConnectRequest.parse({"pid": "abc\n"}).malformed == "malformed pid"


def test_a_session_record_holds_a_digest_of_its_pid_not_the_pid() -> None:
    from socketio_delivery.recovery import SessionState

    state = SessionState(sid="s", pid="the-bearer-secret-0123", namespace="/", first_position="")
    record = state.record()
    assert "the-bearer-secret-0123" not in json.dumps(record)
    assert SessionState.from_record(record, "/", "the-bearer-secret-0123") is not None
    assert SessionState.from_record(record, "/", "another-secret-0123456") is None
    old = {**record, "pid": "the-bearer-secret-0123"}  # as 0.1 stored it
    assert SessionState.from_record(old, "/", "the-bearer-secret-0123") is not None


async def test_a_connect_packet_that_is_not_json_gets_a_connect_error(serve: Callable[..., Any]) -> None:
    _app, url = await serve()
    ws = await websockets.connect(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
    async with ws:
        await ws.recv()
        await ws.send('40{"pid":')
        answer = str(await asyncio.wait_for(ws.recv(), 5))
        assert answer.startswith("44"), answer
