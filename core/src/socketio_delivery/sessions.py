"""The session book: every connected socket's recoverable state, mirrored to the store.

One :class:`SessionBook` per :class:`~socketio_delivery.Delivery`. It holds the
:class:`~socketio_delivery.recovery.SessionState` of each connected socket, records which
of them changed (rooms joined or left, session data saved, events sent), saves those
promptly and renews every record well within its TTL and lease, so that:

* while a socket is connected its record is *leased* by this process: nobody else can
  recover a session that is still connected;
* when it disconnects unexpectedly its record is saved without a lease: the reconnect
  (here or on another process) can claim it at once;
* when it disconnects on purpose (client or server disconnect) its record is deleted,
  as in Node.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import socketio

from .errors import DeliveryError
from .recovery import SessionState
from .store import EventStore

__all__ = ["SessionBook"]

log = logging.getLogger("socketio_delivery")

_EXPLICIT_DISCONNECTS = frozenset({"client disconnect", "server disconnect"})
#: concurrent saves per flush (they share the store's round trips)
_SAVE_BATCH = 64

Key = tuple[str, str]  # (namespace, sid)


class SessionBook:
    """The states of connected sockets, the set of changed ones, and the loop that saves them."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: EventStore,
        recovery_window: float,
        session_lease: float,
        *,
        position_of: Callable[[str], str | None],
    ) -> None:
        self.sio = sio
        self.store = store
        self.recovery_window = recovery_window
        self.session_lease = session_lease
        self.states: dict[Key, SessionState] = {}
        #: namespace -> sid -> offset of the last event sent to that socket
        self.sent: dict[str, dict[str, str]] = {}
        #: namespace -> where live delivery is (``None``: not started)
        self.position_of = position_of
        self.closing = False
        self._dirty: set[Key] = set()
        self._get_session = sio.get_session

    # -- lookups ----------------------------------------------------------------------
    def get(self, namespace: str, sid: str) -> SessionState | None:
        return self.states.get((namespace, sid))

    def connected_with(self, key: str) -> SessionState | None:
        """The live state of the session stored under ``key`` in this process, if any."""
        return next((s for s in self.states.values() if s.key == key and not s.superseded), None)

    def sent_to(self, namespace: str) -> dict[str, str]:
        """``sid -> offset of the last event sent``, for one namespace (live delivery writes it)."""
        return self.sent.setdefault(namespace, {})

    # -- changes ----------------------------------------------------------------------
    def add(self, state: SessionState) -> None:
        self.states[(state.namespace, state.sid)] = state

    def drop(self, state: SessionState) -> None:
        """Forget a state in memory only (a connect that did not complete)."""
        state.superseded = True
        if self.states.get((state.namespace, state.sid)) is state:
            del self.states[(state.namespace, state.sid)]
        self.sent.get(state.namespace, {}).pop(state.sid, None)

    def entered(self, sid: str, namespace: str, room: Any) -> None:
        """A room join (``manager.basic_enter_room``): remembered with the stream position."""
        state = self.states.get((namespace, sid))
        if state is not None and isinstance(room, str) and room != sid and room not in state.rooms:
            position = self.position_of(namespace)
            state.rooms[room] = position if position is not None else state.first_position
            self._dirty.add((namespace, sid))

    def left(self, sid: str, namespace: str, room: Any) -> None:
        state = self.states.get((namespace, sid))
        if state is not None and state.rooms.pop(room, None) is not None:
            self._dirty.add((namespace, sid))

    def touched(self, sid: str, namespace: str) -> None:
        """The session data of a socket changed (``sio.save_session``)."""
        if (namespace, sid) in self.states:
            self._dirty.add((namespace, sid))

    def continuity_broke(self, namespace: str, position: str) -> list[SessionState]:
        """The stream of ``namespace`` restarted at ``position``: re-base every connected state.

        Returns the states whose clients must be told (``delivery:resync``).
        """
        broken = [s for (ns, _), s in self.states.items() if ns == namespace and not s.superseded]
        for state in broken:
            state.first_position = position
            state.rooms = dict.fromkeys(state.rooms, position)
            state.sent = ""
            self._dirty.add((namespace, state.sid))
        self.sent.get(namespace, {}).clear()  # in place: live delivery holds this dict
        return broken

    # -- disconnects -------------------------------------------------------------------
    async def disconnected(self, namespace: str, sid: str, reason: Any) -> None:
        """Save (unexpected close) or delete (explicit disconnect) the session of a socket."""
        state = self.states.pop((namespace, sid), None)
        self._dirty.discard((namespace, sid))
        if state is None or state.superseded:
            return
        if state.sid in self.sent.get(namespace, {}):
            state.sent = self.sent[namespace].pop(state.sid)
        if reason not in _EXPLICIT_DISCONNECTS or self.closing:
            # Saved without a lease: claimable by the reconnect (which may be racing this
            # disconnect: clients come back within milliseconds).
            await self.save(state)
        else:
            await self.forget(state.key)  # ended for good, as in Node

    # -- store ------------------------------------------------------------------------
    async def session_data(self, sid: str, namespace: str) -> Any:
        """The socket's ``sio.get_session`` data when it is JSON (else ``None``, with a warning)."""
        try:
            data = await self._get_session(sid, namespace=namespace)
        except (KeyError, TypeError):
            return None
        if not data:
            return None
        try:
            json.dumps(data)
        except (TypeError, ValueError, RecursionError):
            log.warning("session data of %s is not JSON; it will not be recovered", sid)
            return None
        return data

    async def save(self, state: SessionState) -> None:
        """Save a session: locked for this process while it is connected here, else claimable."""
        state.data = await self.session_data(state.sid, state.namespace)
        state.sent = self.sent.get(state.namespace, {}).get(state.sid, state.sent)
        state.position = self.position_of(state.namespace) or state.position
        connected = not self.closing and self.states.get((state.namespace, state.sid)) is state
        try:
            await self.store.save_session(
                state.key,
                state.record(),
                self.recovery_window,
                lease=self.session_lease if connected else None,
            )
        except DeliveryError as exc:
            log.error("could not save the session of %s: %s", state.sid, exc)

    async def put_back(self, old: SessionState, *, lease: float | None = None) -> None:
        """Save a claimed session back: claimable, or locked for this process with ``lease``."""
        try:
            await self.store.save_session(old.key, old.record(), self.recovery_window, lease=lease)
        except DeliveryError as exc:
            log.error("could not return the session of %s to the store: %s", old.sid, exc)

    async def forget(self, key: str) -> None:
        """Delete a session record this process holds (a lease of its own makes claims busy)."""
        try:
            await self.store.save_session(key, {}, self.recovery_window)
            await self.store.claim_session(key)
        except DeliveryError as exc:
            log.error("could not delete a session record: %s", exc)

    async def flush(self, *, everything: bool = False) -> None:
        """Save the changed sessions now (all of them with ``everything``)."""
        if everything:
            self._dirty.update(self.states)
        dirty, self._dirty = self._dirty, set()
        states = [s for s in map(self.states.get, dirty) if s is not None and not s.superseded]
        for i in range(0, len(states), _SAVE_BATCH):
            await asyncio.gather(*(self.save(state) for state in states[i : i + _SAVE_BATCH]))

    async def save_loop(self) -> None:
        """Save changed sessions promptly; renew all of them well within their TTL and lease."""
        refresh = min(self.recovery_window / 4, self.session_lease / 3)
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + refresh
        while not self.closing:
            await asyncio.sleep(0.1)
            everything = loop.time() >= next_refresh
            if everything:
                next_refresh = loop.time() + refresh
            try:
                await self.flush(everything=everything)
            except Exception:
                log.exception("saving sessions failed")
