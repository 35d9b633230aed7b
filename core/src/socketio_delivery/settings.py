"""The settings of a :class:`~socketio_delivery.Delivery`, checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass

from .dedup import DEFAULT_MAX_RESULT_BYTES
from .errors import ConfigurationError
from .store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .wire import DEFAULT_MAX_EVENT_BYTES

__all__ = ["Settings"]

_SECONDS = (
    "recovery_window",
    "session_lease",
    "poll_interval",
    "idempotency_ttl",
    "connect_timeout",
    "delivery_timeout",
)
_BYTES = ("max_event_bytes", "max_result_bytes")


@dataclass(frozen=True)
class Settings:
    """See :class:`~socketio_delivery.Delivery` for what each one means."""

    recovery_window: float = 120.0
    rerun_connect: bool = True
    session_lease: float = 15.0
    poll_interval: float = 0.05
    page_size: int = DEFAULT_PAGE_SIZE
    idempotency_key: str | None = "idempotencyKey"
    idempotency_ttl: float = 3600.0
    connect_timeout: float = 10.0
    delivery_timeout: float = 10.0
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES

    def __post_init__(self) -> None:
        for name in _SECONDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in (*_BYTES, "page_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        if self.page_size > MAX_PAGE_SIZE:
            raise ConfigurationError(
                f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, got {self.page_size!r}"
            )
        if self.idempotency_key is not None and not isinstance(self.idempotency_key, str):
            raise ConfigurationError(
                f"idempotency_key must be a string or None, got {self.idempotency_key!r}"
            )
