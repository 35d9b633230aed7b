"""Persist throughput per store, next to the raw driver doing the same writes its best way.

    .venv/bin/python bench/persist.py [--events 5000] [--emitters 1,16,256] [--stores all]
                                      [--scale mongodb=0.2]

For each store and each number E of concurrent emitters, E asyncio tasks each await
``store.persist(...)`` in a loop (so concurrent persists can share round trips: group
commit); a cell stops early after ``--seconds`` (noted). In the same run the raw driver
writes the same number of events in one go:

* memory: a JSON round trip per event and one ``list.extend`` (what the memory store copies);
* sqlite: stdlib sqlite3 (in a thread), one transaction with ``executemany`` of the rows the
  store writes (event row with its two indexes, room index row; WAL, synchronous=NORMAL, as the store);
* redis: redis-py, one non-transactional pipeline of ``XADD``;
* mongodb: pymongo's async client, one ordered ``insert_many`` (unique index on stream + seq).

Every number is the best of ``--repeat`` runs (raw and store runs interleaved, so a burst of
load on the machine hits both). The ratio column is store / raw. ``--scale STORE=F`` gives a
slow store F times the events and the time limit (noted). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PAYLOAD,
    SCALE_HELP,
    Stores,
    close_store,
    run_main,
    scale_note,
    scaled,
    skipped_notes,
    store_list,
    store_scales,
    table,
)
from socketio_delivery import EventStore, open_store

ROOMS = ("room-1",)


def _row(i: int) -> tuple[str, float, str, str]:
    return ("/", time.time(), json.dumps({**PAYLOAD, "i": i}), json.dumps(ROOMS))


# -- the raw drivers: every event written in one batch ---------------------------------------


async def raw_memory(url: str, events: int) -> float:
    log: list[Any] = []
    start = time.perf_counter()
    log.extend(json.loads(json.dumps({**PAYLOAD, "i": i})) for i in range(events))
    return time.perf_counter() - start


RAW_SQLITE_SCHEMA = """
CREATE TABLE e (id INTEGER PRIMARY KEY, sid INTEGER, seq INTEGER, ts REAL, data TEXT, rooms TEXT);
CREATE UNIQUE INDEX e_by_seq ON e (sid, seq);
CREATE INDEX e_for_everyone ON e (sid, seq) WHERE rooms IS NULL;
CREATE TABLE r (sid INTEGER, room TEXT, seq INTEGER, PRIMARY KEY (sid, room, seq)) WITHOUT ROWID;
"""


async def raw_sqlite(url: str, events: int) -> float:
    """The rows the SQLite store writes (event + room index row), one transaction, stdlib sqlite3."""
    import sqlite3

    path = url.removeprefix("sqlite:///")
    rows = [(1, i, ts, data, rooms) for i, (_, ts, data, rooms) in enumerate(map(_row, range(events)))]
    room_rows = [(1, room, i) for i in range(events) for room in ROOMS]

    def write() -> float:
        conn = sqlite3.connect(path + ".raw", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(RAW_SQLITE_SCHEMA)
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO e (sid, seq, ts, data, rooms) VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO r (sid, room, seq) VALUES (?, ?, ?)", room_rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    return await asyncio.to_thread(write)


async def raw_redis(url: str, events: int) -> float:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url.split("?", 1)[0])
    key = f"raw-{time.monotonic_ns()}"
    await client.ping()
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(events):
        _, ts, data, rooms = _row(i)
        pipe.xadd(key, {"d": data, "r": rooms, "t": ts})
    await pipe.execute()
    elapsed = time.perf_counter() - start
    await client.delete(key)
    await client.aclose()
    return elapsed


async def raw_mongodb(url: str, events: int) -> float:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    coll = client.get_default_database()[f"raw_{time.monotonic_ns()}"]
    await coll.create_index([("s", 1), ("n", 1)], unique=True)  # as the store's (stream, seq)
    await coll.insert_one({"warm": True, "s": "warm", "n": 0})
    start = time.perf_counter()
    docs = []
    for i in range(events):
        stream, ts, _data, _rooms = _row(i)
        docs.append({"s": stream, "t": ts, "d": {**PAYLOAD, "i": i}, "r": list(ROOMS), "n": i})
    await coll.insert_many(docs, ordered=True)
    elapsed = time.perf_counter() - start
    await coll.drop()
    await client.close()
    return elapsed


RAW = {"memory": raw_memory, "sqlite": raw_sqlite, "redis": raw_redis, "mongodb": raw_mongodb}
RAW_NAME = {
    "memory": "list.extend",
    "sqlite": "executemany, 1 txn",
    "redis": "XADD pipeline",
    "mongodb": "insert_many",
}


# -- the store -------------------------------------------------------------------------------


async def store_persist(
    store: EventStore, events: int, emitters: int, stream: str = "/", seconds: float = 1e9
) -> tuple[int, float]:
    """``emitters`` tasks persist ``events`` events (split evenly) into ``stream``.

    They stop early once ``seconds`` have passed. Returns (events persisted, seconds).
    """
    per = max(1, events // emitters)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def emitter(k: int) -> None:
        nonlocal done
        for i in range(per):
            await store.persist(stream, {**PAYLOAD, "i": k * per + i}, rooms=ROOMS)
            done += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(emitter(k) for k in range(emitters)))
    return done, time.perf_counter() - start


async def measure(url: str, events: int, emitters: int, seconds: float) -> tuple[float, str]:
    """(events/s, note) of a new store at ``url`` (opened, warmed up, measured, closed)."""
    store = open_store(url, max_events=None)
    await store.open()
    try:
        for _ in range(20):
            await store.persist("/warm", PAYLOAD)
        done, elapsed = await store_persist(store, events, emitters, seconds=seconds)
        note = "" if done >= max(1, events // emitters) * emitters else f"time limit: {done} events"
        return done / elapsed, note
    finally:
        await close_store(store)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000, help="events per measurement (default 5000)")
    parser.add_argument("--emitters", default="1,16,256", help="concurrent emitters (default 1,16,256)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per cell (default 5)")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--scale", default="", help=SCALE_HELP)
    args = parser.parse_args()
    counts = [int(x) for x in args.emitters.split(",")]
    scales = store_scales(args.scale)
    rows: list[list[object]] = []
    notes: list[str] = []
    async with Stores(store_list(args.stores)) as stores:
        for name, _ in stores.urls():
            events, seconds = args.events, args.seconds
            if name in scales:  # smaller cells, and a time limit to match
                events, seconds = scaled(events, scales[name]), seconds * scales[name]
                sizes = f"{events:,} events per cell, time limit {seconds:g} s"
                notes.append(scale_note(name, scales[name], sizes))
            raw_rate = 0.0
            cells: dict[int, tuple[float, str]] = {}
            for _ in range(args.repeat):  # best of N, raw and store interleaved
                raw_rate = max(raw_rate, events / await RAW[name](stores.fresh(name), events))
                for emitters in counts:
                    cell = await measure(stores.fresh(name), events, emitters, seconds)
                    cells[emitters] = max(cells.get(emitters, cell), cell)
            for emitters in counts:
                rate, note = cells[emitters]
                ratio = f"{100 * rate / raw_rate:.0f} %"
                rows.append([name, emitters, rate, RAW_NAME[name], raw_rate, ratio, note])
        for name, _why in stores.skipped.items():
            rows.append([name, "-", None, RAW_NAME[name], None, "skipped", ""])
        table(
            f"Persist throughput, {args.events} events per cell, best of {args.repeat}",
            ["store", "emitters", "store ev/s", "raw driver", "raw ev/s", "store/raw", "note"],
            rows,
            notes=notes + skipped_notes(stores),
        )


if __name__ == "__main__":
    run_main(main)
