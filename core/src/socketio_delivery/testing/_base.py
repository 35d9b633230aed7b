"""The base of the conformance suite: per-class settings and the sync test decorators."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from ..store import Capability, EventStore
from ._runner import opened_store, run

__all__ = ["ConformanceBase", "UrlFactory", "store_test", "url_test"]

#: The fixture an adapter provides: each call returns the URL of a new, empty store.
UrlFactory = Callable[[], str]

B = TypeVar("B", bound="ConformanceBase")

_names = itertools.count()


class ConformanceBase:
    """Settings an adapter's test class may override (class attributes)."""

    #: Keyword options passed to ``open_store(url, **store_options)``.
    store_options: ClassVar[dict[str, Any]] = {}
    #: Modules worker processes import before opening the store (for ``register()``-ed stores).
    worker_imports: ClassVar[tuple[str, ...]] = ()
    #: Upper bound in seconds for one test (a hang fails instead of blocking the run).
    test_timeout: ClassVar[float] = 60.0
    #: Examples per property-based test.
    max_examples: ClassVar[int] = 30

    def options(self, **overrides: Any) -> dict[str, Any]:
        return {**self.store_options, **overrides}

    def opened(self, url: str, **overrides: Any) -> AbstractAsyncContextManager[EventStore]:
        """The store at ``url`` with ``store_options`` (and ``overrides``), opened for a block."""
        return opened_store(url, **self.options(**overrides))

    @staticmethod
    def require(store: EventStore, capability: Capability) -> None:
        """Skip the running test unless ``store`` declares ``capability``."""
        if capability not in store.capabilities:
            pytest.skip(f"{type(store).__name__} does not declare Capability.{capability.name}")

    def hypothesis_settings(self) -> settings:
        return settings(
            max_examples=self.max_examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )

    @staticmethod
    def unique(prefix: str = "s") -> str:
        """A name not used before in this process (streams, keys)."""
        return f"{prefix}-{next(_names)}"


def _sync(
    fn: Callable[..., Any], body: Callable[[Any, UrlFactory], Awaitable[None]]
) -> Callable[[Any, UrlFactory], None]:
    def test(self: ConformanceBase, make_store_url: UrlFactory) -> None:
        run(body(self, make_store_url), timeout=self.test_timeout)  # type: ignore[arg-type]

    test.__name__ = fn.__name__
    test.__qualname__ = fn.__qualname__
    test.__doc__ = fn.__doc__
    test.__module__ = fn.__module__
    test.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]
    return test


def store_test(fn: Callable[[B, EventStore], Awaitable[None]]) -> Callable[[B, UrlFactory], None]:
    """Turn ``async def test_x(self, store)`` into a sync test taking the ``make_store_url`` fixture.

    The store is a new one (``make_store_url()``), opened before and closed after.
    """

    async def body(self: B, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url()) as store:
            await fn(self, store)

    return _sync(fn, body)


def url_test(fn: Callable[[B, UrlFactory], Awaitable[None]]) -> Callable[[B, UrlFactory], None]:
    """Turn ``async def test_x(self, make_store_url)`` into a sync test (the test opens stores)."""
    return _sync(fn, fn)
