"""Connection state recovery: what a session record holds and what a reconnect may replay.

A session record is saved in the store (``save_session``) under a key derived from the
namespace and the ``pid`` (the bearer secret the client got in its CONNECT reply). It is
written when the client connects, refreshed while it stays connected and on every room
or session-data change, and written again at an unexpected disconnect, so a node that
dies (even by kill -9) does not take its clients' sessions with it. A reconnect claims
it (atomically, once) and gets back:

* the same sid and pid;
* its rooms, each with the stream position at which it joined them;
* the ``sio.get_session`` data;
* every event after the offset it reports (never before the position at which it first
  connected) addressed to everyone, to its own sid, or to a room it was in at that
  event's offset, and not excluding it.

The record also keeps the offset of the last event sent to the socket and how far live
delivery had read the stream. When retention trimmed events after the client's offset,
but the client had received everything it was sent (an idle socket in a quiet room while
other rooms were busy), nothing it was entitled to is gone: replay resumes from that
position instead of failing (Node fails here, socket.io #5282).

Offsets compare as plain strings within one epoch (see :mod:`socketio_delivery.store`),
which is what the per-room positions rely on.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from .store import MAX_OFFSET_LENGTH, Event

__all__ = ["MAX_PID_LENGTH", "ConnectRequest", "SessionState", "entitled", "pid_digest", "session_key"]

#: A pid longer than this is forged by definition (ours are 22 characters).
MAX_PID_LENGTH = 64
_VERSION = 1


_DIGEST = "sha256:"


def pid_digest(pid: str) -> str:
    """What a session record keeps of its pid: enough to check one, useless to present."""
    return _DIGEST + hashlib.sha256(f"pid\0{pid}".encode()).hexdigest()


def session_key(namespace: str, pid: str) -> str:
    """The store key of a session: a hash, so neither length nor content of the pid reaches the store."""
    digest = hashlib.sha256(f"{namespace}\0{pid}".encode()).hexdigest()
    return f"sess:{digest}"


@dataclass
class ConnectRequest:
    """What a CONNECT packet asks for, split from the application's own ``auth``."""

    auth: Any
    pid: str | None = None
    offset: str | None = None
    #: why the recovery fields were refused as malformed (``None``: fine or absent)
    malformed: str | None = None

    @classmethod
    def parse(cls, data: Any) -> ConnectRequest:
        """Split the CONNECT payload into recovery fields and the app's ``auth``.

        With a ``pid`` (connection state recovery) ``pid`` and ``offset`` are taken out;
        with only an ``offset`` (the explicit recipe) the app still sees it in ``auth``.
        """
        if not isinstance(data, dict) or ("pid" not in data and "offset" not in data):
            return cls(data)
        auth = dict(data)
        pid = auth.pop("pid", None)
        offset = auth.pop("offset", None) if "pid" in data else auth.get("offset")
        request = cls(auth or None)
        if "pid" in data and not _is_text(pid, MAX_PID_LENGTH):
            request.malformed = "malformed pid"
            return request
        request.pid = pid
        if offset is not None:
            if not _is_text(offset, MAX_OFFSET_LENGTH):
                request.malformed = "malformed offset"
                return request
            request.offset = offset
        return request


def _is_text(value: Any, longest: int) -> bool:
    """A non-empty printable string of at most ``longest`` characters that UTF-8 can encode."""
    if not isinstance(value, str) or not 0 < len(value) <= longest or not value.isprintable():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


@dataclass
class SessionState:
    """One connected socket's recoverable state, kept in memory and mirrored to the store."""

    sid: str
    pid: str
    namespace: str
    #: the stream position when the session first connected: nothing before it is ever replayed
    first_position: str
    #: room -> stream position when the socket joined it
    rooms: dict[str, str] = field(default_factory=dict)
    data: Any = None
    #: offset of the last event sent to the socket ("" when none)
    sent: str = ""
    #: the stream position live delivery had reached when the record was saved
    position: str = ""
    #: changes on every (re)connect, so a stale node never overwrites a newer record
    token: str = ""
    recovered: bool = False
    recovery_failed: str | None = None
    superseded: bool = False

    @property
    def key(self) -> str:
        return session_key(self.namespace, self.pid)

    def record(self) -> dict[str, Any]:
        return {
            "v": _VERSION,
            "sid": self.sid,
            "pid": pid_digest(self.pid),  # the record never holds the bearer secret itself
            "ns": self.namespace,
            "offset": self.first_position,
            "rooms": self.rooms,
            "data": self.data,
            "sent": self.sent,
            "pos": self.position,
            "token": self.token,
        }

    @classmethod
    def from_record(cls, record: Any, namespace: str, pid: str) -> SessionState | None:
        """The state a stored record describes, or ``None`` when it does not belong to ``pid``."""
        try:
            if record.get("v") != _VERSION or record["ns"] != namespace:
                return None
            stored = str(record["pid"])
            presented = pid_digest(pid) if stored.startswith(_DIGEST) else pid  # 0.1 stored it plain
            if not hmac.compare_digest(stored.encode(), presented.encode()):
                return None
            rooms = record.get("rooms") or {}
            if not isinstance(rooms, dict) or not all(isinstance(v, str) for v in rooms.values()):
                return None
            return cls(
                sid=str(record["sid"]),
                pid=pid,
                namespace=namespace,
                first_position=str(record["offset"]),
                rooms={str(k): v for k, v in rooms.items()},
                data=record.get("data"),
                sent=str(record.get("sent") or ""),
                position=str(record.get("pos") or ""),
                token=str(record.get("token", "")),
            )
        except (AttributeError, KeyError, TypeError):
            return None


def entitled(event: Event, state: SessionState) -> bool:
    """Whether a recovering socket had the right to ``event`` (see the module docstring)."""
    if state.sid in event.exclude or event.offset <= state.first_position:
        return False
    if not event.rooms:
        return True
    for room in event.rooms:
        if room == state.sid:
            return True
        since = state.rooms.get(room)
        if since is not None and event.offset > since:
            return True
    return False
