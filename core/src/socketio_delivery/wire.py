"""The wire codec: how an emit is stored as an event, and how an event goes back on the wire.

Shared by the server (:mod:`.server`), :class:`~socketio_delivery.Emitter` and the Python
client (:mod:`.client`), so the record format, the reserved event names and
:data:`RESYNC_EVENT` are written down once.

An emit is stored as one event of the namespace's stream (the stream is the namespace),
addressed to its rooms and excluding its skipped sids, with the record
``{"e": event, "a": [args], "x": 1 (explicit recipe), "b": [binary paths]}``. It is
delivered (live and in replays) as the packet data ``[event, *args, offset]``.
"""

from __future__ import annotations

import json
from typing import Any

from socketio.packet import EVENT

from .binary import join_binary, split_binary
from .errors import InvalidArgumentError
from .store import Event, EventStore

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "RESERVED_EVENTS",
    "RESYNC_EVENT",
    "Target",
    "check_sendable",
    "with_offset",
    "emit_args",
    "packet_of",
    "persist_emit",
]

Target = str | list[str] | tuple[str, ...] | None

#: Sent to a client right after the CONNECT reply when it asked to recover and could not (or
#: when continuity broke while it was connected): ``["delivery:resync", {"reason": ...}]``.
#: Register a handler to resync.
RESYNC_EVENT = "delivery:resync"
#: Event names that are never persisted (Socket.IO's own, and ours).
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", RESYNC_EVENT})


async def persist_emit(
    store: EventStore,
    namespace: str,
    event: str,
    args: list[Any],
    *,
    to: Target = None,
    skip_sid: Target = None,
    explicit: bool = False,
) -> Event:
    """Persist one emit (``args`` as python-socketio sends them) and return the stored event."""
    rooms = () if to is None else (to,) if isinstance(to, str) else tuple(to)
    exclude = () if skip_sid is None else (skip_sid,) if isinstance(skip_sid, str) else tuple(skip_sid)
    record: dict[str, Any] = {"e": event, "a": args}
    if explicit:
        record["x"] = 1
    try:
        return await store.persist(namespace, record, rooms=rooms, exclude=exclude)
    except InvalidArgumentError:
        stored, paths = split_binary(args)  # only now: the common case pays nothing for it
        if not paths:
            raise
        record["a"], record["b"] = stored, paths
        return await store.persist(namespace, record, rooms=rooms, exclude=exclude)


def emit_args(data: Any) -> list[Any]:
    """The argument list of ``emit(event, data)``, as python-socketio reads ``data``: a tuple
    is several arguments, ``None`` none, anything else one."""
    return list(data) if isinstance(data, tuple) else [] if data is None else [data]


def packet_of(event: Event) -> list[Any]:
    """``[name, *args, offset]``: the packet data an event is delivered (and replayed) as."""
    data = event.data
    args = data["a"] if "b" not in data else join_binary(data["a"], data["b"])
    if data.get("x"):
        args = [{"id": event.offset, "data": args[0] if args else None}]
    return [data["e"], *args, event.offset]


#: the largest event, as encoded on the wire, ``sio.emit`` accepts by default
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


def check_sendable(
    packet_class: Any, namespace: str, event: str, args: list[Any], max_bytes: int
) -> str | None:
    """Refuse an emit that could not be sent, before it is persisted.

    Encodes ``[event, *args]`` with the server's own packet class (what delivery will do)
    and raises :class:`~socketio_delivery.InvalidArgumentError` naming the cause when that
    fails (too deeply nested, not serializable) or the encoded packet is over ``max_bytes``.
    Returns the encoded packet when it is one text frame (no binary attachments), for
    :func:`with_offset`; ``None`` otherwise.
    """
    if not isinstance(event, str) or not event or event in RESERVED_EVENTS:
        raise InvalidArgumentError(f"event must be a non-empty string and not reserved, got {event!r}")
    try:
        encoded = packet_class(EVENT, namespace=namespace, data=[event, *args]).encode()
    except RecursionError:
        raise InvalidArgumentError(f"event {event!r} cannot be sent: its data is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"event {event!r} cannot be sent: {exc}") from exc
    size = sum(map(len, encoded)) if isinstance(encoded, list) else len(encoded)
    if size > max_bytes:
        raise InvalidArgumentError(
            f"event {event!r} is {size} bytes encoded, over the limit of {max_bytes} (max_event_bytes)"
        )
    return encoded if isinstance(encoded, str) and encoded.endswith("]") else None


def with_offset(encoded: str, offset: str) -> str:
    """An encoded ``[event, *args]`` packet turned into ``[event, *args, offset]``, as sent."""
    return f"{encoded[:-1]},{json.dumps(offset)}]"
