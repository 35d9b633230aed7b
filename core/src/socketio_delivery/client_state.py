"""The Python client's rules for one namespace, as a pure state object: :class:`NamespaceState`.

No sockets, no asyncio, no python-socketio: :class:`~socketio_delivery.client.DeliveryClient`
tells the state what happened on the wire (a CONNECT sent, its reply, an event, a disconnect)
and does what the answer says. The rules are those of the Socket.IO JavaScript client >= 4.6
(connection state recovery), plus the explicit recipe mode:

- **phase**: ``"down"`` -> CONNECT sent: ``"connecting"`` -> reply: ``"flushing"`` (the events
  that came before the reply run, in order) -> ``"open"``; any disconnect: ``"down"``.
- **epoch**: +1 on every CONNECT sent and every disconnect, so the client's work for an older
  connection (a flush in progress) can tell it is stale.
- **pid**: kept from each CONNECT reply; a reconnect sends it back with the last **offset**.
  The recovery worked when the reply carries the pid that was sent (:attr:`recovered`); it failed
  when a pid was sent and another came back (:attr:`recovery_failed` holds the reason).
- **offset**: the last argument of every event without an ack id, when it is a string and the
  connection's reply carried a pid (a server that appends offsets); it is stripped before the
  handlers see the event. In recipe mode, also the ``id`` of every ``{"id": ..., "data": ...}``.
  A new session (recovery mode) or an explicit disconnect forgets it.

Example::

    state = NamespaceState()
    state.connect_sent({"token": "t"})  # -> {"token": "t"}: nothing to resume yet
    state.connect_replied({"sid": "s1", "pid": "p1"})
    assert state.flush_next() is None and state.phase == "open"
    state.event_arrived(None, ["news", "hi", "o1"])  # -> Incoming(None, ["news", "hi"])
    state.went_down()
    state.connect_sent({"token": "t"})  # -> {"pid": "p1", "offset": "o1", "token": "t"}
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from .wire import RESYNC_EVENT

__all__ = ["NOT_RECOVERED", "Incoming", "Mode", "NamespaceState", "Offset", "Phase"]

#: A stream position: the server's opaque offset string (or, in recipe mode, the ``id`` the
#: server put in its ``{"id": ..., "data": ...}`` events, which some servers make integers).
Offset = str | int

Mode = Literal["recovery", "recipe"]
Phase = Literal["down", "connecting", "flushing", "open"]

#: :attr:`NamespaceState.recovery_failed` when the server gave a new session and (not yet, or
#: never: a Node server) said why in a :data:`~socketio_delivery.wire.RESYNC_EVENT`.
NOT_RECOVERED = "new session"


class Incoming(NamedTuple):
    """An EVENT packet: its ack id (``None``: the server wants no ack) and ``[event, *args]``."""

    ack_id: int | None
    data: list[Any]


def is_offset(value: Any) -> bool:
    """Whether ``value`` can be a position: a str or an int (not a bool)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


