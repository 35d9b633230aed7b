"""The recoverer: claims a session for a reconnect, and replays what the socket missed.

A reconnect that presents a ``pid`` claims the session record stored under it
(:meth:`Recoverer.claim`) under a short lease, checks that the stream still holds every
event after the offset it reports, and after the connect handler accepted it, replays the
events it had a right to (:meth:`Recoverer.replay`) before its CONNECT reply, handing it over
to live delivery without a gap or a duplicate (:meth:`~socketio_delivery.tailer.Tailer.handover`).

A session that is still connected is leased by the process serving it, so another use of
its ``pid`` recovers nothing. When that connection is in this process, it is probed with
an Engine.IO PING: it counts as dead only when it does not answer within the server's
``ping_timeout`` (what Engine.IO itself would decide), or when its transport is closed;
then it is closed, its session saved, and the client's next attempt recovers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import socketio

from ._compat import server as compat
from .errors import (
    DeliveryError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
)
from .recovery import ConnectRequest, SessionState, entitled, session_key
from .sessions import SessionBook
from .store import Event, EventStore, read_on_from
from .tailer import Tailer
from .wire import packet_of

__all__ = ["Claim", "Recoverer", "failure_of"]

log = logging.getLogger("socketio_delivery")

STORE_UNAVAILABLE = "store unavailable"
SESSION_BUSY = "session being recovered elsewhere"
OFFSET_GONE = "offset no longer available"
UNKNOWN_SESSION = "unknown, expired or already used session"
MALFORMED_OFFSET = "malformed offset"
#: pauses before a claim of a leased session is tried again (that attempt may be finishing)
_CLAIM_RETRY_DELAYS = (0.1, 0.3)
#: seconds a claimed session stays hidden from other claims unless saved back sooner: the
#: longest a client waits when the process recovering it died between claim and save
CLAIM_LEASE = 5.0
#: time left for the rest of a connect after waiting out a session's lease
_LEASE_MARGIN = 1.0
#: how long a reconnect waits for an attempt with the same pid under way in this process
_ATTEMPT_WAIT = 30.0


@dataclass
class Claim:
    """The outcome of a claim: the old session and where its replay starts, or why not."""

    old: SessionState | None = None
    start: str | None = None
    failure: str | None = None
    #: set when the connect that made this claim is over (a second attempt waits for it)
    attempt: asyncio.Event | None = None


def failure_of(exc: BaseException) -> str:
    """The reason a client is given when a read for its recovery failed with ``exc``."""
    if isinstance(exc, OffsetUnavailableError):
        return OFFSET_GONE
    if isinstance(exc, InvalidOffsetError):
        return MALFORMED_OFFSET
    return STORE_UNAVAILABLE


class Recoverer:
    """Claims sessions and replays missed events; see the module docstring."""

    def __init__(
        self, sio: socketio.AsyncServer, store: EventStore, book: SessionBook, *, page_size: int
    ) -> None:
        self.sio = sio
        self.store = store
        self.book = book
        self.page_size = page_size
        #: session key -> set when the connect that claimed it is over
        self.attempts: dict[str, asyncio.Event] = {}
        self._probes: dict[str, asyncio.Task[bool]] = {}

    # -- claim ------------------------------------------------------------------------
    async def claim(self, namespace: str, request: ConnectRequest, deadline: float | None = None) -> Claim:
        """Claim the session of ``request.pid`` and find where its replay starts.

        ``deadline`` (the event loop's time the connect must be answered by): a session whose
        lease runs out before it is waited for and claimed then, rather than turned away.
        """
        assert request.pid is not None
        key = session_key(namespace, request.pid)
        try:
            record = await self._claim_record(key, deadline)
        except SessionBusyError as exc:
            self._log_busy(key, exc)
            return Claim(failure=SESSION_BUSY)
        except DeliveryError as exc:
            log.error("could not read a session to recover (%s)", _describe(exc))
            return Claim(failure=STORE_UNAVAILABLE)
        except Exception as exc:  # the store choked on this request: a new session, told so
            log.warning("the store failed on a session claim: %s", _describe(exc))
            return Claim(failure=UNKNOWN_SESSION)
        old = SessionState.from_record(record, namespace, request.pid) if record is not None else None
        if old is None:
            if record is not None:
                await self.book.forget(key)  # leased by this claim until now
            return Claim(failure=UNKNOWN_SESSION)
        attempt = self.attempts[key] = asyncio.Event()
        start, failure = await self._replay_start(namespace, old, request.offset)
        if failure is None:
            if old.sent:
                self.book.sent_to(namespace)[old.sid] = old.sent
            # Locked for this process at once, for as long as a connected session: should it
            # die during the replay, the client recovers elsewhere once the lease runs out
            # (replaying from its own offset, so nothing twice).
            await self.book.put_back(old, lease=self.book.session_lease)
            return Claim(old, start, None, attempt)
        self.end_attempt(key, attempt)
        if failure == STORE_UNAVAILABLE:
            await self.book.put_back(old)
        else:  # the client starts over with a new session: this one must not come back
            await self.book.forget(key)
        return Claim(failure=failure)

    async def _replay_start(
        self, namespace: str, old: SessionState, offset: str | None
    ) -> tuple[str, str | None]:
        start = old.first_position
        if offset is not None and offset > start:
            start = offset
        failure = await self.check_start(namespace, start)
        if (
            failure == OFFSET_GONE
            and start < old.position
            and (not old.sent or (offset is not None and offset >= old.sent))
        ):
            # It got every event it was sent; the trimmed ones after `start` were other rooms'
            # (an idle socket, Node #5282): resume from where this session last saw the stream.
            start = old.position
            failure = await self.check_start(namespace, start)
        return start, failure

    def _log_busy(self, key: str, exc: SessionBusyError) -> None:
        if self.book.connected_with(key) is not None:
            log.info("a second use of a connected session's pid was turned away")
        elif exc.retry_after is not None:
            log.info(
                "a reconnect was turned away: its session is held by another process (still "
                "connected there, or that process stopped answering: claimable in %.1f s)",
                exc.retry_after,
            )
        else:
            log.info("a reconnect was turned away: its session is held by another connection or process")

    async def _claim_record(self, key: str, deadline: float | None) -> dict[str, object] | None:
        """Claim a session record under a lease, waiting for an attempt with the same pid.

        The lease, not a delete, is what makes a process that dies between claiming and
        saving the record back lose nothing: the record comes back when the lease ends.
        A client that gave up on a slow CONNECT reply comes back while its first attempt
        still holds the record: it waits for that attempt (which then recovered or put the
        record back) instead of losing the session. A record leased elsewhere is tried
        again twice within 0.4 s (kept short: python-socketio's client waits 1 s for a
        CONNECT reply); then, when the store says its lease runs out before ``deadline``
        (a process that stopped renewing it: killed), it is claimed once that lease is over;
        otherwise :class:`SessionBusyError` propagates. A session still connected in this
        process has its connection probed (see the module docstring).
        """
        for delay in (*_CLAIM_RETRY_DELAYS, None):
            pending = self.attempts.get(key)
            if pending is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(pending.wait(), _ATTEMPT_WAIT)
            try:
                return await self.store.claim_session(key, lease=CLAIM_LEASE)
            except SessionBusyError as exc:
                if delay is None:
                    return await self._claim_after_lease(key, exc, deadline)
            if pending is None and key not in self.attempts:
                probe = self._probe(key)
                if probe is not None:
                    # a closed transport is known at once: its disconnect saves the session
                    await asyncio.wait({probe}, timeout=delay)
                    continue
            await asyncio.sleep(delay)
        return None

    async def _claim_after_lease(
        self, key: str, busy: SessionBusyError, deadline: float | None
    ) -> dict[str, object] | None:
        """Wait out a lease that ends before ``deadline``, then claim once more (else re-raise)."""
        wait = busy.retry_after
        now = asyncio.get_running_loop().time()
        if wait is None or deadline is None or self.book.connected_with(key) is not None:
            raise busy
        if now + wait + _LEASE_MARGIN >= deadline:
            raise busy
        log.info("a reconnect waits %.1f s for its session's lease to run out", wait)
        await asyncio.sleep(wait + 0.05)
        return await self.store.claim_session(key, lease=CLAIM_LEASE)

    def _probe(self, key: str) -> asyncio.Task[bool] | None:
        """Start (or join) the liveness check of session ``key``'s connection in this process."""
        probe = self._probes.get(key)
        if probe is None:
            state = self.book.connected_with(key)
            if state is None or self.sio.manager.eio_sid_from_sid(state.sid, state.namespace) is None:
                return None
            probe = self._probes[key] = asyncio.create_task(self._close_if_dead(key, state))
            probe.add_done_callback(lambda _: self._probes.pop(key, None))
        return probe

    async def _close_if_dead(self, key: str, state: SessionState) -> bool:
        """Close ``state``'s connection if Engine.IO would count it dead; True when it did."""
        eio_sid = self.sio.manager.eio_sid_from_sid(state.sid, state.namespace)
        if eio_sid is None:
            return True
        if await compat.transport_answers(self.sio, eio_sid, float(self.sio.eio.ping_timeout)):
            return False
        log.info("%s on %s: the old connection did not answer a ping; closed it", state.sid, state.namespace)
        await compat.drop_transport(self.sio, eio_sid)
        return True

    def end_attempt(self, key: str, attempt: asyncio.Event) -> None:
        attempt.set()
        if self.attempts.get(key) is attempt:
            del self.attempts[key]

    async def check_start(self, namespace: str, start: str) -> str | None:
        """``None`` when a replay can start after ``start``, otherwise why it cannot."""
        try:
            await self.store.fetch_since(namespace, start or None, limit=1)
            if start and start > await self.store.last_offset(namespace):
                return OFFSET_GONE  # not one this stream has handed out
        except DeliveryError as exc:
            return failure_of(exc)
        except Exception as exc:  # the store choked on the client's offset
            log.warning("the store failed on a client's offset: %s", _describe(exc))
            return MALFORMED_OFFSET
        return None

    # -- replay -----------------------------------------------------------------------
    async def replay(
        self,
        state: SessionState,
        tailer: Tailer,
        eio_sid: str,
        start: str,
        reply: Callable[[], Awaitable[None]],
        *,
        explicit: bool,
    ) -> None:
        """Send what the socket missed, then ``reply()`` (the CONNECT reply), then go live."""
        wanted, room_filter = _replay_filter(self.sio, state, explicit)
        sent, cursor = 0, start
        while True:
            target = tailer.position
            try:
                while cursor < target:
                    count, cursor, done = await self._replay_page(
                        state, eio_sid, cursor, target, wanted, room_filter
                    )
                    sent += count
                    if done:
                        break
            except Exception as exc:
                state.recovery_failed = failure_of(exc)
                log.warning("replay to %s on %s stopped: %s", state.sid, state.namespace, _describe(exc))
            cursor = max(cursor, target)
            if await tailer.handover(state.sid, target, cursor, reply):
                break
        kind = "replayed to" if explicit else "recovered"
        log.info("%s %s on %s: replayed %d events", kind, state.sid, state.namespace, sent)

    async def _replay_page(
        self,
        state: SessionState,
        eio_sid: str,
        cursor: str,
        target: str,
        wanted: Callable[[Event], bool],
        room_filter: list[str],
    ) -> tuple[int, str, bool]:
        """Replay one page; returns (events sent, new cursor, whether the replay reached ``target``)."""
        # "" (a session re-based after a gap): from the oldest event the store holds
        page = await self.store.fetch_since(
            state.namespace, cursor or None, rooms=room_filter, limit=self.page_size
        )
        sent = 0
        for event in page:
            if event.offset > target:
                return sent, cursor, True
            if wanted(event):
                sent += await self._send_one(state, eio_sid, event)
            cursor = event.offset
        # a page may say how far the store looked (Page.examined): read on from there
        cursor = read_on_from(page, cursor) or cursor
        if cursor > target:
            return sent, target, True
        return sent, cursor, not page and getattr(page, "examined", None) is None

    async def _send_one(self, state: SessionState, eio_sid: str, event: Event) -> int:
        try:
            await compat.send_event(self.sio, eio_sid, state.namespace, packet_of(event))
        except Exception as exc:  # a poison event: skip it, the replay goes on
            log.error(
                "event %s could not be replayed to %s, skipped (%s)", event.offset, state.sid, _describe(exc)
            )
            return 0
        self.book.sent_to(state.namespace)[state.sid] = event.offset
        return 1


def _replay_filter(
    sio: socketio.AsyncServer, state: SessionState, explicit: bool
) -> tuple[Callable[[Event], bool], list[str]]:
    """Which events a replay sends (the explicit recipe: by current rooms), and the rooms to read."""
    sid = state.sid
    if explicit:
        rooms = set(sio.manager.get_rooms(sid, state.namespace)) | {sid}

        def in_rooms(event: Event) -> bool:
            return sid not in event.exclude and (not event.rooms or not rooms.isdisjoint(event.rooms))

        return in_rooms, list(rooms)
    return (lambda event: entitled(event, state)), [*state.rooms, sid]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
