"""Persist throughput of the SQLite store against raw sqlite3 (prints a table, asserts nothing).

    .venv/bin/python adapters/sqlite/bench/persist.py [--events 20000] [--emitters 256]

Rows:
* raw, one transaction: every event in one ``executemany`` (the ceiling);
* raw, batches of E: transactions of E events, one after the other (what E emitters
  could get at best from one connection);
* store, E emitters: E tasks each awaiting ``persist`` in a loop (group commit);
* no database: E tasks encoding the payload and awaiting a future resolved in batches,
  the cost of the asyncio side alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from socketio_delivery_sqlite import SQLiteEventStore

PAYLOAD = {"event": "message", "args": [{"text": "hello", "n": 1}]}
RAW_SCHEMA = "CREATE TABLE e (id INTEGER PRIMARY KEY, stream TEXT, ts REAL, data TEXT)"


def _raw_batches(path: Path, events: int, batch: int) -> float:
    """In this thread: stdlib sqlite3 writing ``events`` rows in transactions of ``batch``."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(RAW_SCHEMA)
    start = time.perf_counter()
    for first in range(0, events, batch):
        rows = [("/", time.time(), json.dumps(PAYLOAD)) for _ in range(min(batch, events - first))]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO e (stream, ts, data) VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


async def _raw(path: Path, events: int, batch: int) -> float:
    return await asyncio.to_thread(_raw_batches, path, events, batch)


async def _store(path: Path, events: int, emitters: int) -> tuple[float, int]:
    """``emitters`` tasks, each awaiting ``persist`` ``events // emitters`` times (group commit)."""
    store = SQLiteEventStore.from_url(f"sqlite:///{path}")
    await store.open()
    tasks = [_persist_many(store, events // emitters) for _ in range(emitters)]
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - began
    commits = store.commits
    await store.close()
    return seconds, commits


async def _persist_many(store: SQLiteEventStore, count: int) -> None:
    for _ in range(count):
        await store.persist("/", PAYLOAD)


async def _floor(events: int, emitters: int) -> float:
    """No database: emitters await futures a loop task resolves in batches (the asyncio floor)."""
    queue: list[asyncio.Future[None]] = []
    wake = asyncio.Event()
    per = events // emitters

    async def writer() -> None:
        while True:
            await wake.wait()
            wake.clear()
            await asyncio.sleep(0)
            batch = queue[:]
            queue.clear()
            for future in batch:
                future.set_result(None)

    async def emitter() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(per):
            json.loads(json.dumps(PAYLOAD))
            future = loop.create_future()
            queue.append(future)
            wake.set()
            await future

    task = asyncio.create_task(writer())
    start = time.perf_counter()
    await asyncio.gather(*(emitter() for _ in range(emitters)))
    elapsed = time.perf_counter() - start
    task.cancel()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--emitters", type=int, default=256)
    args = parser.parse_args()
    n, e = args.events - args.events % args.emitters, args.emitters
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("raw sqlite3, one transaction", await _raw(Path(tmp, "a.db"), n, n), 1),
            (f"raw sqlite3, batches of {e}", await _raw(Path(tmp, "b.db"), n, e), -(-n // e)),
        ]
        elapsed, commits = await _store(Path(tmp, "c.db"), n, e)
        rows.append((f"SQLiteEventStore, {e} emitters", elapsed, commits))
        rows.append((f"no database, {e} emitters (floor)", await _floor(n, e), 0))
    print(f"{n} events")
    print(f"{'':36} {'events/s':>10} {'commits':>8}")
    for name, seconds, commits in rows:
        print(f"{name:36} {n / seconds:>10,.0f} {commits:>8}")


if __name__ == "__main__":
    asyncio.run(main())
