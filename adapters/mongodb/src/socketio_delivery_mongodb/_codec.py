"""Offsets, documents <-> events, and how driver errors are wrapped at the edge (the kit does it)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError
from socketio_delivery.errors import EpochChangedError, OffsetUnavailableError
from socketio_delivery.kit import DriverErrors, OffsetCodec
from socketio_delivery.store import Event

__all__ = ["CODEC", "DRIVER_ERRORS", "EVENT_FIELDS", "MONGO", "expiry", "to_event", "unavailable"]

#: ``<epoch>-<seq, 16 hex digits>``, the stream's epoch and its dense sequence number.
CODEC = OffsetCodec("MongoDB")

#: The projection of an event document that ``fetch_since`` reads.
EVENT_FIELDS: Mapping[str, int] = {"_id": 0, "q": 1, "t": 1, "d": 1, "r": 1, "ex": 1}


def unavailable(offset: str, why: str) -> OffsetUnavailableError:
    return OffsetUnavailableError(f"offset {offset!r}: {why}", offset=offset)


def epoch_changed(offset: str, why: str) -> EpochChangedError:
    """Its stream was wiped or replaced (another epoch)."""
    return EpochChangedError(f"offset {offset!r}: {why}", offset=offset)


def expiry(at: float) -> datetime.datetime:
    """A BSON date for a TTL index field."""
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc)


def to_event(epoch: str, doc: Mapping[str, Any]) -> Event:
    return Event(
        CODEC.format(epoch, int(doc["q"])),
        json.loads(doc["d"]),
        tuple(doc.get("r") or ()),
        tuple(doc.get("ex") or ()),
        float(doc["t"]),
    )


DRIVER_ERRORS: tuple[type[BaseException], ...] = (PyMongoError, OSError)
#: What the driver raises, as StoreError (StoreUnavailableError when the server cannot be reached).
MONGO = DriverErrors(
    "MongoDB", DRIVER_ERRORS, unavailable=(ConnectionFailure, ExecutionTimeout, WTimeoutError, OSError)
)
