"""Offsets, payload encoding, documents <-> events, and driver errors wrapped at the edge."""

from __future__ import annotations

import datetime
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError
from socketio_delivery.errors import (
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.store import Event
from socketio_delivery.validate import check_offset

__all__ = [
    "EVENT_FIELDS",
    "dumps",
    "expiry",
    "make_offset",
    "new_epoch",
    "read_offset",
    "store_error",
    "to_event",
]

_OFFSET = re.compile(r"([0-9a-f]{8})-([0-9a-f]{16})")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

#: The projection of an event document that ``fetch_since`` reads.
EVENT_FIELDS: Mapping[str, int] = {"_id": 0, "q": 1, "t": 1, "d": 1, "r": 1, "ex": 1}


def new_epoch() -> str:
    return secrets.token_hex(4)


def make_offset(epoch: str, seq: int) -> str:
    """``epoch-seq``: 8 + 1 + 16 hex characters, so offsets of one epoch compare as strings."""
    return f"{epoch}-{seq:016x}"


def read_offset(offset: object) -> tuple[str, int]:
    """``(epoch, seq)`` of a well-formed offset; :class:`InvalidOffsetError` otherwise."""
    text = check_offset(offset)
    match = _OFFSET.fullmatch(text)
    if match is None:
        raise InvalidOffsetError(f"{text[:40]!r} is not an offset of the MongoDB store")
    return match.group(1), int(match.group(2), 16)


def unavailable(offset: str, why: str) -> OffsetUnavailableError:
    return OffsetUnavailableError(f"offset {offset!r}: {why}", offset=offset)


def dumps(value: Any, what: str) -> str:
    """JSON text of ``value``: payloads are stored as text, so any JSON round-trips exactly
    (keys such as ``$gt`` or ``a.b``, integers beyond 64 bits)."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


def expiry(at: float) -> datetime.datetime:
    """A BSON date for a TTL index field."""
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc)


def to_event(epoch: str, doc: Mapping[str, Any]) -> Event:
    return Event(
        make_offset(epoch, int(doc["q"])),
        json.loads(doc["d"]),
        tuple(doc.get("r") or ()),
        tuple(doc.get("ex") or ()),
        float(doc["t"]),
    )


def store_error(exc: BaseException, doing: str) -> StoreError:
    """The :class:`StoreError` (:class:`StoreUnavailableError` when the server cannot be
    reached) for a driver error, with the driver's exception as ``__cause__``."""
    if isinstance(exc, StoreError):
        return exc
    cls = (
        StoreUnavailableError
        if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WTimeoutError, OSError))
        else StoreError
    )
    error = cls(f"MongoDB {doing} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


DRIVER_ERRORS: tuple[type[BaseException], ...] = (PyMongoError, OSError)
