"""DeliveryClient against a python-socketio AsyncServer with ``Delivery(store="memory://")``.

The server runs in the test's event loop under uvicorn on 127.0.0.1 (real HTTP/WebSocket). A
drop is ``await client.drop()``: the client closes its transport without any goodbye, as a
network failure would; the server sees ``transport close`` and the client reconnects by itself.
The faults a server makes in the middle of a handler (``App.drop``: the ack is lost) close the
transport on the server side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio
from _serving import ClientFactory, delivery_clients, serve_asgi, tag, until
from socketio_delivery import open_store
from socketio_delivery._compat.server import drop_transport
from socketio_delivery.client import RESYNC_EVENT, DeliveryClient, EmitTimeoutError

delivery_module = pytest.importorskip("socketio_delivery.server")
Delivery = delivery_module.Delivery

NAMESPACES = ("/", "/chat")


@dataclass
class App:
    url: str
    sio: socketio.AsyncServer
    delivery: Any
    runs: Counter[str] = field(default_factory=Counter)  # handler runs per idempotency key
    connects: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def drop(self, sid: str, namespace: str = "/") -> None:
        """Close ``sid``'s transport without an Engine.IO or Socket.IO goodbye."""
        await self.drop_eio(self.sio.manager.eio_sid_from_sid(sid, namespace))

    async def drop_eio(self, eio_sid: str) -> None:
        """Close the Engine.IO session ``eio_sid`` without a goodbye (what was queued is sent first)."""
        assert await drop_transport(self.sio, eio_sid)


def build_app(sio: socketio.AsyncServer, delivery: Any, url: str) -> App:
    app = App(url, sio, delivery)

    for namespace in NAMESPACES:

        async def connect(sid: str, environ: Any, auth: Any, namespace: str = namespace) -> None:
            app.connects.append(
                {
                    "sid": sid,
                    "namespace": namespace,
                    "auth": auth,
                    "recovered": delivery.recovered(sid, namespace),
                    "recovery_failed": delivery.recovery_failed(sid, namespace),
                }
            )

        async def join(sid: str, room: str, namespace: str = namespace) -> bool:
            await sio.enter_room(sid, room, namespace=namespace)
            return True

        async def set_data(sid: str, data: dict[str, Any], namespace: str = namespace) -> bool:
            await sio.save_session(sid, {"name": data["name"]}, namespace=namespace)
            return True

        async def whoami(sid: str, namespace: str = namespace) -> dict[str, Any]:
            return {
                "sid": sid,
                "rooms": sorted(r for r in sio.rooms(sid, namespace) if r != sid),
                "session": await sio.get_session(sid, namespace=namespace),
                "recovered": delivery.recovered(sid, namespace),
            }

        async def emit_to_me(sid: str, spec: dict[str, Any], namespace: str = namespace) -> bool:
            await sio.emit(spec["event"], tuple(spec.get("args", [])), to=sid, namespace=namespace)
            return True

        async def ask_me(sid: str, text: str, namespace: str = namespace) -> Any:
            return await sio.call("question", text, to=sid, namespace=namespace, timeout=10)

        async def publish(sid: str, spec: dict[str, Any], namespace: str = namespace) -> str:
            offset: str = await delivery.publish(spec["event"], spec["data"], namespace=namespace)
            return offset

        async def order(sid: str, payload: dict[str, Any], namespace: str = namespace) -> dict[str, Any]:
            key = payload["idempotencyKey"]
            app.runs[key] += 1
            run = app.runs[key]
            if run == 1 and payload.get("mode") == "drop-first":
                await app.drop(sid, namespace)  # the ack of this run is lost
            if run == 1 and payload.get("mode") == "slow-first":
                await asyncio.sleep(payload["sleep"])  # longer than the client's ack_timeout
            return {"key": key, "run": run, "item": payload.get("item")}

        seqs: dict[str, list[int]] = {}
        dropped: set[str] = set()

        async def seq(
            sid: str,
            payload: dict[str, Any],
            namespace: str = namespace,
            seqs: dict[str, list[int]] = seqs,
            dropped: set[str] = dropped,
        ) -> int:
            n, tag = payload["n"], payload["tag"]
            seqs.setdefault(tag, []).append(n)
            if n == payload["dropAt"] and f"{tag}:{n}" not in dropped:
                dropped.add(f"{tag}:{n}")
                await app.drop(sid, namespace)
            return int(n)

        async def log(sid: str, tag: str, seqs: dict[str, list[int]] = seqs) -> list[int]:
            return seqs.get(tag, [])

        async def ticks(sid: str, spec: dict[str, Any], namespace: str = namespace) -> bool:
            async def run() -> None:
                for n in range(spec["count"]):
                    await sio.emit("tick", n, room=spec["room"], namespace=namespace)
                    await asyncio.sleep(0.002)

            app.tasks.append(asyncio.create_task(run()))
            return True

        for name, handler in {
            "ticks": ticks,
            "connect": connect,
            "join": join,
            "set-data": set_data,
            "whoami": whoami,
            "emit-to-me": emit_to_me,
            "ask-me": ask_me,
            "publish": publish,
            "order": order,
            "seq": seq,
            "log": log,
        }.items():
            sio.on(name, handler, namespace=namespace)
    return app


