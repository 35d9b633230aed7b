"""The options every store built on the kit has."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import StoreOptions
from ..errors import ConfigurationError

__all__ = ["AdapterOptions", "check_max_bytes"]


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be > 0 seconds or None, got {value!r}")


@dataclass(frozen=True)
class AdapterOptions(StoreOptions):
    """Options of a store built on the kit; subclass it with your own fields and defaults.

    ``max_batch``: most writes one group commit holds. ``retention_interval``: seconds
    between background retention runs (``None``: only on ``trim()``). ``trim_chunk``:
    most events one retention step removes. Plus ``max_age`` and ``max_events`` from
    :class:`~socketio_delivery.config.StoreOptions`.
    Fill it with :func:`~socketio_delivery.config.build_options`, which refuses an unknown
    option with a message naming the valid ones::

        @dataclass(frozen=True)
        class AcmeOptions(AdapterOptions):
            retention_interval: float | None = 10.0   # another default
            journal: str = "wal"                      # an option of your own

        build_options(AcmeOptions, parse_url("acme:///e.db?max_batch=50"), {"trim_chunk": 500})
    """

    max_batch: int = 1000
    retention_interval: float | None = 30.0
    trim_chunk: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("max_batch", self.max_batch, 1)
        _check_int("trim_chunk", self.trim_chunk, 1)
        _check_seconds("retention_interval", self.retention_interval)


def check_max_bytes(max_bytes: object) -> None:
    """Validate a ``max_bytes`` retention option (an int >= 1, or ``None``) for stores that honour it.

    ::

        def __post_init__(self) -> None:
            super().__post_init__()
            check_max_bytes(self.max_bytes)
    """
    if max_bytes is not None:
        _check_int("max_bytes", max_bytes, 1)
