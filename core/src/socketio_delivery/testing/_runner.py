"""Drive coroutines from plain (sync) test functions, so adapter projects need no pytest-asyncio.

::

    from socketio_delivery.testing import opened_store, run

    def test_my_store_round_trip() -> None:
        async def body() -> None:
            async with opened_store("memory://") as store:
                event = await store.persist("/chat", {"text": "hi"})
                assert (await store.fetch_since("/chat", None))[0].offset == event.offset

        run(body())
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from ..registry import open_store
from ..store import EventStore

__all__ = ["EventLoop", "opened_store", "run"]

T = TypeVar("T")


class EventLoop:
    """A private event loop that several ``run`` calls share, closed on exit.

    Use it when one opened store must serve many synchronous steps (hypothesis
    examples): connections of most drivers belong to the loop that made them.

    ::

        with EventLoop() as loop:
            store = open_store("memory://")
            loop.run(store.open())
            ...
            loop.run(store.close())
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coro`` to completion on this loop; ``timeout`` seconds at most."""
        if timeout is not None:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        loop = self._loop
        if loop.is_closed():
            return
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
    """Run ``coro`` on a fresh event loop and close the loop (``asyncio.run`` with a timeout)."""
    with EventLoop() as loop:
        return loop.run(coro, timeout=timeout)


@contextlib.asynccontextmanager
async def opened_store(url_or_store: str | EventStore, **options: Any) -> AsyncIterator[EventStore]:
    """``open_store(url, **options)``, opened for the ``async with`` block and closed after it."""
    store = open_store(url_or_store, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
