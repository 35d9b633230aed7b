"""``Delivery``: at-least-once, in-order delivery and connection state recovery for python-socketio.

::

    import socketio
    from socketio_delivery import Delivery

    sio = socketio.AsyncServer(async_mode="asgi")
    delivery = Delivery(sio, store="sqlite:///events.db")

    @sio.event
    async def connect(sid, environ, auth):
        if not delivery.recovered(sid):
            await sio.enter_room(sid, "match-42")

How it works (the wire protocol is Socket.IO's own, v4.6+):

* **Emits** without an ack callback are persisted in the store before anything is sent
  (``await sio.emit(...)`` returns once the event is durable and this process has sent it
  to its own clients, and raises :class:`~socketio_delivery.StoreError` when it could not
  be persisted). Every process delivers them to its own clients by reading the store's log
  in offset order (:mod:`.tailer`), with the offset appended as the last argument, as the
  Node server does.
* **CONNECT** replies carry a ``pid``. A reconnect that presents it (with the offset of the
  last event it got) gets its sid, rooms and session data back and the events it missed,
  before the CONNECT reply (:mod:`.recovery`). When that is impossible the client gets a
  new session and a ``delivery:resync`` event: continuity is never broken silently.
* **Client emits** carrying an idempotency key run their handler once (:mod:`.dedup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from ._compat import server as compat
from ._tasks import cancel_and_wait
from .config import ENV_STORE_URL
from .dedup import IdempotencyGuard
from .errors import (
    ConfigurationError,
    DeliveryError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
)
from .recovery import ConnectRequest, SessionState, entitled, session_key
from .registry import open_store
from .store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Capability, Event, EventStore, new_id
from .tailer import Tailer
from .wire import RESERVED_EVENTS, RESYNC_EVENT, emit_args, packet_of, persist_emit

__all__ = ["DEFAULT_STORE_URL", "RESYNC_EVENT", "Delivery"]

#: The store of a ``Delivery`` given none, when ``SOCKETIO_DELIVERY_STORE_URL`` is not set
#: either: the embedded SQLite store, in ``events.db`` in the working directory.
DEFAULT_STORE_URL = "sqlite:///events.db"

log = logging.getLogger("socketio_delivery")

_EXPLICIT_DISCONNECTS = frozenset({"client disconnect", "server disconnect"})
_STORE_UNAVAILABLE = "store unavailable"
_SESSION_BUSY = "session being recovered elsewhere"
_OFFSET_GONE = "offset no longer available"
#: how long an emit waits for this process's live delivery after persisting (it is durable already)
_DELIVERY_WAIT = 10.0
#: how long a recovering connect waits for the old connection's disconnect to finish
_OLD_DISCONNECT_WAIT = 10.0
#: how long a reconnect waits for an attempt with the same pid under way in this process
_ATTEMPT_WAIT = 30.0
#: pauses before a claim of a session leased elsewhere is tried again (that attempt may be finishing)
_CLAIM_RETRY_DELAYS = (0.1, 0.3)
#: seconds a claimed session stays hidden from other claims unless saved back sooner: the
#: longest a client waits when the process recovering it died between claim and save
_CLAIM_LEASE = 5.0
_UNKNOWN_SESSION = "unknown, expired or already used session"
#: how long the old connection of a session connected here has to answer a ping when its
#: pid is presented again (no answer: it is half-open, and is closed for the reconnect)
_PING_WAIT = 1.5

Identity = Callable[[str, str], "str | Awaitable[str]"]


class Delivery:
    """Attach delivery guarantees to a ``socketio.AsyncServer``.

    :param sio: the server (ASGI, aiohttp, ... any asyncio mode; any client manager,
        including ``AsyncRedisManager``). Its ``always_connect`` must be ``False``.
    :param store: a store URL (``"sqlite:///events.db"``), a config mapping
        (``{"url": ..., "options": {...}}``), an :class:`~socketio_delivery.EventStore`
        object, or ``None`` to read ``SOCKETIO_DELIVERY_STORE_URL`` (when that is not set
        either: :data:`DEFAULT_STORE_URL`, ``sqlite:///events.db``).
    :param recovery_window: seconds a disconnected session can be recovered (Node's
        ``maxDisconnectionDuration``; default 2 minutes).
    :param rerun_connect: run the app's connect handler again for a recovered socket
        (``delivery.recovered(sid)`` tells it apart). ``False`` skips it.
    :param session_lease: seconds a connected session stays locked in the store after this
        process last renewed it (every third of it): nobody can recover a session that is
        still connected, and the clients of a process killed without a goodbye wait at most
        this long before another process recovers them.
    :param poll_interval: seconds between reads of a store other processes write to;
        emits of this process are delivered at once.
    :param page_size: events per store read (live delivery and replay).
    :param idempotency_key: the field of a client emit's first argument (a dict) that makes
        it processed-once; ``None`` turns processed-once handling off.
    :param idempotency_ttl: seconds a processed-once result is kept for retries.
    :param identity: ``identity(sid, namespace) -> str`` (or awaitable): who a client is, for
        scoping idempotency keys. Default: its recovery session (stable across recoveries).
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: str | Mapping[str, Any] | EventStore | None = None,
        *,
        recovery_window: float = 120.0,
        rerun_connect: bool = True,
        session_lease: float = 15.0,
        poll_interval: float = 0.05,
        page_size: int = DEFAULT_PAGE_SIZE,
        idempotency_key: str | None = "idempotencyKey",
        idempotency_ttl: float = 3600.0,
        identity: Identity | None = None,
    ) -> None:
        compat.check_version()
        if not isinstance(sio, socketio.AsyncServer):
            raise ConfigurationError("Delivery needs a socketio.AsyncServer (asyncio)")
        if sio.always_connect:
            raise ConfigurationError("Delivery needs always_connect=False (the CONNECT reply comes last)")
        seconds = {
            "recovery_window": recovery_window,
            "session_lease": session_lease,
            "poll_interval": poll_interval,
            "idempotency_ttl": idempotency_ttl,
        }
        for name, value in seconds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= MAX_PAGE_SIZE
        ):
            raise ConfigurationError(f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
        self.sio = sio
        self._owns_store = not isinstance(store, EventStore)
        if store is None and not os.environ.get(ENV_STORE_URL):
            store = DEFAULT_STORE_URL
        self.store: EventStore = open_store(store)
        self.recovery_window = float(recovery_window)
        self.rerun_connect = rerun_connect
        self.session_lease = float(session_lease)
        self.page_size = page_size
        self._poll = poll_interval if Capability.MULTI_PROCESS in self.store.capabilities else None
        self._identity = identity
        self._guard = (
            IdempotencyGuard(
                self.store, field=idempotency_key, ttl=idempotency_ttl, not_handled=sio.not_handled
            )
            if idempotency_key
            else None
        )
        self._states: dict[tuple[str, str], SessionState] = {}
        self._tailers: dict[str, Tailer] = {}
        self._dirty: set[tuple[str, str]] = set()
        #: namespace -> sid -> offset of the last event sent to that socket
        self._sent: dict[str, dict[str, str]] = {}
        #: session key -> set when the connect that claimed it is over
        self._attempts: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._opened = False
        self._closing = False
        self._saver: asyncio.Task[None] | None = None
        self._install()

    # -- public API ---------------------------------------------------------------
    def recovered(self, sid: str, namespace: str = "/") -> bool:
        """True when this connection restored an earlier session (same sid, rooms, data, missed events)."""
        state = self._states.get((namespace, sid))
        return bool(state and state.recovered)

    def recovery_failed(self, sid: str, namespace: str = "/") -> str | None:
        """Why the client's request to recover failed (``None`` when it did not ask, or recovered)."""
        state = self._states.get((namespace, sid))
        return state.recovery_failed if state else None

    async def publish(
        self,
        event: str,
        data: Any,
        *,
        to: str | list[str] | None = None,
        room: str | list[str] | None = None,
        skip_sid: str | list[str] | None = None,
        namespace: str | None = None,
    ) -> str:
        """Persist a durable application event and deliver it as ``{"id": offset, "data": data}``.

        Clients that keep the last ``id`` and send it as ``auth={"offset": id}`` when they
        connect get every such event they missed (the explicit recipe; any client).
        Returns the offset.
        """
        return await self._persist(event, [data], namespace or "/", to or room, skip_sid, explicit=True)

    async def open(self) -> None:
        """Open the store and start the background tasks (done lazily on first use otherwise)."""
        async with self._lock:
            if self._opened:
                return
            await self.store.open()
            self._saver = asyncio.create_task(self._save_loop(), name="socketio-delivery sessions")
            self._opened = True

    async def close(self) -> None:
        """Save every connected session (so a restart can recover them), stop, close the store."""
        self._closing = True
        for tailer in list(self._tailers.values()):
            await tailer.stop()
        self._tailers.clear()
        if self._saver is not None:
            await cancel_and_wait(self._saver)
            self._saver = None
        if self._opened:
            self._dirty.update(self._states)
            await self._flush()
            if self._owns_store:
                await self.store.close()
        self._opened = False

    # -- hooks --------------------------------------------------------------------
    def _install(self) -> None:
        def entered_room(sid: str, namespace: str, room: Any) -> None:
            state = self._states.get((namespace, sid))
            if state is not None and isinstance(room, str) and room != sid and room not in state.rooms:
                tailer = self._tailers.get(namespace)
                state.rooms[room] = tailer.position if tailer else state.offset
                self._dirty.add((namespace, sid))

        def left_room(sid: str, namespace: str, room: Any) -> None:
            state = self._states.get((namespace, sid))
            if state is not None and state.rooms.pop(room, None) is not None:
                self._dirty.add((namespace, sid))

        def saved_session(sid: str, namespace: str) -> None:
            if (namespace, sid) in self._states:
                self._dirty.add((namespace, sid))

        originals = compat.install(
            self.sio,
            self._handle_connect,
            self._on_trigger,
            on_emit=self._emit,
            on_enter_room=entered_room,
            on_leave_room=left_room,
            on_save_session=saved_session,
        )
        self._manager_emit = originals.emit
        self._save_session = originals.save_session

    async def _tailer(self, namespace: str) -> Tailer:
        tailer = self._tailers.get(namespace)
        if tailer is not None:
            return tailer
        await self.open()
        async with self._lock:
            tailer = self._tailers.get(namespace)
            if tailer is None:
                tailer = Tailer(
                    self.store,
                    namespace,
                    self._deliverer(namespace),
                    poll_interval=self._poll,
                    page_size=self.page_size,
                )
                await tailer.start()
                self._tailers[namespace] = tailer
        return tailer

    # -- server -> client ------------------------------------------------------------
    async def _emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or event in RESERVED_EVENTS:
            # acked emits carry no offset (as in Node): one client, confirmed by its ack
            await self._manager_emit(
                event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        await self._persist(event, emit_args(data), namespace or "/", room, skip_sid, explicit=False)

    async def _persist(
        self, event: str, args: list[Any], namespace: str, room: Any, skip_sid: Any, *, explicit: bool
    ) -> str:
        tailer = await self._tailer(namespace)
        persisted = await persist_emit(
            self.store, namespace, event, args, to=room, skip_sid=skip_sid, explicit=explicit
        )
        tailer.wake()
        if not await tailer.delivered(persisted.offset, _DELIVERY_WAIT):
            log.warning("event %s is persisted but not yet delivered by this process", persisted.offset)
        return persisted.offset

    def _deliverer(self, namespace: str) -> Callable[[Event, list[str]], Awaitable[None]]:
        sent = self._sent.setdefault(namespace, {})

        async def deliver(event: Event, held: list[str]) -> None:
            name, *args = packet_of(event)
            rooms = event.rooms
            room = None if not rooms else rooms[0] if len(rooms) == 1 else list(rooms)
            skip = {*event.exclude, *held} if held else set(event.exclude)
            for sid in await compat.local_emit(self.sio, name, args, namespace, room, skip):
                sent[sid] = event.offset

        return deliver

    # -- connect ----------------------------------------------------------------------
    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        sio, manager = self.sio, self.sio.manager
        namespace = namespace or "/"
        if not compat.serves_namespace(sio, namespace):
            await compat.send_connect_error(sio, eio_sid, namespace, "Unable to connect")
            return
        request = ConnectRequest.parse(data)
        failure = request.malformed
        old: SessionState | None = None
        start: str | None = None
        try:
            tailer = await self._tailer(namespace)
        except DeliveryError as exc:
            failure = _STORE_UNAVAILABLE
            log.error("the delivery store is unavailable (%s)", exc)
        if failure is None and request.pid is not None:
            old, start, failure = await self._claim(namespace, request)
        elif failure is None and request.offset is not None:
            failure = await self._check_start(namespace, request.offset)  # the explicit recipe
            start = request.offset if failure is None else None
        if failure in (_STORE_UNAVAILABLE, _SESSION_BUSY):
            # No new session in place of one we could not read: the client retries with back-off
            # (a CONNECT_ERROR would stop the JS client for good) and recovers once the store is
            # back, or once the attempt that holds its session saved it or its lease ran out.
            log.warning("closed a connection to %s for now: %s", namespace, failure)
            await compat.drop_transport(sio, eio_sid)
            return
        if failure is not None:
            # Bad input is worth a warning; an expired session or a trimmed offset is routine.
            level = logging.WARNING if failure.startswith("malformed") else logging.INFO
            log.log(level, "connection to %s did not recover: %s", namespace, failure)

        attempt = self._attempts.get(old.key) if old is not None else None
        try:
            if old is not None:
                sid = old.sid
                stale = self._states.get((namespace, sid))
                if stale is not None:
                    # Connected here, yet its lease ran out (a store slower than session_lease):
                    # this reconnect wins. Its live rooms and data are newer than the record.
                    old.rooms = dict(stale.rooms)
                    old.data = await self._session_data(sid, namespace)
                    stale.superseded = True
                    await sio.disconnect(sid, namespace=namespace, ignore_queue=True)
                await self._old_connection_gone(sid, namespace)
            else:
                sid = sio.eio.generate_id()
            held = start is not None
            if held:
                tailer.held[sid] = None
            compat.forced_sid.set(sid)
            try:
                registered = await manager.pre_connect(eio_sid, namespace)
            finally:
                compat.forced_sid.set(None)
            if registered is None:
                tailer.held.pop(sid, None)
                await compat.send_connect_error(sio, eio_sid, namespace, "Unable to connect")
                return
            state = SessionState(
                sid=sid,
                pid=old.pid if old else self.store.generate_id(),
                namespace=namespace,
                offset=old.offset if old else tailer.position,
                rooms=old.rooms if old else {},
                token=new_id(),
                recovered=old is not None,
                recovery_failed=failure,
            )
            self._states[(namespace, sid)] = state
            try:
                if old is not None:
                    for room in state.rooms:
                        manager.basic_enter_room(sid, namespace, room)
                    if old.data is not None:
                        await self._save_session(sid, old.data, namespace)
                if old is not None and not self.rerun_connect:
                    outcome = compat.ConnectOutcome(True)
                else:
                    outcome = await compat.run_connect_handler(sio, eio_sid, sid, namespace, request.auth)
            except BaseException:
                await self._abandon(state, tailer, old)
                raise
            if not outcome.accepted:
                await self._abandon(state, tailer, old)
                await compat.send_connect_error(sio, eio_sid, namespace, outcome.reason)
                return
            if old is None:
                await self._save(state)  # before the client learns its pid: a kill -9 loses nothing
            if held:
                assert start is not None
                try:
                    await self._replay(state, tailer, eio_sid, start, explicit=old is None)
                except BaseException:
                    tailer.held.pop(sid, None)
                    raise
            else:
                await compat.send_connect(sio, eio_sid, namespace, {"sid": sid, "pid": state.pid})
                await manager.connect(sid, namespace)
            if await compat.disconnect_if_transport_closed(sio, eio_sid, namespace):
                return  # its disconnect saved the session as disconnected: the client comes back
            if state.recovery_failed is not None:
                await compat.send_event(
                    sio, eio_sid, namespace, [RESYNC_EVENT, {"reason": state.recovery_failed}]
                )
            if old is not None:
                await self._save(state)  # with this connection's token
        finally:
            if old is not None and attempt is not None:
                self._end_attempt(old.key, attempt)

    async def _old_connection_gone(self, sid: str, namespace: str) -> None:
        """Wait while a disconnect of the same sid is still being handled in this process.

        Its last step unregisters the sid; run after the recovered socket registered, it
        would unregister the new connection.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _OLD_DISCONNECT_WAIT
        while self.sio.manager.eio_sid_from_sid(sid, namespace) is not None:
            if loop.time() > deadline:
                log.warning(
                    "%s on %s: the old connection is still registered; taking it over", sid, namespace
                )
                self.sio.manager.basic_disconnect(sid, namespace)
                return
            await asyncio.sleep(0.01)

    async def _claim(
        self, namespace: str, request: ConnectRequest
    ) -> tuple[SessionState | None, str | None, str | None]:
        """Claim the session of ``request.pid``.

        Returns ``(state, replay start, None)``, or ``(None, None, why not)``.
        """
        assert request.pid is not None
        key = session_key(namespace, request.pid)
        try:
            record = await self._claim_record(key)
        except SessionBusyError:
            return None, None, _SESSION_BUSY
        except DeliveryError as exc:
            log.error("could not read a session to recover (%s)", exc)
            return None, None, _STORE_UNAVAILABLE
        old = SessionState.from_record(record, namespace, request.pid) if record is not None else None
        if old is None:
            if record is not None:
                await self._forget(key)  # leased by this claim until now
            return None, None, _UNKNOWN_SESSION
        attempt = self._attempts[key] = asyncio.Event()
        start = old.offset
        if request.offset is not None and request.offset > start:
            start = request.offset
        failure = await self._check_start(namespace, start)
        if (
            failure == _OFFSET_GONE
            and start < old.position
            and (not old.sent or (request.offset is not None and request.offset >= old.sent))
        ):
            # It got every event it was sent; the trimmed ones after `start` were other rooms'
            # (an idle socket, Node #5282): resume from where this session last saw the stream.
            start = old.position
            failure = await self._check_start(namespace, start)
        if failure is None:
            if old.sent:
                self._sent.setdefault(namespace, {})[old.sid] = old.sent
            # Locked for this process at once, for as long as a connected session: should it
            # die during the replay, the client recovers elsewhere once the lease runs out
            # (replaying from its own offset, so nothing twice).
            await self._put_back(old, lease=self.session_lease)
            return old, start, None
        self._end_attempt(key, attempt)
        if failure == _STORE_UNAVAILABLE:
            await self._put_back(old)
        else:  # the client starts over with a new session: this one must not come back
            await self._forget(key)
        return None, None, failure

    async def _claim_record(self, key: str) -> dict[str, Any] | None:
        """Claim a session record under a lease, waiting for an attempt with the same pid.

        The lease, not a delete, is what makes a process that dies between claiming and
        saving the record back lose nothing: the record comes back when the lease ends.
        A client that gave up on a slow CONNECT reply comes back while its first attempt
        still holds the record: it waits for that attempt (which then recovered or put the
        record back) instead of losing the session. A record leased elsewhere is tried
        again twice within 0.4 s (kept short: python-socketio's client waits 1 s for a
        CONNECT reply); then :class:`SessionBusyError` propagates. A session that is still
        connected is leased too (by the process serving it), so another use of its pid
        recovers nothing; when that connection is in this process and does not answer a
        ping (half-open), it is closed and the session claimed for the reconnect.
        """
        pinged = False
        for delay in (*_CLAIM_RETRY_DELAYS, None):
            pending = self._attempts.get(key)
            if pending is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(pending.wait(), _ATTEMPT_WAIT)
            try:
                return await self.store.claim_session(key, lease=_CLAIM_LEASE)
            except SessionBusyError:
                if delay is None:
                    raise
            if pending is None and key not in self._attempts:
                if not pinged:
                    pinged = True
                    if await self._close_if_silent(key):
                        continue  # its disconnect saved the session: claim it now
                await asyncio.sleep(delay)
        return None

    async def _close_if_silent(self, key: str) -> bool:
        """Close the connection of session ``key`` in this process if it does not answer a ping.

        A client whose connection broke without the server noticing (half-open: a phone
        changed networks) comes back before the server's ping timeout. Its old connection
        does not answer: closing it saves the session for the reconnect. A connection that
        answers keeps its session, and the other use of its pid recovers nothing.
        """
        state = next((s for s in self._states.values() if s.key == key and not s.superseded), None)
        eio_sid = None if state is None else self.sio.manager.eio_sid_from_sid(state.sid, state.namespace)
        if state is None or eio_sid is None:
            return False
        if await compat.transport_answers(self.sio, eio_sid, _PING_WAIT):
            return False
        log.info("%s on %s: the old connection did not answer a ping; closed it", state.sid, state.namespace)
        await compat.drop_transport(self.sio, eio_sid)
        return True

    def _end_attempt(self, key: str, attempt: asyncio.Event) -> None:
        attempt.set()
        if self._attempts.get(key) is attempt:
            del self._attempts[key]

    async def _check_start(self, namespace: str, start: str) -> str | None:
        """``None`` when a replay can start after ``start``, otherwise why it cannot."""
        try:
            await self.store.fetch_since(namespace, start, limit=1)
            if start > await self.store.last_offset(namespace):
                return _OFFSET_GONE  # not one this stream has handed out
        except DeliveryError as exc:
            return _replay_failure(exc)
        return None

    async def _put_back(self, old: SessionState, *, lease: float | None = None) -> None:
        """Save a claimed session back: claimable, or locked for this process with ``lease``."""
        try:
            await self.store.save_session(old.key, old.record(), self.recovery_window, lease=lease)
        except DeliveryError as exc:
            log.error("could not return the session of %s to the store: %s", old.sid, exc)

    async def _forget(self, key: str) -> None:
        """Delete a session record this process holds (a lease of its own makes claims busy)."""
        try:
            await self.store.save_session(key, {}, self.recovery_window)
            await self.store.claim_session(key)
        except DeliveryError as exc:
            log.error("could not delete a session record: %s", exc)

    async def _abandon(self, state: SessionState, tailer: Tailer, old: SessionState | None) -> None:
        """Undo a connect the app refused (or failed): a claimed session stays recoverable."""
        tailer.held.pop(state.sid, None)
        state.superseded = True
        self._states.pop((state.namespace, state.sid), None)
        self._sent.get(state.namespace, {}).pop(state.sid, None)
        await self.sio.manager.disconnect(state.sid, state.namespace, ignore_queue=True)
        if old is not None:
            await self._put_back(old)

    async def _replay(
        self, state: SessionState, tailer: Tailer, eio_sid: str, start: str, *, explicit: bool
    ) -> None:
        """Send what the socket missed, then the CONNECT reply, then let live delivery reach it."""
        sio, namespace, sid = self.sio, state.namespace, state.sid
        if explicit:
            rooms = set(self.sio.manager.get_rooms(sid, namespace)) | {sid}

            def wanted(event: Event) -> bool:
                return sid not in event.exclude and (not event.rooms or not rooms.isdisjoint(event.rooms))

            room_filter = list(rooms)
        else:

            def wanted(event: Event) -> bool:
                return entitled(event, state)

            room_filter = [*state.rooms, sid]
        sent = 0
        cursor = start
        while True:
            target = tailer.position
            try:
                while cursor < target:
                    page = await self.store.fetch_since(
                        namespace, cursor, rooms=room_filter, limit=self.page_size
                    )
                    for event in page:
                        if event.offset > target:
                            break
                        if wanted(event):
                            await compat.send_event(sio, eio_sid, namespace, packet_of(event))
                            self._sent[namespace][sid] = event.offset
                            sent += 1
                        cursor = event.offset
                    if not page or page[-1].offset > target:
                        break
            except DeliveryError as exc:
                state.recovery_failed = _replay_failure(exc)
                log.warning("replay to %s on %s stopped: %s", sid, namespace, exc)
            cursor = max(cursor, target)
            async with tailer.lock:
                if tailer.position != target:
                    continue  # live delivery moved on meanwhile: catch up first
                if cursor > target:
                    tailer.held[sid] = cursor  # the client is ahead of this node
                else:
                    tailer.held.pop(sid, None)
                await compat.send_connect(sio, eio_sid, namespace, {"sid": sid, "pid": state.pid})
                await sio.manager.connect(sid, namespace)
                break
        log.info(
            "%s %s on %s: replayed %d events",
            "replayed to" if explicit else "recovered",
            sid,
            namespace,
            sent,
        )

    # -- events from clients, disconnects ------------------------------------------------
    async def _on_trigger(
        self, original: Callable[..., Awaitable[Any]], event: str, namespace: str, *args: Any
    ) -> Any:
        if event == "disconnect":
            # Saved first: the client may be reconnecting already, and until this save its
            # session is locked as connected (the app's handler may take a while).
            await self._on_disconnect(namespace, args[0], args[1] if len(args) > 1 else None)
            return await original(event, namespace, *args)
        guard = self._guard
        if guard is None or event == "connect" or len(args) < 2:
            return await original(event, namespace, *args)
        key = guard.key_of(args[1:])
        if key is None:
            return await original(event, namespace, *args)
        identity = await self._identity_of(args[0], namespace)
        return await guard.run(identity, namespace, event, key, lambda: original(event, namespace, *args))

    async def _identity_of(self, sid: str, namespace: str) -> str:
        if self._identity is not None:
            value = self._identity(sid, namespace)
            return str(await value if inspect.isawaitable(value) else value)
        state = self._states.get((namespace, sid))
        return state.pid if state else sid

    async def _on_disconnect(self, namespace: str, sid: str, reason: Any) -> None:
        state = self._states.pop((namespace, sid), None)
        self._dirty.discard((namespace, sid))
        if state is None or state.superseded:
            return
        if state.sid in self._sent.get(namespace, {}):
            state.sent = self._sent[namespace].pop(state.sid)
        if reason not in _EXPLICIT_DISCONNECTS or self._closing:
            # Saved without a lease: claimable by the reconnect (which may be racing this
            # disconnect: clients come back within milliseconds).
            await self._save(state)
        else:
            await self._forget(state.key)  # ended for good, as in Node

    # -- session records --------------------------------------------------------------------
    async def _session_data(self, sid: str, namespace: str) -> Any:
        try:
            data = await self.sio.get_session(sid, namespace=namespace)
        except (KeyError, TypeError):
            return None
        if not data:
            return None
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            log.warning("session data of %s is not JSON; it will not be recovered", sid)
            return None
        return data

    async def _save(self, state: SessionState) -> None:
        """Save a session: locked for this process while it is connected here, else claimable."""
        state.data = await self._session_data(state.sid, state.namespace)
        state.sent = self._sent.get(state.namespace, {}).get(state.sid, state.sent)
        tailer = self._tailers.get(state.namespace)
        if tailer is not None:
            state.position = tailer.position
        connected = not self._closing and self._states.get((state.namespace, state.sid)) is state
        try:
            await self.store.save_session(
                state.key,
                state.record(),
                self.recovery_window,
                lease=self.session_lease if connected else None,
            )
        except DeliveryError as exc:
            log.error("could not save the session of %s: %s", state.sid, exc)

    async def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        states = [s for s in map(self._states.get, dirty) if s is not None and not s.superseded]
        for i in range(0, len(states), 64):  # concurrent saves share the store's round trips
            await asyncio.gather(*(self._save(state) for state in states[i : i + 64]))

    async def _save_loop(self) -> None:
        """Save changed sessions promptly; renew all of them well within their TTL and lease."""
        refresh = min(self.recovery_window / 4, self.session_lease / 3)
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + refresh
        while not self._closing:
            await asyncio.sleep(0.1)
            if loop.time() >= next_refresh:
                next_refresh = loop.time() + refresh
                self._dirty.update(self._states)
            try:
                await self._flush()
            except Exception:
                log.exception("saving sessions failed")


def _replay_failure(exc: DeliveryError) -> str:
    if isinstance(exc, OffsetUnavailableError):
        return _OFFSET_GONE
    if isinstance(exc, InvalidOffsetError):
        return "malformed offset"
    return _STORE_UNAVAILABLE
