"""One ``sqlite3`` connection used by one thread of its own, called from asyncio.

The standard library's ``sqlite3`` and a thread reading a queue: a call hands a
function to the thread and awaits its answer, so a whole group-commit batch
(``BEGIN``, every write, ``COMMIT``) is one trip to the thread. Calls run one at a
time, in the order they were made. (A ``ThreadPoolExecutor`` does the same with more
bookkeeping per call: a one-emitter persist loop ran about 20 % slower on it.)
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["SQLiteThread"]

T = TypeVar("T")

_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class SQLiteThread:
    """A connection and the thread that alone uses it.

    ::

        thread = SQLiteThread()
        meta = await thread.open("events.db", lambda db: db.execute("SELECT 1").fetchall())
        rows = await thread.run(lambda db: db.execute("SELECT ...").fetchall())
        await thread.close()
    """

    def __init__(self) -> None:
        self.trips = 0
        self._db: sqlite3.Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self, database: str, setup: Callable[[sqlite3.Connection], T]) -> T:
        """Connect to ``database`` in a new thread and run ``setup(db)`` there; closed again on error."""
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._work, args=(jobs,), name=f"sqlite {database}", daemon=True)
        thread.start()

        def connect(_: None) -> tuple[sqlite3.Connection, T]:
            db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            try:
                return db, setup(db)
            except BaseException:
                db.close()
                raise

        try:
            db, result = await self._call(jobs, connect, None)
        except BaseException:
            jobs.put(None)
            raise
        self._db, self._jobs, self._thread = db, jobs, thread
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` in the connection's thread."""
        db = self._db
        if db is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        self.trips += 1
        return await self._call(self._jobs, fn, db, *args)

    async def close(self, last: Callable[[sqlite3.Connection], Any] | None = None) -> None:
        """Run ``last(db)`` (errors ignored), close the connection and end the thread."""
        db, jobs, self._db = self._db, self._jobs, None
        if db is None:
            return

        def finish(db: sqlite3.Connection) -> None:
            try:
                if last is not None:
                    last(db)
            except Exception:  # best effort (PRAGMA optimize)
                pass
            db.close()

        try:
            await self._call(jobs, finish, db)
        finally:
            jobs.put(None)

    @staticmethod
    async def _call(jobs: queue.SimpleQueue[_Job | None], fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        jobs.put((future, fn, args))
        return await future

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:
                error = exc
            try:
                future.get_loop().call_soon_threadsafe(_answer, future, result, error)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits
                pass
