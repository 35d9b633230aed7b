"""Background retention that never ends silently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import StoreError

__all__ = ["MaintenanceLoop"]

log = logging.getLogger("socketio_delivery.kit")


class MaintenanceLoop:
    """A background task calling ``run()`` every ``interval`` seconds, or sooner after :meth:`due`.

    Every exception ``run`` raises is logged (a :class:`StoreError` as a warning, any
    other with its traceback) and the loop goes on: retention never ends silently.
    ``interval=None`` starts nothing::

        self._retention = MaintenanceLoop(self.trim, interval=options.retention_interval, logger=log)
        self._retention.start(f"{self!r} retention")    # in open()
        self._retention.due()                            # a writer saw a stream over max_events
        await self._retention.stop()                     # in close()
    """

    def __init__(
        self,
        run: Callable[[], Awaitable[Any]],
        *,
        interval: float | None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.run = run
        self.interval = interval
        self.log = logger or log
        self._due: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = True

    def start(self, name: str = "retention") -> None:
        """Start the task on the running loop (nothing when ``interval`` is ``None``, or running)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._due = asyncio.Event()
        if self.interval is not None:
            self._task = asyncio.create_task(self._loop(self.interval), name=name)

    def due(self) -> None:
        """Run soon, without waiting for the interval."""
        if self._due is not None:
            self._due.set()

    async def stop(self) -> None:
        """Cancel the task and wait for it. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self, interval: float) -> None:
        assert self._due is not None
        while not self._stopping:  # a cancel swallowed inside a driver call must not keep it alive
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._due.wait(), interval)
            self._due.clear()
            if self._stopping:
                return
            await self.run_once()

    async def run_once(self) -> None:
        """Call ``run()`` once, logging (never raising) what it raises."""
        try:
            await self.run()
        except StoreError as exc:
            if not self._stopping:
                self.log.warning("retention failed: %s", exc)
        except Exception:
            self.log.exception("retention failed")