@contextlib.asynccontextmanager
async def serve(store: Any = "memory://") -> AsyncIterator[App]:
    """A Delivery app under uvicorn on a free 127.0.0.1 port (``store``: a URL or a store object).

    Short pings: a long-polling client that drops leaves a connection only Engine.IO's
    heartbeat can judge dead (``ping_timeout``), and until then its pid is not handed over.
    """
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=1, ping_timeout=2)
    delivery = Delivery(sio, store=store)
    await delivery.open()
    try:
        async with serve_asgi(socketio.ASGIApp(sio)) as url:
            yield build_app(sio, delivery, url)
    finally:
        await delivery.close()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    async with serve() as served:
        yield served


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    # a long-polling client waits for its pending GET on disconnect; the server's shutdown ends it
    async with delivery_clients(shutdown_timeout=2) as make:
        yield make


#: the reconnection delay of clients that must miss events: the test emits them in that window
AWAY = 0.5


async def drop_and_emit(
    app: App, client: DeliveryClient, *then: tuple[str | None, str, list[Any]], namespace: str = "/"
) -> None:
    """``client.drop()``, then emit ``then`` (room, event, args) while the client is away (it
    comes back after ``reconnection_delay``: make it with ``reconnection_delay=AWAY``)."""
    assert client.reconnection_delay >= AWAY
    await client.drop()
    for to, event, args in then:
        await app.sio.emit(event, tuple(args), room=to, namespace=namespace)


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
async def test_recovers_sid_rooms_session_and_missed_events_after_forced_close(
    app: App, make_client: ClientFactory, transports: list[str] | None
) -> None:
    room = tag()
    client = make_client(reconnection_delay=AWAY)
    seen: list[str] = []

    @client.on("news")
    def news(item: str) -> None:  # one parameter: the offset never reaches it
        seen.append(item)

    @client.event
    def connect() -> None:
        seen.append(f"connect recovered={client.recovered}")

    await client.connect(app.url, auth={"token": "t"}, transports=transports)
    assert client.transport() == ("polling" if transports else "websocket")
    assert await client.emit("join", room) is True
    assert await client.emit("set-data", {"name": "ann"}) is True
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]})
    await until(lambda: "a" in seen, "the first event")
    sid = client.get_sid()
    offset = client.offset

    await drop_and_emit(
        app, client, (room, "news", ["b"]), (room, "news", ["c"]), (tag(), "news", ["other room"])
    )
    await until(lambda: client.recovered, "the recovery")
    await until(lambda: "c" in seen, "the missed events")

    assert seen == ["connect recovered=False", "a", "b", "c", "connect recovered=True"]
    assert client.get_sid() == sid
    me = await client.emit("whoami")
    assert me == {"sid": sid, "rooms": [room], "session": {"name": "ann"}, "recovered": True}
    assert app.connects[-1]["recovered"] is True
    assert app.connects[-1]["auth"] == {"token": "t"}  # the app's auth; Delivery took pid and offset
    assert offset is not None
    assert client.resync_reason() is None


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
async def test_drop_is_a_network_failure_the_client_recovers_from(
    app: App, make_client: ClientFactory, transports: list[str] | None
) -> None:
    server_reasons: list[str] = []
    app.sio.on("disconnect", lambda sid, reason: server_reasons.append(reason))
    client = make_client(reconnection_delay=AWAY)
    client_reasons: list[str] = []
    client.on("disconnect", client_reasons.append)
    await client.connect(app.url, transports=transports)
    sid = client.get_sid()
    with pytest.raises(RuntimeError, match="needs a connected client"):
        await make_client().drop()

    await client.drop()
    assert client.connected is False  # drop() returns once the client has seen it
    assert client_reasons == [client.reason.TRANSPORT_ERROR]
    await until(lambda: client.recovered and client.connected, "the recovery")
    assert client.get_sid() == sid
    assert app.connects[-1]["recovered"] is True
    await until(lambda: bool(server_reasons), "the server closing the old connection")
    assert app.sio.reason.CLIENT_DISCONNECT not in server_reasons  # no goodbye was sent


