"""Argument checks of the stream methods, and the group-commit writer."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..errors import DeliveryError, InvalidArgumentError, StoreUnavailableError
from ..store import Event
from ..validate import check_key, check_limit, check_rooms, check_stream, check_ttl
from ._errors import DriverErrors
from ._json import decode_json, encode_json

__all__ = ["GroupCommitWriter", "Persist", "RoomFilter", "check_fetch", "prepare_persist", "prepare_session"]

log = logging.getLogger("socketio_delivery.kit")


@dataclass(slots=True)
class Persist:
    """One queued ``persist`` call: checked arguments, the payload and its JSON text.

    ``data`` is what the returned event holds (the payload as ``fetch_since`` returns
    it); ``future`` gets the :class:`~socketio_delivery.store.Event` once written.
    """

    stream: str
    data: Any
    text: str
    rooms: tuple[str, ...]
    exclude: tuple[str, ...]
    future: asyncio.Future[Any] = field(repr=False)


def _room_tuple(rooms: Collection[str], name: str) -> tuple[str, ...]:
    """``check_rooms``, with a fast path for tuples and lists of ``str``."""
    if rooms == ():
        return ()
    if (type(rooms) is tuple or type(rooms) is list) and all(type(room) is str for room in rooms):
        return tuple(rooms)
    return check_rooms(rooms, name)


def prepare_persist(stream: str, data: Any, rooms: Collection[str], exclude: Collection[str]) -> Persist:
    """Check ``persist``'s arguments and encode the payload; the future is made on the running loop.

    ::

        async def persist(self, stream, data, *, rooms=(), exclude=()):
            return await self._writer.submit(prepare_persist(stream, data, rooms, exclude))
    """
    check_stream(stream)
    event_rooms = _room_tuple(rooms, "rooms")
    event_exclude = _room_tuple(exclude, "exclude")
    text = encode_json(data, "event data")
    future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    return Persist(stream, decode_json(text, data), text, event_rooms, event_exclude, future)


#: The type of ``fetch_since``'s ``rooms``: the rooms wanted, or ``None`` for every event.
RoomFilter = Collection[str] | None


def check_fetch(stream: str, rooms: RoomFilter, limit: int) -> list[str] | None:
    """Check ``fetch_since``'s arguments but the offset; the wanted rooms, once each (``None``: all).

    ::

        wanted = check_fetch(stream, rooms, limit)
    """
    check_stream(stream)
    check_limit(limit)
    return None if rooms is None else list(dict.fromkeys(check_rooms(rooms)))


def prepare_session(
    key: str, record: Any, ttl: float, lease: float | None
) -> tuple[str, float, float | None]:
    """Check ``save_session``'s arguments: ``(record as JSON text, ttl, lease)`` in seconds.

    ::

        text, ttl, lease = prepare_session(key, record, ttl, lease)
    """
    check_key(key)
    seconds = check_ttl(ttl)
    lease_seconds = None if lease is None else check_ttl(lease, "lease")
    if not isinstance(record, Mapping):
        raise InvalidArgumentError("a session record must be a mapping")
    return encode_json(dict(record), "session record"), seconds, lease_seconds


class _HasFuture(Protocol):
    @property
    def future(self) -> asyncio.Future[Any]: ...


OpT = TypeVar("OpT", bound=_HasFuture)


class GroupCommitWriter(Generic[OpT]):
    """One task writing queued operations in batches: concurrent calls share round trips.

    ``write_batch(ops)`` writes up to ``max_batch`` queued ops at once and sets each
    op's ``future`` (a result, or an exception for that op). If it raises instead,
    every op of the batch not yet answered fails with ``driver.error(exc)`` and the
    writer goes on; if the task is cancelled, every waiting op fails with
    :class:`StoreUnavailableError`. Ops are any objects with a ``future``
    (:class:`Persist`, or your own)::

        self._writer = GroupCommitWriter(self._write_batch, max_batch=1000, driver=SQLITE)
        self._writer.start(f"{self!r} writer")      # in open()
        event = await self._writer.submit(op)       # in persist()
        await self._writer.stop()                   # in close(): writes what is queued first
    """

    def __init__(
        self,
        write_batch: Callable[[list[OpT]], Awaitable[None]],
        *,
        max_batch: int,
        driver: DriverErrors,
        doing: str = "write",
    ) -> None:
        self.write_batch = write_batch
        self.max_batch = max_batch
        self.driver = driver
        self.doing = doing
        self._queue: deque[OpT] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = True

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the task lives."""
        return not self._stopping and self._task is not None and not self._task.done()

    def start(self, name: str = "writer") -> None:
        """Start the task on the running loop (again after :meth:`stop`, maybe on another loop).

        Nothing happens while it runs already.
        """
        if self.running:
            return
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=name)

    def submit(self, op: OpT) -> asyncio.Future[Any]:
        """Queue ``op``; await the returned future (``op.future``) for its answer."""
        if not self.running or self._wakeup is None:
            raise StoreUnavailableError("the store is not open (await store.open() first)")
        self._queue.append(op)
        self._wakeup.set()
        return op.future

    async def stop(self) -> None:
        """Write what is queued, then end the task. Idempotent."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        queue = self._queue
        assert self._wakeup is not None
        while True:
            if not queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
            try:
                await self.write_batch(batch)
            except Exception as exc:  # a bug or an odd reply: fail this batch, keep writing
                if not isinstance(exc, DeliveryError) and not self.driver.handles(exc):
                    log.exception("%s: %s batch failed", self.driver.backend, self.doing)
                self._fail(batch, self.driver.error(exc, self.doing))
            except BaseException as exc:  # cancelled (loop shutdown): nobody waits forever
                error = StoreUnavailableError(f"{self.driver.backend} writer stopped")
                error.__cause__ = exc
                self._fail([*batch, *queue], error)
                queue.clear()
                raise

    @staticmethod
    def _fail(ops: Collection[OpT], error: BaseException) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error)
