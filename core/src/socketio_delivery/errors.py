"""The exception tree of socketio-delivery.

Everything the library raises on purpose derives from :class:`DeliveryError`::

    DeliveryError
    ├── ConfigurationError        bad URL, unknown scheme, unknown/invalid option
    ├── InvalidArgumentError      a bad argument to a store method (also a ValueError)
    │   └── InvalidOffsetError    an offset that is not a well-formed offset of this store
    ├── OffsetUnavailableError    a well-formed offset the store no longer holds
    │                             (trimmed by retention, or from another epoch)
    ├── SessionBusyError          a session is leased by a recovery under way
    └── StoreError                the backend failed; the driver's exception is ``__cause__``
        └── StoreUnavailableError the backend cannot be reached at all
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "InvalidArgumentError",
    "InvalidOffsetError",
    "OffsetUnavailableError",
    "SessionBusyError",
    "StoreError",
    "StoreUnavailableError",
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


class SessionBusyError(DeliveryError):
    """The session is leased by a claim under way (``claim_session(key, lease=...)``).

    Another connection (in this process or another) is recovering it right now. Try
    again after a short pause: the record comes back when that claim saves it, or
    when its lease runs out.
    """


class StoreError(DeliveryError):
    """The backend failed. The driver's own exception is chained as ``__cause__``."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached (connection refused, timed out, closed)."""