async def test_reconnect_before_any_event_still_recovers(app: App, make_client: ClientFactory) -> None:
    room = tag()
    client = make_client(reconnection_delay=AWAY)
    seen: list[str] = []
    client.on("news", seen.append)
    await client.connect(app.url)
    await client.emit("join", room)
    sid = client.get_sid()
    assert client.offset is None

    await drop_and_emit(app, client, (room, "news", ["missed"]))
    await until(lambda: client.recovered, "the recovery")
    await until(lambda: bool(seen), "the missed event")
    assert seen == ["missed"]
    assert client.get_sid() == sid


async def test_strips_offsets_but_not_from_events_the_server_wants_acked(
    app: App, make_client: ClientFactory
) -> None:
    client = make_client()
    got: list[Any] = []
    client.on("two", lambda a, b: got.append(("two", a, b)))
    client.on("zero", lambda: got.append(("zero",)))
    client.on("question", lambda text: text.upper())

    await client.connect(app.url)
    await client.emit("emit-to-me", {"event": "two", "args": ["x", "y"]})
    await client.emit("emit-to-me", {"event": "zero", "args": []})
    await until(lambda: len(got) == 2, "both events")
    assert got == [("two", "x", "y"), ("zero",)]
    assert isinstance(client.offset, str)
    assert await client.emit("ask-me", "hello") == "HELLO"


async def test_failed_recovery_gives_a_new_session_and_a_resync_event(
    app: App, make_client: ClientFactory
) -> None:
    client = make_client()
    resyncs: list[dict[str, Any]] = []
    client.on(RESYNC_EVENT, resyncs.append)
    failed_in_connect: list[str | None] = []
    client.on("connect", lambda: failed_in_connect.append(client.recovery_failed()))
    await client.connect(app.url)
    sid = client.get_sid()
    client._namespaces["/"].state.pid = "forged-" + tag()  # a pid the server never issued

    await client.drop()
    await until(lambda: bool(resyncs), "the resync event")

    assert client.recovered is False
    assert failed_in_connect[0] is None  # the first connect did not ask
    assert failed_in_connect[1]  # a reason already ("new session" until the resync event)
    assert client.recovery_failed() == resyncs[0]["reason"]  # the server's reason, as the server says it
    assert client.get_sid() != sid
    assert isinstance(resyncs[0]["reason"], str)
    assert client.resync_reason() == resyncs[0]["reason"]
    assert app.connects[-1]["recovery_failed"] == resyncs[0]["reason"]
    # the new session recovers on the next drop
    await client.drop()
    await until(lambda: client.recovered, "the recovery of the new session")
    assert client.resync_reason() is None
    assert client.recovery_failed() is None


async def test_each_namespace_recovers_its_own_session(app: App, make_client: ClientFactory) -> None:
    room = tag()
    client = make_client(reconnection_delay=AWAY)
    seen: list[tuple[str, str]] = []
    client.on("news", lambda item: seen.append(("/", item)))
    client.on("news", lambda item: seen.append(("/chat", item)), namespace="/chat")
    await client.connect(app.url, namespaces=["/", "/chat"])
    await client.emit("join", room, namespace="/chat")
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]})
    await client.emit("emit-to-me", {"event": "news", "args": ["b"]}, namespace="/chat")
    await until(lambda: len(seen) == 2, "an event on each namespace")

    await drop_and_emit(app, client, (room, "news", ["missed"]), namespace="/chat")
    await until(lambda: client.is_recovered("/") and client.is_recovered("/chat"), "both recoveries")
    await until(lambda: ("/chat", "missed") in seen, "the missed event")
    assert seen.count(("/chat", "missed")) == 1
    assert ("/", "missed") not in seen


