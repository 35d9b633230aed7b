"""The CONNECT path: every connect attempt ends, promptly, with a reply.

:class:`Connector` replaces python-socketio's handling of a Socket.IO CONNECT packet. It
reads the recovery fields (``pid``, ``offset``) out of the payload, lets the
:class:`~socketio_delivery.recoverer.Recoverer` claim the old session, registers the socket
(with its old sid when it recovers), runs the app's connect handler, replays what the
socket missed and only then sends the CONNECT reply, which carries the session's ``pid``.

Whatever the handshake carries and whatever the store raises, the client gets within
``connect_timeout`` seconds one of:

* a CONNECT reply: recovered, or a new session followed by ``delivery:resync`` with the
  reason it could not recover;
* a CONNECT_ERROR (the app refused it, or the connect failed unexpectedly);
* a bare transport close when its session could not be read now (store unavailable, or
  busy: held by another connection): the client retries with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio

from ._compat import server as compat
from .recoverer import SESSION_BUSY, STORE_UNAVAILABLE, Claim, Recoverer
from .recovery import ConnectRequest, SessionState
from .sessions import SessionBook
from .store import new_id
from .tailer import Tailer
from .wire import RESYNC_EVENT

__all__ = ["Connector"]

log = logging.getLogger("socketio_delivery")

#: how long a recovering connect waits for the old connection's disconnect to finish
_OLD_DISCONNECT_WAIT = 5.0
_REFUSED = "Unable to connect"

SaveSession = Callable[[str, Any, str], Awaitable[None]]


@dataclass
class _Attempt:
    eio_sid: str
    namespace: str
    request: ConnectRequest
    claim: Claim
    #: the event loop's time when the connect must be answered
    deadline: float = 0.0
    replied: bool = False


class Connector:
    """Handles CONNECT packets for one :class:`~socketio_delivery.Delivery`."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        book: SessionBook,
        recoverer: Recoverer,
        tailer_of: Callable[[str], Awaitable[Tailer]],
        save_session: SaveSession,
        *,
        new_pid: Callable[[], str],
        rerun_connect: bool,
        timeout: float,
    ) -> None:
        self.sio = sio
        self.book = book
        self.recoverer = recoverer
        self.tailer_of = tailer_of
        self.save_session = save_session
        self.new_pid = new_pid
        self.rerun_connect = rerun_connect
        self.timeout = timeout

    async def handle(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        """Answer one CONNECT packet within :attr:`timeout` seconds (see the module docstring)."""
        attempt = _Attempt(eio_sid, namespace or "/", ConnectRequest.parse(data), Claim())
        attempt.deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            await asyncio.wait_for(self._connect(attempt), self.timeout)
        except asyncio.TimeoutError:
            log.warning("a connect to %s took over %.0f s; closed it", attempt.namespace, self.timeout)
            if not attempt.replied:
                await compat.drop_transport(self.sio, eio_sid)
        except Exception:
            log.exception("a connect to %s failed", attempt.namespace)
            if not attempt.replied:
                await compat.send_connect_error(self.sio, eio_sid, attempt.namespace, _REFUSED)

    async def _connect(self, attempt: _Attempt) -> None:
        sio, namespace = self.sio, attempt.namespace
        if not compat.serves_namespace(sio, namespace):
            await compat.send_connect_error(sio, attempt.eio_sid, namespace, _REFUSED)
            return
        tailer = await self._prepare(attempt)
        failure = attempt.claim.failure
        if tailer is None or failure in (STORE_UNAVAILABLE, SESSION_BUSY):
            # No new session in place of one we could not read: the client retries with back-off
            # (a CONNECT_ERROR would stop the JS client for good) and recovers once the store is
            # back, or once the attempt that holds its session saved it or its lease ran out.
            log.warning("closed a connection to %s for now: %s", namespace, failure)
            await compat.drop_transport(sio, attempt.eio_sid)
            return
        if failure is not None:
            # Bad input is worth a warning; an expired session or a trimmed offset is routine.
            level = logging.WARNING if failure.startswith("malformed") else logging.INFO
            log.log(level, "connection to %s did not recover: %s", namespace, failure)
        old, pending = attempt.claim.old, attempt.claim.attempt
        try:
            await self._register(attempt, tailer)
        finally:
            if old is not None and pending is not None:
                self.recoverer.end_attempt(old.key, pending)

    async def _prepare(self, attempt: _Attempt) -> Tailer | None:
        """Start live delivery of the namespace and claim what the request asks to recover."""
        request, namespace = attempt.request, attempt.namespace
        try:
            tailer = await self.tailer_of(namespace)
        except Exception as exc:
            log.error("the delivery store is unavailable (%s)", exc)
            attempt.claim = Claim(failure=STORE_UNAVAILABLE)
            return None
        if request.malformed is not None:
            attempt.claim = Claim(failure=request.malformed)
        elif request.pid is not None:
            attempt.claim = await self.recoverer.claim(namespace, request, attempt.deadline)
        elif request.offset is not None:  # the explicit recipe
            failure = await self.recoverer.check_start(namespace, request.offset)
            attempt.claim = Claim(start=request.offset if failure is None else None, failure=failure)
        return tailer

    async def _register(self, attempt: _Attempt, tailer: Tailer) -> None:
        sio, namespace, eio_sid = self.sio, attempt.namespace, attempt.eio_sid
        old, start = attempt.claim.old, attempt.claim.start
        sid = await self._sid_for(old, namespace)
        if start is not None:
            tailer.hold(sid)
        if await compat.pre_connect(sio, eio_sid, namespace, sid) is None:
            tailer.release(sid)
            await compat.send_connect_error(sio, eio_sid, namespace, _REFUSED)
            return
        state = SessionState(
            sid=sid,
            pid=old.pid if old else self.new_pid(),
            namespace=namespace,
            first_position=old.first_position if old else tailer.position,
            rooms=dict(old.rooms) if old else {},  # a refused connect leaves the claimed record as it was
            token=new_id(),
            recovered=old is not None,
            recovery_failed=attempt.claim.failure,
        )
        self.book.add(state)
        try:
            accepted, reason = await self._accept(attempt, state, old)
            if accepted:
                if old is None:
                    await self.book.save(state)  # before the client learns its pid: a kill -9 loses nothing
                await self._reply(attempt, state, tailer)
        except BaseException:
            if not attempt.replied:  # cut off (deadline) or failed: nothing of it stays behind
                await self._abandon(state, tailer, old)
            raise
        if not accepted:
            await self._abandon(state, tailer, old)
            await compat.send_connect_error(sio, eio_sid, namespace, reason)
            return
        await self._after_reply(attempt, state)

    async def _accept(
        self, attempt: _Attempt, state: SessionState, old: SessionState | None
    ) -> tuple[bool, Any]:
        """Restore a recovered socket's rooms and data, then run the app's connect handler.

        A handler still running at the deadline is cancelled, and python-socketio turns that
        into a plain return: past the deadline the connect is refused, never accepted.
        """
        if old is not None:
            for room in state.rooms:
                self.sio.manager.basic_enter_room(state.sid, state.namespace, room)
            if old.data is not None:
                await self.save_session(state.sid, old.data, state.namespace)
            if not self.rerun_connect:
                return True, None
        outcome = await compat.run_connect_handler(
            self.sio, attempt.eio_sid, state.sid, state.namespace, attempt.request.auth
        )
        if asyncio.get_running_loop().time() >= attempt.deadline:
            raise asyncio.TimeoutError
        return outcome.accepted, outcome.reason

    async def _reply(self, attempt: _Attempt, state: SessionState, tailer: Tailer) -> None:
        """Replay what the socket missed (if anything), then the CONNECT reply."""

        async def reply() -> None:
            payload = {"sid": state.sid, "pid": state.pid}
            await compat.send_connect(self.sio, attempt.eio_sid, state.namespace, payload)
            attempt.replied = True
            await self.sio.manager.connect(state.sid, state.namespace)

        start = attempt.claim.start
        if start is None:
            await reply()
            return
        explicit = attempt.claim.old is None
        try:
            await self.recoverer.replay(state, tailer, attempt.eio_sid, start, reply, explicit=explicit)
        except BaseException:
            tailer.release(state.sid)
            raise

    async def _after_reply(self, attempt: _Attempt, state: SessionState) -> None:
        sio, eio_sid, namespace = self.sio, attempt.eio_sid, state.namespace
        if await compat.disconnect_if_transport_closed(sio, eio_sid, namespace):
            return  # its disconnect saved the session as disconnected: the client comes back
        if state.recovery_failed is not None:
            await compat.send_event(
                sio, eio_sid, namespace, [RESYNC_EVENT, {"reason": state.recovery_failed}]
            )
        if attempt.claim.old is not None:
            await self.book.save(state)  # with this connection's token

    async def _sid_for(self, old: SessionState | None, namespace: str) -> str:
        """The sid of the socket: the old one when it recovers, else a new one."""
        if old is None:
            return str(self.sio.eio.generate_id())
        sid = old.sid
        stale = self.book.get(namespace, sid)
        if stale is not None:
            # Connected here, yet its lease ran out (a store slower than session_lease):
            # this reconnect wins. Its live rooms and data are newer than the record.
            old.rooms = dict(stale.rooms)
            old.data = await self.book.session_data(sid, namespace)
            stale.superseded = True
            await self.sio.disconnect(sid, namespace=namespace, ignore_queue=True)
        await self._old_connection_gone(sid, namespace)
        return sid

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

    async def _abandon(self, state: SessionState, tailer: Tailer, old: SessionState | None) -> None:
        """Undo a connect the app refused (or failed): a claimed session stays recoverable."""
        tailer.release(state.sid)
        self.book.drop(state)
        await self.sio.manager.disconnect(state.sid, state.namespace, ignore_queue=True)
        if old is not None:
            await self.book.put_back(old)
