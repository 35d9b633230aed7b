"""Unit tests of :mod:`socketio_delivery.recoverer`: claiming a session and replaying what it missed.

A real ``socketio.AsyncServer`` that is never served; its Engine.IO sockets are small fakes
that record packets and answer (or not) the liveness PING.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import pytest
import socketio
from engineio import packet as eio_packet
from socketio.packet import Packet
from socketio_delivery.errors import InvalidOffsetError, SessionBusyError, StoreError
from socketio_delivery.memory import MemoryEventStore, MemoryOptions
from socketio_delivery.recoverer import (
    MALFORMED_OFFSET,
    OFFSET_GONE,
    SESSION_BUSY,
    STORE_UNAVAILABLE,
    UNKNOWN_SESSION,
    Recoverer,
    failure_of,
)
from socketio_delivery.recovery import ConnectRequest, SessionState, session_key
from socketio_delivery.sessions import SessionBook
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Event
from socketio_delivery.tailer import Tailer

NS = "/"
PID = "pid-0123456789"


class FakeEioSocket:
    """Records the Socket.IO packets sent to it; answers a PING with a PONG when ``alive``."""

    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.log: list[Any] = []
        self.pings = 0
        self.closed = False
        self.closing = False
        self.upgraded = True
        self.session: dict[str, Any] = {}
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.fail_on: str | None = None

    async def send(self, pkt: Any) -> None:
        if pkt.packet_type == eio_packet.PING:
            self.pings += 1
            if self.alive:
                asyncio.get_running_loop().call_soon(
                    lambda: asyncio.ensure_future(self.receive(eio_packet.Packet(eio_packet.PONG)))
                )
            return
        if self.fail_on is not None and self.fail_on in str(pkt.data):
            raise OSError("connection reset")
        self.log.append(Packet(encoded_packet=pkt.data).data)

    async def receive(self, pkt: Any) -> None:
        return None


class Reads(MemoryEventStore):
    """Event reads fail with ``error`` (after ``ok_reads`` good ones); ``empty`` reads find nothing."""

    def __init__(self, error: Exception | None = None, ok_reads: int = 0, options: Any = None) -> None:
        super().__init__(options)
        self.error = error
        self.ok_reads = ok_reads
        self.empty = False

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        if self.error is not None:
            if self.ok_reads <= 0:
                raise self.error
            self.ok_reads -= 1
        if self.empty:
            return []
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)


class Claims(MemoryEventStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        raise self.error


class Fixture:
    def __init__(self, store: MemoryEventStore | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.store = store or MemoryEventStore()
        self.book = SessionBook(self.sio, self.store, 60, 10, position_of=lambda ns: None)
        self.recoverer = Recoverer(self.sio, self.store, self.book, page_size=page_size)
        self.sockets: dict[str, FakeEioSocket] = {}

    async def socket(self, eio_sid: str, *rooms: str, alive: bool = True) -> str:
        self.sockets[eio_sid] = self.sio.eio.sockets[eio_sid] = FakeEioSocket(alive)
        sid: str = await self.sio.manager.connect(eio_sid, NS)
        for room in rooms:
            self.sio.manager.basic_enter_room(sid, NS, room)
        return sid

    async def saved(
        self, first: str | None = None, lease: float | None = None, **kwargs: Any
    ) -> SessionState:
        if first is None:
            first = await self.store.last_offset(NS)
        state = SessionState(sid="old-sid", pid=PID, namespace=NS, first_position=first, **kwargs)
        await self.store.save_session(state.key, state.record(), 60, lease=lease)
        return state

    async def persist(self, n: int, rooms: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[str]:
        return [
            (await self.store.persist(NS, {"e": "ev", "a": [i]}, rooms=rooms, exclude=exclude)).offset
            for i in range(n)
        ]

    async def tailer(self) -> Tailer:
        async def deliver(event: Event, skip: list[str]) -> None:
            return None

        tailer = Tailer(self.store, NS, deliver, poll_interval=None, page_size=DEFAULT_PAGE_SIZE)
        tailer.position = await self.store.last_offset(NS)
        return tailer


def request(offset: str | None = None) -> ConnectRequest:
    return ConnectRequest(auth=None, pid=PID, offset=offset)


def replayed(socket: FakeEioSocket) -> list[Any]:
    return [p[1] if p[0] == "ev" else p[0] for p in socket.log]


# -- claim -----------------------------------------------------------------------------


async def test_an_unknown_pid_is_an_unknown_session() -> None:
    fx = Fixture()
    claim = await fx.recoverer.claim(NS, request())
    assert (claim.old, claim.start, claim.failure) == (None, None, UNKNOWN_SESSION)


async def test_a_claimed_session_is_leased_for_this_process_and_replay_starts_at_the_client_offset() -> None:
    fx = Fixture()
    start = await fx.store.last_offset(NS)
    offsets = await fx.persist(3)
    await fx.saved(start, sent=offsets[1])
    claim = await fx.recoverer.claim(NS, request(offsets[0]))
    assert claim.failure is None
    assert claim.old is not None
    assert claim.start == offsets[0]
    assert fx.book.sent_to(NS) == {"old-sid": offsets[1]}
    assert claim.attempt is not None
    assert fx.recoverer.attempts[claim.old.key] is claim.attempt
    with pytest.raises(SessionBusyError):  # locked for this process, as a connected session
        await fx.store.claim_session(claim.old.key)
    fx.recoverer.end_attempt(claim.old.key, claim.attempt)
    assert fx.recoverer.attempts == {}


async def test_replay_never_starts_before_the_first_position() -> None:
    fx = Fixture()
    await fx.persist(2)
    first = await fx.store.last_offset(NS)
    await fx.saved(first)
    claim = await fx.recoverer.claim(NS, request(None))
    assert claim.start == first
    fx2 = Fixture(fx.store)
    await fx.store.save_session(session_key(NS, PID), claim.old.record() if claim.old else {}, 60)
    assert (await fx2.recoverer.claim(NS, request("0"))).start == first  # an offset before it


async def test_a_record_that_is_not_this_pids_is_forgotten() -> None:
    fx = Fixture()
    key = session_key(NS, PID)
    await fx.store.save_session(key, {"v": 1, "sid": "s", "pid": "another", "ns": NS, "offset": ""}, 60)
    assert (await fx.recoverer.claim(NS, request())).failure == UNKNOWN_SESSION
    assert await fx.store.claim_session(key) is None  # deleted, not left leased


async def test_a_leased_session_is_busy_and_the_probe_is_started() -> None:
    fx = Fixture()
    sid = await fx.socket("e-old")
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=await fx.store.last_offset(NS))
    fx.book.add(state)
    await fx.book.save(state)  # connected here: leased
    claim = await fx.recoverer.claim(NS, request())
    assert claim.failure == SESSION_BUSY
    assert fx.sockets["e-old"].pings >= 1  # it answered: still connected, left alone
    assert fx.sockets["e-old"].queue.empty()
    assert fx.recoverer._probes == {}


async def test_an_old_connection_that_does_not_answer_within_ping_timeout_is_closed_and_recovered() -> None:
    fx = Fixture()
    fx.sio.eio.ping_timeout = 0.05  # the server's own setting is what decides
    sid = await fx.socket("e-old", alive=False)
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=await fx.store.last_offset(NS))
    fx.book.add(state)
    await fx.book.save(state)
    old = fx.sockets["e-old"]

    async def transport_closes() -> None:  # what python-socketio does when the transport ends
        await old.queue.get()
        await fx.book.disconnected(NS, sid, "transport close")

    closer = asyncio.create_task(transport_closes())
    began = time.monotonic()
    claim = await fx.recoverer.claim(NS, request())
    await closer
    assert claim.failure is None
    assert claim.old is not None
    assert claim.old.sid == sid
    assert old.pings == 1
    assert time.monotonic() - began < 2  # the server's ping_timeout, not Engine.IO's default 20 s


async def test_a_session_leased_by_another_process_is_busy_after_short_retries() -> None:
    fx = Fixture()
    await fx.saved(lease=10)
    began = time.monotonic()
    assert (await fx.recoverer.claim(NS, request())).failure == SESSION_BUSY
    assert 0.35 < time.monotonic() - began < 2


async def test_a_session_leased_briefly_elsewhere_is_recovered_by_a_retry() -> None:
    fx = Fixture()
    await fx.saved(lease=0.15)
    assert (await fx.recoverer.claim(NS, request())).failure is None


@pytest.mark.parametrize(
    ("error", "failure"),
    [(StoreError("down"), STORE_UNAVAILABLE), (RuntimeError("choked"), UNKNOWN_SESSION)],
)
async def test_a_failing_claim_gives_its_reason(error: Exception, failure: str) -> None:
    fx = Fixture(Claims(error))
    assert (await fx.recoverer.claim(NS, request())).failure == failure


async def test_an_offset_from_another_epoch_is_offset_gone_and_the_session_is_forgotten() -> None:
    fx = Fixture()
    fx.store.epoch = "00000001"
    state = await fx.saved()
    claim = await fx.recoverer.claim(NS, request("ffffffff-000000000001"))
    assert claim.failure == OFFSET_GONE
    assert await fx.store.claim_session(state.key) is None
    assert fx.recoverer.attempts == {}


@pytest.mark.parametrize("error", [RuntimeError("driver choked"), InvalidOffsetError("bad shape")])
async def test_a_store_exception_on_an_offset_is_a_malformed_offset(error: Exception) -> None:
    fx = Fixture(Reads(error))
    assert await fx.recoverer.check_start(NS, "zzz") == MALFORMED_OFFSET
    state = await fx.saved()
    assert (await fx.recoverer.claim(NS, request("zzz"))).failure == MALFORMED_OFFSET
    assert await fx.store.claim_session(state.key) is None


async def test_a_store_error_reading_the_offset_puts_the_session_back_claimable() -> None:
    fx = Fixture(Reads(StoreError("down")))
    state = await fx.saved()
    assert (await fx.recoverer.claim(NS, request())).failure == STORE_UNAVAILABLE
    assert await fx.store.claim_session(state.key) == state.record()  # no lease: the retry gets it


async def test_an_offset_this_stream_never_handed_out_is_offset_gone() -> None:
    store = Reads()
    fx = Fixture(store)
    store.empty = True
    ahead = f"{store.epoch}-000000000099"
    assert await fx.recoverer.check_start(NS, ahead) == OFFSET_GONE
    assert await fx.recoverer.check_start(NS, await store.last_offset(NS)) is None


async def test_trimmed_events_the_socket_was_never_sent_do_not_stop_its_recovery() -> None:
    fx = Fixture(MemoryEventStore(MemoryOptions(max_events=2)))
    first = await fx.store.last_offset(NS)
    offsets = await fx.persist(5, rooms=("busy",))  # other rooms' events, trimmed to the last 2
    await fx.saved(first, position=offsets[-1])
    claim = await fx.recoverer.claim(NS, request(None))
    assert claim.failure is None
    assert claim.start == offsets[-1]


async def test_trimmed_events_the_socket_was_sent_but_missed_break_continuity() -> None:
    fx = Fixture(MemoryEventStore(MemoryOptions(max_events=2)))
    first = await fx.store.last_offset(NS)
    offsets = await fx.persist(5)
    await fx.saved(first, position=offsets[-1], sent=offsets[2])
    assert (await fx.recoverer.claim(NS, request(offsets[0]))).failure == OFFSET_GONE


async def test_a_second_attempt_with_the_same_pid_waits_for_the_first() -> None:
    fx = Fixture()
    await fx.saved()
    first = await fx.recoverer.claim(NS, request())
    assert first.old is not None
    assert first.attempt is not None
    second = asyncio.create_task(fx.recoverer.claim(NS, request()))
    await asyncio.sleep(0.05)
    assert not second.done()
    await fx.book.put_back(first.old)  # the first attempt gave up: claimable again
    fx.recoverer.end_attempt(first.old.key, first.attempt)
    claim = await asyncio.wait_for(second, 1)
    assert claim.failure is None


def test_failures_of_reads_are_named() -> None:
    assert failure_of(StoreError("x")) == STORE_UNAVAILABLE
    assert failure_of(InvalidOffsetError("x")) == MALFORMED_OFFSET


# -- replay ----------------------------------------------------------------------------


async def _replay(
    fx: Fixture, state: SessionState, tailer: Tailer, start: str, *, explicit: bool = False
) -> None:
    socket = fx.sockets["e-new"]

    async def reply() -> None:
        socket.log.append(["REPLY"])

    tailer.hold(state.sid)
    await fx.recoverer.replay(state, tailer, "e-new", start, reply, explicit=explicit)


async def test_replay_sends_what_the_socket_had_a_right_to_then_the_reply_then_hands_over() -> None:
    fx = Fixture()
    sid = await fx.socket("e-new")
    first = await fx.store.last_offset(NS)
    everyone = await fx.persist(1)
    mine = await fx.persist(1, rooms=("r1",))
    others = await fx.persist(1, rooms=("r2",))
    not_me = await fx.persist(1, exclude=(sid,))
    to_me = await fx.persist(1, rooms=(sid,))
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first, rooms={"r1": first})
    tailer = await fx.tailer()
    await _replay(fx, state, tailer, first)
    assert fx.sockets["e-new"].log == [
        ["ev", 0, everyone[0]],
        ["ev", 0, mine[0]],
        ["ev", 0, to_me[0]],
        ["REPLY"],
    ]
    assert {others[0], not_me[0]}.isdisjoint(p[-1] for p in fx.sockets["e-new"].log)
    assert tailer.held == {}
    assert fx.book.sent_to(NS) == {sid: to_me[0]}
    assert state.recovery_failed is None


async def test_replay_leaves_out_room_events_from_before_the_socket_joined_the_room() -> None:
    fx = Fixture()
    sid = await fx.socket("e-new")
    first = await fx.store.last_offset(NS)
    before = await fx.persist(1, rooms=("r1",))
    joined = await fx.store.last_offset(NS)
    after = await fx.persist(1, rooms=("r1",))
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first, rooms={"r1": joined})
    await _replay(fx, state, await fx.tailer(), first)
    assert [p[-1] for p in fx.sockets["e-new"].log] == [after[0], "REPLY"]
    assert before


async def test_replay_of_the_explicit_recipe_follows_the_rooms_the_socket_is_in_now() -> None:
    fx = Fixture()
    sid = await fx.socket("e-new", "r1")
    start = await fx.store.last_offset(NS)
    r1 = await fx.persist(1, rooms=("r1",))
    await fx.persist(1, rooms=("r2",))
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=start)
    await _replay(fx, state, await fx.tailer(), start, explicit=True)
    assert fx.sockets["e-new"].log == [["ev", 0, r1[0]], ["REPLY"]]


async def test_replay_skips_an_event_that_fails_to_send() -> None:
    fx = Fixture()
    sid = await fx.socket("e-new")
    first = await fx.store.last_offset(NS)
    offsets = await fx.persist(3)
    fx.sockets["e-new"].fail_on = offsets[1]
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first)
    await _replay(fx, state, await fx.tailer(), first)
    assert [p[-1] for p in fx.sockets["e-new"].log] == [offsets[0], offsets[2], "REPLY"]
    assert state.recovery_failed is None
    assert fx.book.sent_to(NS) == {sid: offsets[2]}


async def test_replay_reads_page_by_page_up_to_live_delivery_only() -> None:
    fx = Fixture(page_size=2)
    sid = await fx.socket("e-new")
    first = await fx.store.last_offset(NS)
    offsets = await fx.persist(5)
    tailer = await fx.tailer()
    later = await fx.persist(2)  # beyond the tailer: live delivery sends them
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first)
    await _replay(fx, state, tailer, first)
    assert [p[-1] for p in fx.sockets["e-new"].log] == [*offsets, "REPLY"]
    assert later


async def test_a_store_failure_during_replay_is_reported_and_the_reply_still_sent() -> None:
    store = Reads(StoreError("down"), ok_reads=1)
    fx = Fixture(store, page_size=2)
    sid = await fx.socket("e-new")
    first = await store.last_offset(NS)
    offsets = await fx.persist(5)
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first)
    tailer = await fx.tailer()
    await _replay(fx, state, tailer, first)
    assert [p[-1] for p in fx.sockets["e-new"].log] == [*offsets[:2], "REPLY"]
    assert state.recovery_failed == STORE_UNAVAILABLE
    assert tailer.held == {}


async def test_replay_catches_up_when_live_delivery_moves_on() -> None:
    fx = Fixture()
    sid = await fx.socket("e-new")
    first = await fx.store.last_offset(NS)
    offsets = await fx.persist(2)
    tailer = await fx.tailer()
    socket = fx.sockets["e-new"]
    moved: list[str] = []
    send = socket.send

    async def send_then_move_on(pkt: Any) -> None:
        await send(pkt)
        if not moved:  # while the replay runs, live delivery reads one more event
            moved.extend(await fx.persist(1))
            await tailer.drain()

    socket.send = send_then_move_on  # type: ignore[method-assign]
    state = SessionState(sid=sid, pid=PID, namespace=NS, first_position=first)
    await _replay(fx, state, tailer, first)
    assert [p[-1] for p in socket.log] == [*offsets, *moved, "REPLY"]
    assert tailer.held == {}


async def test_a_session_rebased_by_a_gap_is_recovered_from_the_oldest_event() -> None:
    fx = Fixture()
    offsets = await fx.persist(2)  # the new epoch's events, after the gap
    await fx.saved("")  # as continuity_broke leaves the session
    claim = await fx.recoverer.claim(NS, request(None))
    assert claim.failure is None
    assert claim.old is not None
    assert offsets


async def test_a_busy_session_with_a_known_lease_end_says_when_it_is_claimable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", "socketio_delivery")
    fx = Fixture(Claims(SessionBusyError(retry_after=3.25)))
    assert (await fx.recoverer.claim(NS, request())).failure == SESSION_BUSY
    assert "claimable in 3.2 s" in caplog.text


class LeasedElsewhere(MemoryEventStore):
    """Claims are busy, with the lease's remaining seconds, until that lease has run out."""

    def __init__(self, lease: float) -> None:
        super().__init__()
        self.until = time.monotonic() + lease

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        left = self.until - time.monotonic()
        if left > 0:
            raise SessionBusyError("held by a process that stopped renewing it", retry_after=left)
        return await super().claim_session(key, lease=lease)


async def test_a_lease_ending_before_the_deadline_is_waited_out_then_claimed() -> None:
    fixture = Fixture(LeasedElsewhere(lease=0.8))
    old = await fixture.saved()
    loop = asyncio.get_running_loop()
    claim = await fixture.recoverer.claim(NS, ConnectRequest(None, pid=old.pid), loop.time() + 5)
    assert claim.failure is None
    assert claim.old is not None
    assert claim.old.sid == old.sid


async def test_a_lease_ending_after_the_deadline_is_turned_away_at_once() -> None:
    fixture = Fixture(LeasedElsewhere(lease=30))
    old = await fixture.saved()
    loop = asyncio.get_running_loop()
    started = loop.time()
    claim = await fixture.recoverer.claim(NS, ConnectRequest(None, pid=old.pid), loop.time() + 5)
    assert claim.failure == SESSION_BUSY
    assert loop.time() - started < 2