async def test_retry_after_a_dropped_ack_runs_the_handler_once(app: App, make_client: ClientFactory) -> None:
    client = make_client(ack_timeout=30.0)  # only the drop ends the first attempt
    await client.connect(app.url)

    ack = await client.emit("order", {"mode": "drop-first", "item": 7})

    assert ack == {"key": ack["key"], "run": 1, "item": 7}  # the recorded ack of the only run
    assert app.runs[ack["key"]] == 1
    assert client.recovered is True


async def test_retry_while_the_first_run_is_still_going_gets_its_ack(
    app: App, make_client: ClientFactory
) -> None:
    client = make_client(ack_timeout=0.2, retries=20)
    await client.connect(app.url)
    ack = await client.emit("order", {"mode": "slow-first", "sleep": 1.0, "item": 8})
    assert ack["run"] == 1
    assert app.runs[ack["key"]] == 1


async def test_emit_raises_once_the_retries_are_exhausted(app: App, make_client: ClientFactory) -> None:
    client = make_client()
    await client.connect(app.url)
    with pytest.raises(EmitTimeoutError) as info:
        await client.emit("order", {"mode": "slow-first", "sleep": 5.0}, ack_timeout=0.1, retries=1)
    assert info.value.attempts == 2


async def test_queue_keeps_order_with_one_event_in_flight_across_a_disconnect(
    app: App, make_client: ClientFactory
) -> None:
    log = tag()
    client = make_client(ack_timeout=30.0)
    await client.connect(app.url)

    acks = await asyncio.gather(*(client.emit("seq", {"n": n, "dropAt": 5, "tag": log}) for n in range(15)))

    assert acks == list(range(15))
    received = await client.emit("log", log)
    # the event in flight at the drop was sent twice, but its payload carries an idempotency
    # key: Delivery answered the retry with the recorded ack instead of running it again
    assert received == list(range(15))
    assert client.recovered is True


async def test_recipe_mode_resumes_from_the_last_id(app: App, make_client: ClientFactory) -> None:
    event = "recipe-" + tag()
    publisher = make_client()
    await publisher.connect(app.url)
    client = make_client(mode="recipe")
    got: list[dict[str, Any]] = []
    client.on(event, got.append)
    await client.connect(app.url)
    first = await publisher.emit("publish", {"event": event, "data": 1})
    await until(lambda: len(got) == 1, "the first event")
    assert got == [{"id": first, "data": 1}]
    assert client.offset == first

    await client.disconnect()
    await publisher.emit("publish", {"event": event, "data": 2})
    third = await publisher.emit("publish", {"event": event, "data": 3})
    await client.connect(app.url)
    await until(lambda: len(got) == 3, "the replay")
    assert [g["data"] for g in got] == [1, 2, 3]
    assert client.offset == third
    assert app.connects[-1]["auth"] == {"offset": first}


async def test_recovers_on_another_server_sharing_the_store(make_client: ClientFactory) -> None:
    store = open_store("memory://")
    await store.open()
    try:
        async with serve(store) as first, serve(store) as second:
            room = tag()
            target = [first.url]
            client = make_client(reconnection_delay=AWAY)
            seen: list[str] = []
            client.on("news", seen.append)
            await client.connect(lambda: target[0])  # the URL is looked up on every (re)connect
            await client.emit("join", room)
            await client.emit("emit-to-me", {"event": "news", "args": ["a"]})
            await until(lambda: bool(seen), "the first event")
            sid = client.get_sid()

            target[0] = second.url
            await drop_and_emit(second, client, (room, "news", ["missed on the first server"]))
            await until(lambda: client.recovered, "the recovery on the second server")
            await until(lambda: len(seen) == 2, "the missed event")

            assert seen == ["a", "missed on the first server"]
            assert client.get_sid() == sid
            assert second.connects[-1]["recovered"] is True
            assert (await client.emit("whoami"))["rooms"] == [room]
    finally:
        await store.close()


