"""Unit tests of :mod:`socketio_delivery.connect`: every CONNECT ends, promptly, with an answer.

A real ``socketio.AsyncServer`` that is never served; its Engine.IO sockets are small fakes
that record the packets sent to them (and whether the transport was dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import pytest
import socketio
from socketio.packet import CONNECT, CONNECT_ERROR, EVENT, Packet
from socketio_delivery._compat import server as compat
from socketio_delivery.connect import Connector
from socketio_delivery.errors import SessionBusyError, StoreUnavailableError
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.recoverer import (
    SESSION_BUSY,
    UNKNOWN_SESSION,
    Recoverer,
)
from socketio_delivery.recovery import SessionState
from socketio_delivery.sessions import SessionBook
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Event
from socketio_delivery.tailer import Tailer
from socketio_delivery.wire import RESYNC_EVENT

NS = "/"
PID = "pid-0123456789"


class FakeEioSocket:
    def __init__(self) -> None:
        self.packets: list[tuple[int, Any]] = []
        self.closed = False
        self.closing = False
        self.upgraded = True
        self.session: dict[str, Any] = {}
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def send(self, pkt: Any) -> None:
        decoded = Packet(encoded_packet=pkt.data)
        self.packets.append((decoded.packet_type, decoded.data))

    @property
    def dropped(self) -> bool:
        return not self.queue.empty()


class HangingReplay(MemoryEventStore):
    """Replay reads (they filter by rooms) never answer; other reads do."""

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        if rooms is not None:
            await asyncio.sleep(10)
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)


class Fixture:
    def __init__(
        self,
        *,
        rerun_connect: bool = True,
        timeout: float = 5.0,
        tailer_fails: bool = False,
        store: MemoryEventStore | None = None,
    ) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.store = store or MemoryEventStore()
        self.book = SessionBook(self.sio, self.store, 60, 10, position_of=self.position_of)
        self.recoverer = Recoverer(self.sio, self.store, self.book, page_size=DEFAULT_PAGE_SIZE)
        self.tailers: dict[str, Tailer] = {}
        self.tailer_fails = tailer_fails
        self.tailer_hangs = False
        self.connector = Connector(
            self.sio,
            self.book,
            self.recoverer,
            self.tailer_of,
            self.sio.save_session,
            new_pid=lambda: "new-pid",
            rerun_connect=rerun_connect,
            timeout=timeout,
        )
        # the sid hook (the CONNECT path registers the sid it chose), with events passed through
        compat.install(self.sio, self.connector.handle, self.passthrough)
        self.sockets: dict[str, FakeEioSocket] = {}
        self.handled: list[tuple[str, Any]] = []
        self.answer: Any = True

        async def connect(sid: str, environ: Any, auth: Any) -> Any:
            self.handled.append((sid, auth))
            if isinstance(self.answer, BaseException):
                raise self.answer
            if isinstance(self.answer, float):
                await asyncio.sleep(self.answer)
                return True
            return self.answer

        self.sio.on("connect", connect)

    @staticmethod
    async def passthrough(
        original: Callable[..., Awaitable[Any]], event: str, namespace: str, *args: Any
    ) -> Any:
        return await original(event, namespace, *args)

    def position_of(self, namespace: str) -> str | None:
        tailer = self.tailers.get(namespace)
        return tailer.position if tailer else None

    async def tailer_of(self, namespace: str) -> Tailer:
        if self.tailer_fails:
            raise StoreUnavailableError("down")
        if self.tailer_hangs:
            await asyncio.sleep(10)
        if namespace not in self.tailers:

            async def deliver(event: Event, skip: list[str]) -> None:
                return None

            tailer = Tailer(self.store, namespace, deliver, poll_interval=None, page_size=DEFAULT_PAGE_SIZE)
            tailer.position = await self.store.last_offset(namespace)
            self.tailers[namespace] = tailer
        return self.tailers[namespace]

    async def connect(self, eio_sid: str, data: Any = None, namespace: str | None = None) -> FakeEioSocket:
        socket = self.sockets[eio_sid] = self.sio.eio.sockets[eio_sid] = FakeEioSocket()
        await self.connector.handle(eio_sid, namespace, data)
        return socket

    async def saved(self, lease: float | None = None, **kwargs: Any) -> SessionState:
        first = await self.store.last_offset(NS)
        state = SessionState(sid="old-sid", pid=PID, namespace=NS, first_position=first, **kwargs)
        await self.store.save_session(state.key, state.record(), 60, lease=lease)
        return state


def replies(socket: FakeEioSocket) -> list[Any]:
    return [data for kind, data in socket.packets if kind == CONNECT]


def events(socket: FakeEioSocket) -> list[Any]:
    return [data for kind, data in socket.packets if kind == EVENT]


def errors(socket: FakeEioSocket) -> list[Any]:
    return [data for kind, data in socket.packets if kind == CONNECT_ERROR]


async def test_a_new_connect_is_answered_with_sid_and_pid_and_its_session_saved_leased() -> None:
    fx = Fixture()
    socket = await fx.connect("e1", {"token": "t"})
    ((reply),) = replies(socket)
    assert reply["pid"] == "new-pid"
    sid = reply["sid"]
    assert fx.handled == [(sid, {"token": "t"})]
    assert fx.sio.manager.is_connected(sid, NS)
    state = fx.book.get(NS, sid)
    assert state is not None
    assert (state.recovered, state.recovery_failed) == (False, None)
    with pytest.raises(SessionBusyError):
        await fx.store.claim_session(state.key)
    assert events(socket) == []


async def test_an_unserved_namespace_is_refused() -> None:
    fx = Fixture()
    socket = await fx.connect("e1", None, "/nowhere")
    assert errors(socket) == ["Unable to connect"]
    assert fx.handled == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (False, {"message": "Connection rejected by server"}),
        (socketio.exceptions.ConnectionRefusedError("go away"), {"message": "go away"}),
    ],
)
async def test_a_refused_connect_gets_connect_error_and_nothing_is_kept(answer: Any, reason: Any) -> None:
    fx = Fixture()
    fx.answer = answer
    socket = await fx.connect("e1")
    assert errors(socket) == [reason]
    assert replies(socket) == []
    assert fx.book.states == {}
    assert fx.sio.manager.sid_from_eio_sid("e1", NS) is None


async def test_a_recovering_connect_gets_its_sid_rooms_data_and_missed_events_before_the_reply() -> None:
    fx = Fixture()
    old = await fx.saved(rooms={"r1": ""}, data={"user": "ann"})
    old.rooms = {"r1": old.first_position}
    await fx.store.save_session(old.key, old.record(), 60)
    missed = await fx.store.persist(NS, {"e": "ev", "a": [1]}, rooms=("r1",))
    other = await fx.store.persist(NS, {"e": "ev", "a": [2]}, rooms=("r2",))
    socket = await fx.connect("e1", {"pid": PID, "offset": old.first_position, "token": "t"})
    assert socket.packets[0] == (EVENT, ["ev", 1, missed.offset])
    assert socket.packets[1] == (CONNECT, {"sid": "old-sid", "pid": PID})
    assert other.offset not in str(socket.packets)
    assert fx.handled == [("old-sid", {"token": "t"})]  # pid and offset are taken out of auth
    assert "r1" in fx.sio.manager.get_rooms("old-sid", NS)
    assert await fx.sio.get_session("old-sid") == {"user": "ann"}
    state = fx.book.get(NS, "old-sid")
    assert state is not None
    assert state.recovered
    assert events(socket) == [["ev", 1, missed.offset]]  # no resync
    assert fx.recoverer.attempts == {}


async def test_without_rerun_connect_a_recovered_socket_skips_the_connect_handler() -> None:
    fx = Fixture(rerun_connect=False)
    await fx.saved()
    socket = await fx.connect("e1", {"pid": PID})
    assert replies(socket) == [{"sid": "old-sid", "pid": PID}]
    assert fx.handled == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"pid": "unknown-pid"}, UNKNOWN_SESSION),
        ({"pid": "x" * 100}, "malformed pid"),
        ({"pid": PID, "offset": "\ud800"}, "malformed offset"),
    ],
)
async def test_a_connect_that_cannot_recover_gets_a_new_session_then_a_resync(data: Any, reason: str) -> None:
    fx = Fixture()
    socket = await fx.connect("e1", data)
    ((reply),) = replies(socket)
    assert reply["pid"] == "new-pid"
    assert events(socket) == [[RESYNC_EVENT, {"reason": reason}]]
    assert [kind for kind, _ in socket.packets] == [CONNECT, EVENT]
    state = fx.book.get(NS, reply["sid"])
    assert state is not None
    assert state.recovery_failed == reason


async def test_a_busy_session_closes_the_transport_without_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fx = Fixture()
    await fx.saved(lease=10)  # held by a connection elsewhere
    socket = await fx.connect("e1", {"pid": PID})
    assert socket.packets == []
    assert socket.dropped
    assert fx.handled == []
    assert f"closed a connection to / for now: {SESSION_BUSY}" in caplog.text


async def test_an_unavailable_store_closes_the_transport_without_an_answer() -> None:
    fx = Fixture(tailer_fails=True)
    socket = await fx.connect("e1")
    assert socket.packets == []
    assert socket.dropped


async def test_the_explicit_recipe_replays_after_the_offset_and_the_app_still_sees_it() -> None:
    fx = Fixture()
    start = await fx.store.last_offset(NS)
    event = await fx.store.persist(NS, {"e": "news", "a": [{"n": 1}], "x": 1})
    socket = await fx.connect("e1", {"offset": start})
    assert socket.packets[0] == (EVENT, ["news", {"id": event.offset, "data": {"n": 1}}, event.offset])
    assert socket.packets[1][0] == CONNECT
    assert fx.handled[0][1] == {"offset": start}


async def test_a_connect_that_exceeds_connect_timeout_closes_the_transport() -> None:
    fx = Fixture(timeout=0.1)
    fx.tailer_hangs = True  # the store does not answer
    began = time.monotonic()
    socket = await fx.connect("e1")
    assert time.monotonic() - began < 2
    assert socket.dropped
    assert socket.packets == []


async def test_a_connect_handler_cut_off_by_connect_timeout_is_not_accepted() -> None:
    fx = Fixture(timeout=0.1)
    fx.answer = 2.0  # a slow auth check (which would then go on to refuse)
    socket = await fx.connect("e1")
    assert replies(socket) == []
    assert fx.book.states == {}


async def test_a_connect_handler_that_fails_gets_connect_error_and_the_claimed_session_stays() -> None:
    fx = Fixture()
    old = await fx.saved()
    fx.answer = RuntimeError("bug in the app")
    socket = await fx.connect("e1", {"pid": PID})
    assert errors(socket) == ["Unable to connect"]
    assert fx.book.states == {}
    assert await fx.store.claim_session(old.key) is not None  # put back: the next attempt recovers


async def test_a_refused_recovery_puts_the_session_back() -> None:
    fx = Fixture()
    old = await fx.saved()
    fx.answer = False
    socket = await fx.connect("e1", {"pid": PID})
    assert len(errors(socket)) == 1
    assert fx.tailers[NS].held == {}
    assert await fx.store.claim_session(old.key) is not None


async def test_a_transport_closed_while_connecting_is_disconnected_right_after_the_reply() -> None:
    fx = Fixture()
    disconnected: list[str] = []

    async def disconnect(sid: str, reason: Any) -> None:
        disconnected.append(sid)

    fx.sio.on("disconnect", disconnect)

    socket = FakeEioSocket()
    socket.closing = True
    fx.sockets["e1"] = fx.sio.eio.sockets["e1"] = socket
    await fx.connector.handle("e1", NS, None)
    ((reply),) = replies(socket)
    assert disconnected == [reply["sid"]]
    assert not fx.sio.manager.is_connected(reply["sid"], NS)


async def test_a_stale_connection_of_the_same_sid_here_is_superseded() -> None:
    """Connected here, yet its lease ran out (a slow store): the reconnect wins and keeps its rooms."""
    fx = Fixture()
    first = await fx.connect("e-old")
    sid = replies(first)[0]["sid"]
    fx.sio.manager.basic_enter_room(sid, NS, "live-room")
    stale = fx.book.get(NS, sid)
    assert stale is not None
    stale.rooms["live-room"] = fx.tailers[NS].position
    await fx.store.save_session(stale.key, stale.record(), 60)  # the lease ran out
    socket = await fx.connect("e-new", {"pid": "new-pid"})
    assert replies(socket) == [{"sid": sid, "pid": "new-pid"}]
    assert stale.superseded
    assert fx.sio.manager.eio_sid_from_sid(sid, NS) == "e-new"
    assert "live-room" in fx.sio.manager.get_rooms(sid, NS)


async def test_a_second_connect_of_one_engineio_session_to_a_namespace_is_refused() -> None:
    fx = Fixture()
    socket = await fx.connect("e1")
    await fx.connector.handle("e1", NS, None)
    assert [kind for kind, _ in socket.packets] == [CONNECT, CONNECT_ERROR]
    assert len(fx.book.states) == 1


async def test_a_connect_timing_out_during_its_replay_leaves_nothing_behind() -> None:
    fx = Fixture(timeout=0.2, store=HangingReplay())
    old = await fx.saved()
    await fx.store.persist(NS, {"e": "ev", "a": [1]})
    socket = await fx.connect("e1", {"pid": PID})
    assert socket.dropped
    assert replies(socket) == []
    assert fx.tailers[NS].held == {}
    assert fx.book.states == {}
    await fx.book.flush(everything=True)
    assert await fx.store.claim_session(old.key) is not None
