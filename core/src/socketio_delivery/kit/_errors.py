"""Driver exceptions wrapped at the edge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import DeliveryError, StoreError, StoreUnavailableError

__all__ = ["DriverErrors", "wrap_driver_errors"]


@dataclass(frozen=True)
class DriverErrors:
    """How one driver's exceptions map to :class:`StoreError` / :class:`StoreUnavailableError`.

    ``errors``: the driver's exception types to wrap (others pass through: bugs stay
    visible). ``unavailable``: the types meaning "cannot reach the backend", or a
    function deciding it from the exception. A timeout (``asyncio.TimeoutError`` /
    ``TimeoutError``) is always "unavailable"; :class:`DeliveryError` passes unchanged::

        SQLITE = DriverErrors("SQLite", (sqlite3.Error,), unavailable=(sqlite3.OperationalError,))
        raise SQLITE.error(exc, "fetch_since")      # StoreError with exc as __cause__
    """

    backend: str
    errors: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = ()

    def handles(self, exc: BaseException) -> bool:
        """Whether :meth:`error` would wrap ``exc`` (a driver error or a timeout)."""
        return isinstance(exc, (*self.errors, TimeoutError, asyncio.TimeoutError))

    def error(self, exc: BaseException, doing: str) -> DeliveryError:
        """The error to raise for ``exc`` while ``doing``, with ``exc`` chained as its cause."""
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            down = True
        elif callable(self.unavailable) and not isinstance(self.unavailable, tuple):
            down = self.unavailable(exc)
        else:
            down = isinstance(exc, self.unavailable)
        cls = StoreUnavailableError if down else StoreError
        error = cls(f"{self.backend} {doing} failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


@contextlib.contextmanager
def wrap_driver_errors(driver: DriverErrors, doing: str) -> Iterator[None]:
    """Re-raise ``driver``'s exceptions inside the block as store errors (``raise ... from``).

    Works around sync and async code alike (it wraps what the block raises)::

        with wrap_driver_errors(SQLITE, "fetch_since"):
            rows = await conn.execute_fetchall(sql, params)
    """
    try:
        yield
    except DeliveryError:
        raise
    except BaseException as exc:
        if not driver.handles(exc):
            raise
        raise driver.error(exc, doing) from exc
