"""Stopping background tasks for sure."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel_and_wait"]

log = logging.getLogger("socketio_delivery")


async def cancel_and_wait(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again when a cancel was lost.

    On Python 3.11 ``asyncio.wait_for`` can swallow a cancel that lands while its inner
    wait completes, so one ``cancel()`` does not always end a loop.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
        if not task.done() and loop.time() > deadline:
            log.warning("background task %s did not stop within %.0f s", task.get_name(), timeout)
            return
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