class NamespaceState:
    """What the client knows about one namespace, and the rules that change it.

    Read the attributes; change them only through the methods (each one is a wire event).

    :param mode: ``"recovery"`` (the ``pid`` + offset protocol) or ``"recipe"`` (the offset
        alone, from envelope ids and appended offsets; no pid is ever sent).
    """

    def __init__(self, mode: Mode = "recovery") -> None:
        if mode not in ("recovery", "recipe"):
            raise ValueError(f"mode must be 'recovery' or 'recipe', not {mode!r}")
        self.mode: Mode = mode
        #: the session id of the last CONNECT reply (a bearer secret)
        self.pid: str | None = None
        #: the last offset (recovery) or the last envelope id (recipe): what a reconnect resumes from
        self.offset: Offset | None = None
        #: the pid the last CONNECT carried (``None``: it asked for no recovery)
        self.sent_pid: str | None = None
        #: the last CONNECT reply carried the pid that was sent: the old session is back
        self.recovered = False
        #: why the last connect did not recover although it asked to (``None``: recovered or not asked)
        self.recovery_failed: str | None = None
        #: the reason of the resync event received on the current connection
        self.resync_reason: str | None = None
        #: the current connection's reply carried a pid: its events end with an offset
        self.server_offsets = False
        self.phase: Phase = "down"
        #: +1 on every CONNECT sent and every disconnect
        self.epoch = 0
        #: disconnected for good: no reconnection will follow
        self.closed = False
        self._held: deque[Incoming] = deque()

    def __repr__(self) -> str:
        return (
            f"NamespaceState(mode={self.mode!r}, phase={self.phase!r}, epoch={self.epoch}, "
            f"offset={self.offset!r}, recovered={self.recovered}, held={len(self._held)})"
        )

    @property
    def held(self) -> int:
        """How many events wait for the CONNECT reply (or for their turn in the flush)."""
        return len(self._held)

    def set_offset(self, offset: Offset | None) -> None:
        """Set the position the next connect resumes from (a stored id, in recipe mode)."""
        if offset is not None and not is_offset(offset):
            raise TypeError("offset must be a str or an int")
        self.offset = offset

    def resume_fields(self) -> dict[str, Offset]:
        """What a CONNECT sent now adds to the application's auth.

        Recovery mode: ``{"pid", "offset"}``, or ``{"pid"}`` before any event, or ``{}`` without
        a session. Recipe mode: ``{"offset"}`` or ``{}``.
        """
        fields: dict[str, Offset] = {}
        if self.mode == "recovery":
            if self.pid is not None:
                fields["pid"] = self.pid
                if self.offset is not None:
                    fields["offset"] = self.offset
        elif self.offset is not None:
            fields["offset"] = self.offset
        return fields

    # ---- wire events --------------------------------------------------------------------------

    def connect_sent(self, auth: Any) -> Any:
        """A CONNECT packet leaves with the application's ``auth``: return the payload to send.

        A dict (or ``None``) gets :meth:`resume_fields`; the application's keys win a clash, as in
        the JS client. Anything else is returned as is (no recovery is possible with it).
        """
        if self.phase != "down":  # a reconnect nobody told us about: the old connection is gone
            self.went_down()
        self.phase = "connecting"
        self.epoch += 1
        self.closed = False
        self.sent_pid = None
        if auth is None:
            auth = {}
        if not isinstance(auth, Mapping):
            return auth
        fields = self.resume_fields()
        if "pid" in fields:
            self.sent_pid = self.pid
        return {**fields, **auth}

    def connect_replied(self, reply: Any) -> bool:
        """The server accepted the namespace with ``reply``; the held events are to run next.

        Returns ``False`` (and changes nothing) for a reply nobody waits for: a duplicate.
        """
        if self.phase not in ("connecting", "down"):
            return False
        pid = reply.get("pid") if isinstance(reply, Mapping) else None
        pid = pid if isinstance(pid, str) and pid else None
        self.recovered = pid is not None and pid == self.sent_pid
        self.recovery_failed = NOT_RECOVERED if self.sent_pid is not None and not self.recovered else None
        self.server_offsets = pid is not None
        self.resync_reason = None
        self.pid = pid
        if self.mode == "recovery" and not self.recovered:
            self.offset = None  # a new session: the old position means nothing to it
        self.phase = "flushing"
        return True

    def flush_next(self) -> Incoming | None:
        """The next held event to hand to the handlers (offset stripped), in arrival order.

        ``None`` when none is left: the namespace is then ``"open"`` (events go straight through).
        Outside the flush (a disconnect came meanwhile) also ``None``, and nothing changes.
        """
        if self.phase != "flushing":
            return None
        if not self._held:
            self.phase = "open"
            return None
        return self._accept(self._held.popleft())

    def event_arrived(self, ack_id: int | None, data: list[Any]) -> Incoming | None:
        """An EVENT packet: the event to hand to the handlers, or ``None`` when it is held.

        Events that come while a CONNECT waits for its reply, or during the flush, are held so
        they run after the ones before them (the missed events of a recovery come first).
        """
        incoming = Incoming(ack_id, list(data))
        if self.phase in ("connecting", "flushing"):
            self._held.append(incoming)
            return None
        return self._accept(incoming)

    def went_down(self, *, explicit: bool = False, final: bool = False) -> None:
        """The namespace disconnected.

        :param explicit: the application called ``disconnect()``: the session ends (the server
            drops it too), so recovery mode forgets the pid and offset. Recipe mode keeps the offset.
        :param final: no reconnection follows (``closed``).
        """
        self.epoch += 1
        self.phase = "down"
        self._held.clear()
        if explicit and self.mode == "recovery":
            self.pid = None
            self.offset = None
            self.recovered = False
        if final:
            self.closed = True

    def reopen(self) -> None:
        """The application connects again after a final disconnect."""
        self.closed = False

    # ---- rules for one event ----------------------------------------------------------------

    def _accept(self, incoming: Incoming) -> Incoming:
        """Strip and remember the offset, remember an envelope id or a resync reason."""
        ack_id, data = incoming
        if ack_id is not None or not data:
            return incoming  # an event the server wants acked carries no offset
        if self.server_offsets and len(data) >= 2 and isinstance(data[-1], str):
            self.offset = data[-1]
            data = data[:-1]
        if self.mode == "recipe" and len(data) >= 2:
            envelope = data[1]
            if isinstance(envelope, dict) and envelope.keys() == {"id", "data"} and is_offset(envelope["id"]):
                self.offset = envelope["id"]
        if data[0] == RESYNC_EVENT:
            info = data[1] if len(data) >= 2 else None
            reason = info.get("reason") if isinstance(info, Mapping) else None
            self.resync_reason = reason if isinstance(reason, str) else "unknown"
            if self.recovery_failed is not None:
                self.recovery_failed = self.resync_reason  # the server's own words
        return Incoming(ack_id, data)
