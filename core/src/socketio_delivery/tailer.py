"""Live delivery from the store's log: one tailer per namespace and process.

Every persisted emit is delivered by reading the namespace's stream in offset order,
never straight from the emit call. That is what keeps delivery order and offset order
the same for every client, whatever the number of concurrent emitters and nodes: an
offset a client reports on reconnect never skips an event it did not get.

The tailer is woken at once by emits of its own process, and polls the store every
``poll_interval`` seconds when other processes may write to it
(:attr:`~socketio_delivery.Capability.MULTI_PROCESS`).

Handover with replay: while a reconnecting socket is being replayed it is *held*: the
tailer skips it. The replay sends everything up to :attr:`Tailer.position`, then, under
:attr:`Tailer.lock` (no delivery in progress), releases the hold; later events reach it
live. Nothing is lost, sent twice or reordered at the seam. A socket whose client has
already seen events beyond this node's position (it came from a node that was ahead)
keeps a *floor*: the tailer skips it up to that offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ._tasks import cancel_and_wait
from .errors import OffsetUnavailableError, StoreError
from .store import Event, EventStore

__all__ = ["Tailer"]

log = logging.getLogger("socketio_delivery")

#: ``deliver(event, also_skip)``: send ``event`` to this process's clients, except the sids in ``also_skip``.
Deliver = Callable[[Event, list[str]], Awaitable[None]]


class Tailer:
    """Reads one stream from :attr:`position` on and hands each event to ``deliver``."""

    def __init__(
        self,
        store: EventStore,
        stream: str,
        deliver: Deliver,
        *,
        poll_interval: float | None,
        page_size: int,
    ) -> None:
        self.store = store
        self.stream = stream
        self.position = ""
        self.lock = asyncio.Lock()
        #: sid -> floor: skipped while replayed (floor ``None``) or for events up to the floor
        self.held: dict[str, str | None] = {}
        self._deliver = deliver
        self._poll = poll_interval
        self._page = page_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: (offset, future) of emits waiting until live delivery has passed their offset
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []

    async def start(self) -> None:
        self.position = await self.store.last_offset(self.stream)
        self._task = asyncio.create_task(self._run(), name=f"socketio-delivery tailer {self.stream}")

    def wake(self) -> None:
        self._wake.set()

    async def delivered(self, offset: str, timeout: float) -> bool:
        """Wait until this process has delivered ``offset`` to its clients; False on timeout.

        ``await sio.emit(...)`` returns after this, as python-socketio's own emit returns once
        the packets are queued: a room joined or left after it does not change who gets it.
        """
        if offset <= self.position:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((offset, waiter))
        done, _ = await asyncio.wait((waiter,), timeout=timeout)  # leaves the waiter to _release
        return bool(done)

    def _release(self, everyone: bool = False) -> None:
        position, waiting = self.position, []
        for offset, waiter in self._waiters:
            if everyone or offset <= position:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((offset, waiter))
        self._waiters = waiting

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._release(everyone=True)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopped:
            self._wake.clear()
            try:
                more = await self.drain()
                backoff = 0.05
            except OffsetUnavailableError:
                log.error(
                    "stream %r: events after %r were trimmed before this node delivered them; "
                    "continuing from the newest event (connected clients missed events)",
                    self.stream,
                    self.position,
                )
                await self._resync()
                continue
            except StoreError as exc:
                log.warning("stream %r: store error while tailing (%s); retrying", self.stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:
                log.exception("stream %r: delivery failed; retrying", self.stream)
                await asyncio.sleep(backoff)
                continue
            if more:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll)
            except asyncio.TimeoutError:
                pass

    async def _resync(self) -> None:
        try:
            position = await self.store.last_offset(self.stream)
        except StoreError:
            await asyncio.sleep(0.5)
            return
        async with self.lock:
            self.position = position
            self._release()

    async def drain(self) -> bool:
        """Deliver one page of new events; True when some came (more may wait)."""
        start = self.position
        events = await self.store.fetch_since(self.stream, start, limit=self._page)
        if not events:
            return False
        async with self.lock:
            if self.position != start:
                return True  # moved meanwhile (resync): read again
            for event in events:
                await self._deliver(event, self._skipped(event.offset) if self.held else [])
                self.position = event.offset
            if self._waiters:
                self._release()
        return True

    def _skipped(self, offset: str) -> list[str]:
        skipped = []
        for sid, floor in list(self.held.items()):
            if floor is None or offset <= floor:
                skipped.append(sid)
            else:
                del self.held[sid]
        return skipped