def test_client_defaults_match_the_server() -> None:
    import inspect

    from socketio_delivery import client

    assert client.RESYNC_EVENT == delivery_module.RESYNC_EVENT
    server_key = inspect.signature(Delivery).parameters["idempotency_key"].default
    assert inspect.signature(DeliveryClient).parameters["idempotency_key"].default == server_key


async def test_no_loss_duplicate_or_reorder_across_repeated_drops(
    app: App, make_client: ClientFactory
) -> None:
    room, count = tag(), 300
    client = make_client()
    ticks: list[int] = []
    client.on("tick", ticks.append)
    await client.connect(app.url)
    await client.emit("join", room)
    await client.emit("ticks", {"room": room, "count": count})
    acks = []
    for round_ in range(5):  # drop, and emit reliably, while the server keeps emitting
        await until(lambda r=round_: len(ticks) > (r + 1) * count // 8, "more ticks")
        await client.drop()
        acks.append(await client.emit("order", {"mode": "ok", "item": round_}))
    await asyncio.gather(*app.tasks)
    await until(lambda: len(ticks) >= count, "every tick")
    await asyncio.sleep(0.05)  # nothing more may come (a duplicate would show here)

    assert ticks == list(range(count))
    assert [a["item"] for a in acks] == list(range(5))
    assert all(a["run"] == 1 for a in acks)
    assert client.recovered is True


async def test_a_recovery_slower_than_a_second_is_not_abandoned(app: App, make_client: ClientFactory) -> None:
    base = app.sio.handlers["/"]["connect"]

    async def slow_connect(sid: str, environ: Any, auth: Any) -> None:
        if app.delivery.recovered(sid):
            await asyncio.sleep(1.5)  # python-socketio's own reconnect would give up after 1 s
        await base(sid, environ, auth)

    app.sio.on("connect", slow_connect)
    client = make_client()
    await client.connect(app.url)
    sid = client.get_sid()
    await client.drop()
    await until(lambda: client.recovered, "the slow recovery")
    assert client.get_sid() == sid


class ConnectReplyFault:
    """Drops the transport right before or right after the server sends a CONNECT reply.

    Wraps this test server's ``_send_packet`` (the server's own code is untouched); ``arm()``
    makes the next CONNECT reply the faulty one, once. ``eio_sids`` are the dropped sessions.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.when: str | None = None
        self.eio_sids: list[str] = []
        send = app.sio._send_packet

        async def send_packet(eio_sid: str, pkt: Any) -> None:
            when = self.when
            if when is None or pkt.packet_type != socketio.packet.CONNECT:
                await send(eio_sid, pkt)
                return
            self.when = None
            self.eio_sids.append(eio_sid)
            if when == "after":
                await send(eio_sid, pkt)  # queued before the close: the client gets the reply
            await app.drop_eio(eio_sid)

        app.sio._send_packet = send_packet

    def arm(self, when: str) -> None:
        self.when = when


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_a_reconnect_whose_transport_dies_before_the_connect_reply_tries_again_at_once(
    app: App, make_client: ClientFactory, transports: list[str]
) -> None:
    """python-socketio's connect() would wait the whole connect_timeout for a reply that cannot come."""
    fault = ConnectReplyFault(app)
    client = make_client(connect_timeout=60.0, reconnection_delay=AWAY)
    await client.connect(app.url, transports=transports)
    sid = client.get_sid()
    room = tag()
    await client.emit("join", room)
    seen: list[str] = []
    client.on("news", seen.append)

    fault.arm("before")
    await drop_and_emit(app, client, (room, "news", ["missed"]))
    # a hang guard far below connect_timeout: with the bug the second attempt starts after 60 s
    await until(lambda: client.recovered and client.connected, "the next attempt's recovery", timeout=10)
    assert fault.eio_sids
    assert fault.when is None
    assert client.get_sid() == sid
    me = await asyncio.wait_for(client.emit("whoami"), 10)
    assert me["sid"] == sid
    assert me["rooms"] == [room]
    await until(lambda: seen == ["missed"], "the missed event")


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_a_reconnect_whose_transport_dies_right_after_the_connect_reply_is_no_zombie(
    app: App, make_client: ClientFactory, transports: list[str]
) -> None:
    """The reply is handled, then the transport closes before python-socketio's connect() resumes:
    it used to mark the dead connection connected, with its reconnection loop already over."""
    fault = ConnectReplyFault(app)
    client = make_client(connect_timeout=60.0, reconnection_delay=AWAY)
    handler_saw_drop: list[bool] = []

    @client.event
    async def connect() -> None:
        if client.eio.sid in fault.eio_sids:  # the faulty connection, still up: hold the connect
            await until(lambda: client.eio.state != "connected", "the transport to close")  # reply
            handler_saw_drop.append(True)  # until the transport is gone (deterministic window)

    disconnects: list[Any] = []
    client.on("disconnect", disconnects.append)
    await client.connect(app.url, transports=transports)
    sid = client.get_sid()
    room = tag()
    await client.emit("join", room)
    seen: list[str] = []
    client.on("news", seen.append)

    fault.arm("after")
    await drop_and_emit(app, client, (room, "news", ["missed"]))
    await until(lambda: fault.when is None, "the faulty CONNECT reply")
    await until(lambda: client.recovered and client.connected, "a recovery on a live transport", timeout=10)
    assert client.eio.state == "connected"
    assert client.get_sid() == sid
    me = await asyncio.wait_for(client.emit("whoami"), 10)  # a zombie never gets this ack
    assert me["sid"] == sid
    assert me["rooms"] == [room]
    await until(lambda: "missed" in seen, "the missed event")
    assert seen.count("missed") == 1
    # every connect the handlers saw is paired with a disconnect
    assert len(disconnects) == 1 + len(handler_saw_drop)


async def test_a_first_connect_whose_transport_dies_before_the_reply_fails_at_once(
    app: App, make_client: ClientFactory
) -> None:
    fault = ConnectReplyFault(app)
    client = make_client(connect_timeout=60.0)
    fault.arm("before")
    with pytest.raises(socketio.exceptions.ConnectionError, match="closed before the server answered"):
        await asyncio.wait_for(client.connect(app.url, transports=["websocket"]), 10)
    assert not client.connected
    assert client not in socketio.base_client.reconnecting_clients  # no reconnection loop behind it
    await client.connect(app.url, transports=["websocket"])  # the client is usable again
    assert await client.emit("whoami") is not None


async def test_a_client_that_gave_up_reconnecting_reconnects_again_after_a_new_connect(
    app: App, make_client: ClientFactory
) -> None:
    """python-socketio keeps its finished reconnection task and would never reconnect again."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    target = [app.url]
    client = make_client(reconnection_attempts=1)
    await client.connect(lambda: target[0])
    target[0] = nowhere
    await client.drop()
    await until(lambda: not client.connected and client._reconnect_task.done(), "the client giving up")

    target[0] = app.url
    await client.connect(lambda: target[0])
    sid = client.get_sid()
    await client.drop()
    await until(lambda: client.connected and len(app.connects) == 3, "the reconnect after the drop")
    assert client.get_sid() == sid
    assert app.connects[-1]["recovered"] is True


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
async def test_binary_events_are_persisted_and_replayed_as_binary(
    app: App, make_client: ClientFactory, transports: list[str] | None
) -> None:
    room = tag()
    client = make_client(reconnection_delay=AWAY)
    seen: list[Any] = []
    client.on("file", lambda *args: seen.append(list(args)))
    await client.connect(app.url, transports=transports)
    await client.emit("join", room)
    live = {"name": "a.bin", "data": b"\x00\x01live", "parts": [b"x", "text", {"k": b"\xff"}]}
    await client.emit("emit-to-me", {"event": "file", "args": [live, b"second"]})
    await until(lambda: len(seen) == 1, "the live binary event")
    live_offset = client.offset

    missed = {"name": "b.bin", "data": bytes(range(256))}
    await drop_and_emit(app, client, (room, "file", [missed]), (room, "file", ["plain text"]))
    await until(lambda: client.recovered and len(seen) == 3, "the missed binary event")

    assert seen == [[live, b"second"], [missed], ["plain text"]]
    assert live_offset is not None
    assert client.offset is not None
    assert client.offset > live_offset
    log = await app.delivery.store.fetch_since("/", None, rooms=[room])
    assert [e.data["e"] for e in log] == ["file", "file"]  # persisted, with offsets
