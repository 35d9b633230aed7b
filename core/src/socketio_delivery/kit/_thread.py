"""A blocking DB-API connection on a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import StoreUnavailableError

__all__ = ["ConnectionThread"]

T = TypeVar("T")

C = TypeVar("C")
_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class ConnectionThread(Generic[C]):
    """A blocking connection (``sqlite3``, any DB-API driver) used only by a thread of its own.

    Calls run one at a time, in order; a whole batch of statements is one trip to the
    thread. Driver exceptions come out as they are: wrap them with :func:`wrap_driver_errors`.
    Calls on a closed connection raise :class:`StoreUnavailableError`::

        db = ConnectionThread[sqlite3.Connection]()
        await db.open(lambda: sqlite3.connect("e.db", isolation_level=None, check_same_thread=False))
        with wrap_driver_errors(SQLITE, "persist"):
            seq = await db.transaction(lambda conn: conn.execute("INSERT ...").lastrowid)
        await db.close()
    """

    def __init__(self) -> None:
        #: How many calls went to the thread (a group commit is one).
        self.trips = 0
        self._conn: C | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self, connect: Callable[[], C], name: str = "store connection") -> None:
        """Start the thread and make the connection there with ``connect()``; nothing if open."""
        if self._conn is not None:
            return
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=self._work, args=(jobs,), name=name, daemon=True).start()
        try:
            conn = await self._call(jobs, connect)
        except BaseException:
            jobs.put(None)
            raise
        self._conn, self._jobs = conn, jobs

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in the thread."""
        conn = self._conn
        if conn is None:
            raise StoreUnavailableError("the store is not open (await store.open() first)")
        self.trips += 1
        return await self._call(self._jobs, fn, conn, *args)

    async def transaction(self, fn: Callable[..., T], *args: Any, begin: str = "BEGIN IMMEDIATE") -> T:
        """``fn(connection, *args)`` between ``begin`` and ``COMMIT`` (``ROLLBACK`` if it raises)."""
        return await self.run(_in_transaction, begin, fn, *args)

    async def close(self, last: Callable[[C], Any] | None = None) -> None:
        """Run ``last(connection)`` (errors ignored), close the connection, end the thread."""
        conn, jobs, self._conn = self._conn, self._jobs, None
        if conn is None:
            return
        try:
            await self._call(jobs, _finish, conn, last)
        finally:
            jobs.put(None)

    @staticmethod
    async def _call(jobs: queue.SimpleQueue[_Job | None], fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        jobs.put((future, fn, args))
        return await future

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody waits
                future.get_loop().call_soon_threadsafe(_answer, future, result, error)


def _in_transaction(conn: Any, begin: str, fn: Callable[..., T], *args: Any) -> T:
    conn.execute(begin)
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    return result


def _finish(conn: Any, last: Callable[[Any], Any] | None) -> None:
    if last is not None:
        with contextlib.suppress(Exception):  # best effort (PRAGMA optimize, ...)
            last(conn)
    conn.close()
