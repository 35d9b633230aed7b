"""Unit tests of :mod:`socketio_delivery.live`: the emit path and the tailers per namespace.

A real ``socketio.AsyncServer`` that is never served; its Engine.IO sockets are small fakes
that record what is sent to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

import pytest
import socketio
from socketio.packet import Packet
from socketio_delivery.errors import (
    DeliveryTimeoutError,
    EpochChangedError,
    InvalidArgumentError,
    UndeliveredError,
)
from socketio_delivery.live import LiveDelivery
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.recovery import SessionState
from socketio_delivery.sessions import SessionBook
from socketio_delivery.settings import Settings
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Capability, Event
from socketio_delivery.wire import RESYNC_EVENT

NS = "/"


class FakeEioSocket:
    """An Engine.IO socket that records the Socket.IO packets sent to it."""

    def __init__(self) -> None:
        self.packets: list[Any] = []
        self.closed = False
        self.closing = False
        self.upgraded = True
        self.session: dict[str, Any] = {}
        self.fail_on: str | None = None
        self.gate: asyncio.Event | None = None

    async def send(self, pkt: Any) -> None:
        if self.fail_on is not None and self.fail_on in str(pkt.data):
            raise OSError("connection reset")
        if self.gate is not None:
            await self.gate.wait()
        self.packets.append(Packet(encoded_packet=pkt.data).data)


class GapStore(MemoryEventStore):
    """Raises ``EpochChangedError`` on the next read from an offset while ``gap`` is set."""

    gap = False

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        if self.gap and offset is not None:
            self.gap = False
            raise EpochChangedError("wiped", offset=offset)
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)


class SharedStore(MemoryEventStore):
    capabilities = frozenset({Capability.MULTI_PROCESS})


class Fixture:
    def __init__(self, store: MemoryEventStore | None = None, **settings: Any) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.store = store or MemoryEventStore()
        self.opened = 0
        self.book = SessionBook(self.sio, self.store, 60, 10, position_of=self._position_of)
        self.live = LiveDelivery(self.sio, self.store, self.book, Settings(**settings), open_store=self._open)
        self.sockets: dict[str, FakeEioSocket] = {}

    def _position_of(self, namespace: str) -> str | None:
        return self.live.position_of(namespace)

    async def _open(self) -> None:
        self.opened += 1

    async def connect(self, eio_sid: str, namespace: str = NS, *rooms: str) -> str:
        self.sockets[eio_sid] = self.sio.eio.sockets[eio_sid] = FakeEioSocket()
        sid: str = await self.sio.manager.connect(eio_sid, namespace)
        for room in rooms:
            self.sio.manager.basic_enter_room(sid, namespace, room)
        return sid

    def received(self, eio_sid: str) -> list[Any]:
        return self.sockets[eio_sid].packets

    async def emit(self, event: str, *args: Any, room: Any = None, skip: Any = None, ns: str = NS) -> str:
        return await self.live.persist(event, list(args), ns, room, skip, explicit=False)


@pytest.fixture
async def fx() -> Any:
    fixture = Fixture()
    yield fixture
    await fixture.live.stop()


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_an_emit_is_persisted_then_delivered_with_its_offset_before_it_returns(fx: Fixture) -> None:
    sid = await fx.connect("e1")
    offset = await fx.emit("chat", "hi", {"n": 1})
    assert fx.received("e1") == [["chat", "hi", {"n": 1}, offset]]
    assert [e.offset for e in await fx.store.fetch_since(NS, None)] == [offset]
    assert fx.book.sent_to(NS) == {sid: offset}


async def test_an_explicit_emit_is_delivered_as_id_and_data(fx: Fixture) -> None:
    await fx.connect("e1")
    offset = await fx.live.persist("news", [{"n": 1}], NS, None, None, explicit=True)
    assert fx.received("e1") == [["news", {"id": offset, "data": {"n": 1}}, offset]]


async def test_rooms_and_skipped_sids_choose_the_recipients(fx: Fixture) -> None:
    a = await fx.connect("ea", NS, "r1")
    await fx.connect("eb", NS, "r2")
    await fx.connect("ec", NS, "r1", "r2")
    one = await fx.emit("x", 1, room="r1")
    both = await fx.emit("x", 2, room=["r1", "r2"], skip=a)
    assert fx.received("ea") == [["x", 1, one]]
    assert fx.received("eb") == [["x", 2, both]]
    assert fx.received("ec") == [["x", 1, one], ["x", 2, both]]


async def test_a_held_socket_is_skipped_by_live_delivery(fx: Fixture) -> None:
    sid = await fx.connect("e1")
    await fx.connect("e2")
    (await fx.live.tailer(NS)).hold(sid)
    offset = await fx.emit("x", 1)
    assert fx.received("e1") == []
    assert fx.received("e2") == [["x", 1, offset]]
    assert sid not in fx.book.sent_to(NS)


@pytest.mark.parametrize(
    ("event", "args", "why"),
    [
        ("connect", [], "reserved"),
        (RESYNC_EVENT, [], "reserved"),
        ("big", ["x" * 300], "max_event_bytes"),
        ("odd", [object()], "cannot be sent"),
    ],
)
async def test_an_emit_that_cannot_be_sent_is_refused_before_it_is_stored(
    event: str, args: list[Any], why: str
) -> None:
    fx = Fixture(max_event_bytes=200)
    with pytest.raises(InvalidArgumentError, match=why):
        await fx.emit(event, *args)
    assert await fx.store.fetch_since(NS, None) == []
    assert fx.live.tailers == {}  # refused before anything started


async def test_emit_waiting_for_a_failed_event_raises_undelivered(fx: Fixture) -> None:
    await fx.connect("e1")
    fx.sockets["e1"].fail_on = "poison"
    with pytest.raises(UndeliveredError, match="connection reset") as info:
        await fx.emit("poison", 1)
    stored = await fx.store.fetch_since(NS, None)
    assert [e.offset for e in stored] == [info.value.offset]  # persisted: it will be replayed
    fx.sockets["e1"].fail_on = None
    offset = await fx.emit("fine", 2)  # the stream is not stalled
    assert fx.received("e1") == [["fine", 2, offset]]


async def test_an_emit_not_delivered_within_delivery_timeout_raises_delivery_timeout() -> None:
    fx = Fixture(delivery_timeout=0.05)
    try:
        await fx.connect("e1")
        gate = fx.sockets["e1"].gate = asyncio.Event()
        with pytest.raises(DeliveryTimeoutError, match="delivery_timeout") as info:
            await fx.emit("slow", 1)
        assert info.value.offset
        gate.set()
        await until(lambda: len(fx.received("e1")) == 1)
    finally:
        await fx.live.stop()


async def test_one_tailer_per_namespace_started_once_after_opening_the_store(fx: Fixture) -> None:
    assert fx.live.position_of(NS) is None
    first, second, other = await asyncio.gather(
        fx.live.tailer(NS), fx.live.tailer(NS), fx.live.tailer("/chat")
    )
    assert first is second
    assert other is not first
    assert fx.opened >= 1
    assert fx.live.position_of(NS) == await fx.store.last_offset(NS)
    await fx.live.stop()
    assert fx.live.tailers == {}


async def test_namespaces_are_separate_streams(fx: Fixture) -> None:
    await fx.connect("e1", NS)
    await fx.connect("e2", "/chat")
    root = await fx.emit("x", 1)
    chat = await fx.emit("x", 2, ns="/chat")
    assert fx.received("e1") == [["x", 1, root]]
    assert fx.received("e2") == [["x", 2, chat]]


@pytest.mark.parametrize("polled", [False, True])
async def test_only_stores_shared_with_other_processes_are_polled(polled: bool) -> None:
    store = SharedStore() if polled else MemoryEventStore()
    fx = Fixture(store, poll_interval=0.01)
    try:
        await fx.connect("e1")
        await fx.live.tailer(NS)
        await asyncio.sleep(0.02)
        await store.persist(NS, {"e": "other", "a": []})  # another process's emit
        if polled:
            await until(lambda: len(fx.received("e1")) == 1)
        else:
            await asyncio.sleep(0.1)
            assert fx.received("e1") == []
    finally:
        await fx.live.stop()


async def test_a_gap_sends_resync_to_every_connected_client_and_rebases_their_sessions() -> None:
    store = GapStore()
    fx = Fixture(store)
    try:
        sid = await fx.connect("e1", NS, "r1")
        state = SessionState(sid=sid, pid="p", namespace=NS, first_position="x", rooms={"r1": "x"})
        fx.book.add(state)
        gone = SessionState(sid="gone", pid="q", namespace=NS, first_position="x")
        fx.book.add(gone)  # its connection is already unregistered: nobody to tell
        await fx.live.tailer(NS)
        store.gap = True
        offset = await fx.emit("after", 1)
        assert fx.received("e1") == [[RESYNC_EVENT, {"reason": "epoch changed"}], ["after", 1, offset]]
        assert (state.first_position, state.rooms) == ("", {"r1": ""})
    finally:
        await fx.live.stop()


async def test_after_a_gap_the_last_sent_offset_is_still_recorded() -> None:
    store = GapStore()
    fx = Fixture(store)
    try:
        sid = await fx.connect("e1")
        fx.book.add(SessionState(sid=sid, pid="p", namespace=NS, first_position=""))
        await fx.live.tailer(NS)
        store.gap = True
        offset = await fx.emit("after", 1)
        assert fx.book.sent_to(NS).get(sid) == offset
    finally:
        await fx.live.stop()
