"""Delivery guarantees for python-socketio servers, on pluggable event stores."""

from .emitter import Emitter
from .errors import (
    ConfigurationError,
    DeliveryError,
    DeliveryTimeoutError,
    EpochChangedError,
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
    UndeliveredError,
)
from .registry import available_schemes, open_store, register
from .server import RESYNC_EVENT, Delivery
from .store import Capability, Event, EventStore, KeyState, Reservation

__all__ = [
    "RESYNC_EVENT",
    "Capability",
    "Delivery",
    "ConfigurationError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "EpochChangedError",
    "Emitter",
    "Event",
    "EventStore",
    "InvalidArgumentError",
    "InvalidOffsetError",
    "KeyState",
    "OffsetUnavailableError",
    "Reservation",
    "SessionBusyError",
    "StoreError",
    "StoreUnavailableError",
    "UndeliveredError",
    "available_schemes",
    "open_store",
    "register",
]
