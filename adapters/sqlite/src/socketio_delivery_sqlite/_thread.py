"""One ``sqlite3`` connection used by one thread of its own, called from asyncio.

The standard library's ``sqlite3`` and a one-worker executor: a call hands a
function to the thread and awaits its answer, so a whole group-commit batch
(``BEGIN``, every write, ``COMMIT``) is one trip to the thread. Calls run one at a
time, in the order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SQLiteThread"]

T = TypeVar("T")


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
        self._executor: ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self, database: str, setup: Callable[[sqlite3.Connection], T]) -> T:
        """Connect to ``database`` in a new thread and run ``setup(db)`` there; closed again on error."""
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite {database}")

        def connect() -> tuple[sqlite3.Connection, T]:
            db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            try:
                return db, setup(db)
            except BaseException:
                db.close()
                raise

        try:
            db, result = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._db, self._executor = db, executor
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` in the connection's thread."""
        db, executor = self._db, self._executor
        if db is None or executor is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        self.trips += 1
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db, *args)

    async def close(self, last: Callable[[sqlite3.Connection], Any] | None = None) -> None:
        """Run ``last(db)`` (errors ignored), close the connection and end the thread."""
        db, executor = self._db, self._executor
        self._db = self._executor = None
        if db is None or executor is None:
            return

        def finish() -> None:
            if last is not None:
                with contextlib.suppress(Exception):
                    last(db)
            db.close()

        try:
            await asyncio.get_running_loop().run_in_executor(executor, finish)
        finally:
            executor.shutdown(wait=False)
