"""Live delivery from the store's log: one tailer per namespace and process.

Every persisted emit is delivered by reading the namespace's stream in offset order,
never straight from the emit call. That is what keeps delivery order and offset order
the same for every client, whatever the number of concurrent emitters and nodes: an
offset a client reports on reconnect never skips an event it did not get.

The tailer is woken at once by emits of its own process, and polls the store every
``poll_interval`` seconds when other processes may write to it
(:attr:`~socketio_delivery.Capability.MULTI_PROCESS`).

Handover with replay: while a reconnecting socket is being replayed it is *held*
(:meth:`Tailer.hold`): the tailer skips it. The replay sends everything up to
:attr:`Tailer.position`, then :meth:`Tailer.handover` releases the hold while no delivery is
in progress and sends the CONNECT reply; later events reach it live. Nothing is lost, sent
twice or reordered at the seam. A socket whose client has already seen events beyond this
node's position (it came from a node that was ahead) keeps a *floor*: the tailer skips it
up to that offset.

No event stalls the stream: an event that fails to deliver (it cannot be encoded, a send
raises) is logged once with its offset, counted in :attr:`Tailer.failures`, and skipped; an
emit waiting for it gets :class:`~socketio_delivery.UndeliveredError`. When the store no
longer holds the events after :attr:`Tailer.position` (data wiped: a new epoch; or
trimmed before this node read them) the tailer calls ``on_gap(reason)`` (the clients'
continuity broke: :class:`~socketio_delivery.Delivery` sends them ``delivery:resync``)
and goes on from the oldest event the store holds, so nothing persisted since is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ._tasks import cancel_and_wait
from .errors import EpochChangedError, OffsetUnavailableError, StoreError, UndeliveredError
from .store import Event, EventStore

__all__ = ["Tailer"]

log = logging.getLogger("socketio_delivery")

#: ``deliver(event, also_skip)``: send ``event`` to this process's clients, except the sids in ``also_skip``.
Deliver = Callable[[Event, list[str]], Awaitable[None]]
#: ``on_gap(reason)``: continuity broke for this stream's connected clients.
OnGap = Callable[[str], Awaitable[None]]

EPOCH_CHANGED = "epoch changed"
EVENTS_TRIMMED = "events trimmed before delivery"
#: delivery failures remembered for emits that wait for them
_FAILURES_KEPT = 256


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
        on_gap: OnGap | None = None,
    ) -> None:
        self.store = store
        self.stream = stream
        self.position = ""
        self.lock = asyncio.Lock()
        #: sid -> floor: skipped while replayed (floor ``None``) or for events up to the floor
        self.held: dict[str, str | None] = {}
        #: events that failed to deliver (each logged once)
        self.failures = 0
        self._failed: dict[str, str] = {}
        self._from_oldest = False
        self._on_gap = on_gap
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

    # -- handover with replay -----------------------------------------------------------
    def hold(self, sid: str) -> None:
        """Skip ``sid`` in live delivery until :meth:`handover` (or :meth:`release`)."""
        self.held[sid] = None

    def release(self, sid: str) -> None:
        self.held.pop(sid, None)

    async def handover(
        self, sid: str, target: str, cursor: str, connect: Callable[[], Awaitable[None]]
    ) -> bool:
        """End the replay of ``sid`` that reached ``target`` (its client has seen ``cursor``).

        When live delivery is still at ``target``, runs ``connect`` (the CONNECT reply) while
        no delivery is in progress, releases the hold (or keeps a floor at ``cursor`` when the
        client is ahead of this node) and returns True. Returns False when live delivery moved
        on meanwhile: replay up to the new :attr:`position` first.
        """
        async with self.lock:
            if self.position != target:
                return False
            if cursor > target:
                self.held[sid] = cursor
            else:
                self.held.pop(sid, None)
            await connect()
            return True

    # -- emits waiting for live delivery ---------------------------------------------------
    async def delivered(self, offset: str, timeout: float) -> bool:
        """Wait until this process has delivered ``offset`` to its clients; False on timeout.

        ``await sio.emit(...)`` returns after this, as python-socketio's own emit returns once
        the packets are queued: a room joined or left after it does not change who gets it.
        Raises :class:`~socketio_delivery.UndeliveredError` when delivery failed for it.
        """
        if offset <= self.position:
            self._raise_if_failed(offset)
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((offset, waiter))
        done, _ = await asyncio.wait((waiter,), timeout=timeout)  # leaves the waiter to _release
        if done:
            waiter.result()
        return bool(done)

    def _raise_if_failed(self, offset: str) -> None:
        reason = self._failed.get(offset)
        if reason is not None:
            raise UndeliveredError(f"event {offset} was persisted but not delivered: {reason}", offset=offset)

    def _release(self) -> None:
        position, waiting = self.position, []
        for offset, waiter in self._waiters:
            if offset <= position:
                if not waiter.done():
                    try:
                        self._raise_if_failed(offset)
                        waiter.set_result(None)
                    except UndeliveredError as exc:
                        waiter.set_exception(exc)
            else:
                waiting.append((offset, waiter))
        self._waiters = waiting

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for offset, waiter in self._waiters:  # stopped before they were delivered: say so
            if not waiter.done():
                waiter.set_exception(
                    UndeliveredError(
                        f"event {offset} is persisted; delivery stopped before it was sent", offset=offset
                    )
                )
        self._waiters = []

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopped:
            self._wake.clear()
            try:
                more = await self.drain()
                backoff = 0.05
            except OffsetUnavailableError as exc:
                await self._gap(EPOCH_CHANGED if isinstance(exc, EpochChangedError) else EVENTS_TRIMMED)
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

    async def _gap(self, reason: str) -> None:
        """The store no longer holds what follows :attr:`position`: tell, then read from the oldest."""
        log.error(
            "stream %r: the store no longer holds the events after %r (%s); connected clients "
            "are told to resync and delivery goes on from the oldest event the store holds",
            self.stream,
            self.position,
            reason,
        )
        async with self.lock:
            self._from_oldest = True
            if self._on_gap is not None:
                try:
                    await self._on_gap(reason)
                except Exception:
                    log.exception("stream %r: telling clients about the gap failed", self.stream)

    async def drain(self) -> bool:
        """Deliver one page of new events; True when some came (more may wait)."""
        start, from_oldest = self.position, self._from_oldest
        events = await self.store.fetch_since(self.stream, None if from_oldest else start, limit=self._page)
        if not events and from_oldest:
            position = await self.store.last_offset(self.stream)
        async with self.lock:
            if self.position != start or self._from_oldest != from_oldest:
                return True  # moved meanwhile: read again
            if not events:
                if from_oldest:
                    self.position, self._from_oldest = position, False
                    self._release()
                return False
            for event in events:
                await self._deliver_one(event)
                self.position = event.offset
            self._from_oldest = False
            if self._waiters:
                self._release()
        return True

    async def _deliver_one(self, event: Event) -> None:
        try:
            await self._deliver(event, self._skipped(event.offset) if self.held else [])
        except Exception as exc:
            self.failures += 1
            reason = f"{type(exc).__name__}: {exc}"[:200]
            log.error(
                "stream %r: event %s could not be delivered, skipped (%s)", self.stream, event.offset, reason
            )
            self._failed[event.offset] = reason
            if len(self._failed) > _FAILURES_KEPT:
                del self._failed[next(iter(self._failed))]

    def _skipped(self, offset: str) -> list[str]:
        skipped = []
        for sid, floor in list(self.held.items()):
            if floor is None or offset <= floor:
                skipped.append(sid)
            else:
                del self.held[sid]
        return skipped
