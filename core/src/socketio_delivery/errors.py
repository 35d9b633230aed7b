"""The exception tree of socketio-delivery.

Everything the library raises on purpose derives from :class:`DeliveryError`::

    DeliveryError
    ├── ConfigurationError        bad URL, unknown scheme, unknown/invalid option
    ├── InvalidArgumentError      a bad argument to a store method (also a ValueError)
    │   └── InvalidOffsetError    an offset that is not a well-formed offset of this store
    ├── OffsetUnavailableError    a well-formed offset the store no longer holds
    │   │                         (trimmed by retention, or from another epoch)
    │   └── EpochChangedError     ... because it is from another epoch of the stream
    ├── SessionBusyError          a session is leased by a recovery under way
    ├── UndeliveredError          an emit was persisted but this process did not deliver it
    │   └── DeliveryTimeoutError  ... within the time it waits
    └── StoreError                the backend failed; the driver's exception is ``__cause__``
        └── StoreUnavailableError the backend cannot be reached at all
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "EpochChangedError",
    "InvalidArgumentError",
    "InvalidOffsetError",
    "OffsetUnavailableError",
    "SessionBusyError",
    "StoreError",
    "StoreUnavailableError",
    "UndeliveredError",
]


class DeliveryError(Exception):
    """Base class of every error socketio-delivery raises on purpose."""


class ConfigurationError(DeliveryError, ValueError):
    """The configuration is wrong: unknown store URL scheme, bad option, missing package."""


class InvalidArgumentError(DeliveryError, ValueError):
    """A store method was called with an argument outside its contract."""


class InvalidOffsetError(InvalidArgumentError):
    """The offset is not a well-formed offset of this store (wrong type, size or shape)."""


class OffsetUnavailableError(DeliveryError):
    """The offset is well formed but the store cannot resume after it.

    Either events after it were trimmed by retention, or it comes from another
    epoch of the stream (the data was wiped, or it is from another deployment).
    Replaying from there would silently skip events, so the caller must treat
    continuity as broken and resynchronise instead.
    """

    def __init__(self, message: str, *, offset: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class EpochChangedError(OffsetUnavailableError):
    """The offset is from another epoch of the stream: its data was wiped or replaced.

    Stores that can tell this case apart from trimming raise it (the kit's offset codec
    does); callers treat it as any :class:`OffsetUnavailableError`, with a better reason.
    """


class SessionBusyError(DeliveryError):
    """The session is leased by a claim under way (``claim_session(key, lease=...)``).

    Another connection (in this process or another) is recovering it right now. Try
    again after a short pause: the record comes back when that claim saves it, or
    when its lease runs out. ``retry_after`` is the lease's remaining seconds when the
    store knows it (``None`` otherwise).
    """

    def __init__(self, message: str = "session busy", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UndeliveredError(DeliveryError):
    """An emit was persisted (it is durable and will be replayed) but not delivered live.

    ``offset`` is the persisted event's offset. Raised by ``await sio.emit(...)`` when this
    process's live delivery failed for the event (it is logged with the cause).
    """

    def __init__(self, message: str, *, offset: str) -> None:
        super().__init__(message)
        self.offset = offset


class DeliveryTimeoutError(UndeliveredError):
    """An emit was persisted, but this process had not delivered it when the emit stopped waiting."""


class StoreError(DeliveryError):
    """The backend failed. The driver's own exception is chained as ``__cause__``."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached (connection refused, timed out, closed)."""
