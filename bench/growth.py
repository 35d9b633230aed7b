"""Cost growth: persist and replay time against stream length, number of rooms, missed events.

    .venv/bin/python bench/growth.py [--lengths 0,10000,100000] [--rooms 1,10,100,1000]
                                     [--missed 1000,10000] [--stores all]

Measured on the store API (what Delivery calls), per store, each cell on a new store:

* stream length L: the stream already holds L events; then 2,000 events are persisted by 16
  concurrent emitters (persist ev/s) and read back from the offset before them, page by page
  as a replay does (replay ev/s);
* rooms R: 10,000 events spread round-robin over R rooms; a client in one room replays from
  the start of the stream (``fetch_since(..., rooms=[that room])``): it gets 10,000 / R events
  but the store has to skip the others. Columns: seconds, and microseconds per event returned;
* missed N: N events persisted after the client's offset, replayed page by page (500 a page,
  the store's default): seconds and ev/s.

A fill or a replay that takes more than ``--fill-seconds`` stops early: the tables show
the counts reached. ``--scale STORE=F``: that store gets F times the lengths, ``--room-events``
and the missed counts (noted). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
from socketio_delivery.store import DEFAULT_PAGE_SIZE

STREAM = "/growth"


#: a fill (or a replay) that takes longer stops early; the table shows the count it reached
FILL_SECONDS = 60.0


async def fill(
    store: EventStore, n: int, room_of: Callable[[int], tuple[str, ...]], emitters: int = 256
) -> int:
    """Persist ``n`` events (fewer if it takes over :data:`FILL_SECONDS`); return how many."""
    done = 0
    deadline = time.perf_counter() + FILL_SECONDS

    async def emitter(k: int) -> None:
        nonlocal done
        for i in range(k, n, emitters):
            await store.persist(STREAM, {**PAYLOAD, "i": i}, rooms=room_of(i))
            done += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(emitter(k) for k in range(min(emitters, max(n, 1)))))
    return done


async def replay(store: EventStore, offset: str, rooms: list[str] | None = None) -> tuple[int, float]:
    """Read everything after ``offset`` page by page: (events, seconds)."""
    count = 0
    start = time.perf_counter()
    while True:
        page = await store.fetch_since(STREAM, offset, rooms=rooms, limit=DEFAULT_PAGE_SIZE)
        if not page or time.perf_counter() - start > FILL_SECONDS:  # a slow store: what it read so far
            return count + len(page), time.perf_counter() - start
        count += len(page)
        offset = page[-1].offset


async def fresh(stores: Stores, name: str) -> EventStore:
    store = open_store(stores.fresh(name), max_events=None)
    await store.open()
    return store


def everyone(i: int) -> tuple[str, ...]:
    return ()


async def by_length(stores: Stores, name: str, length: int) -> list[object]:
    store = await fresh(stores, name)
    try:
        length = await fill(store, length, everyone)
        offset = await store.last_offset(STREAM)
        start = time.perf_counter()
        added = await fill(store, 2000, everyone, emitters=16)
        persist_rate = added / (time.perf_counter() - start)
        count, seconds = await replay(store, offset)
        return [name, length, persist_rate, count / seconds]
    finally:
        await close_store(store)


async def by_rooms(stores: Stores, name: str, rooms: int, events: int) -> list[object]:
    store = await fresh(stores, name)
    try:
        offset = await store.last_offset(STREAM)
        events = await fill(store, events, lambda i: (f"room-{i % rooms}",))
        count, seconds = await replay(store, offset, rooms=["room-0"])
        return [name, rooms, events, count, seconds, 1e6 * seconds / max(count, 1)]
    finally:
        await close_store(store)


async def by_missed(stores: Stores, name: str, missed: int) -> list[object]:
    store = await fresh(stores, name)
    try:
        await fill(store, 100, everyone)
        offset = await store.last_offset(STREAM)
        missed = await fill(store, missed, everyone)
        count, seconds = await replay(store, offset)
        return [name, missed, count, seconds, count / seconds]
    finally:
        await close_store(store)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", default="0,10000,100000", help="stream lengths (default 0,10000,100000)")
    parser.add_argument("--rooms", default="1,10,100,1000", help="room counts (default 1,10,100,1000)")
    parser.add_argument("--room-events", type=int, default=10_000, help="stream length for --rooms (10000)")
    parser.add_argument("--missed", default="1000,10000", help="missed events (default 1000,10000)")
    parser.add_argument(
        "--fill-seconds", type=float, default=60.0, help="time limit of one fill or replay (60)"
    )
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument(
        "--scale", default="", help=SCALE_HELP + "; scales --lengths, --room-events and --missed"
    )
    args = parser.parse_args()
    global FILL_SECONDS
    FILL_SECONDS = args.fill_seconds
    scales = store_scales(args.scale)
    length_rows: list[list[object]] = []
    room_rows: list[list[object]] = []
    missed_rows: list[list[object]] = []
    notes: list[str] = []
    async with Stores(store_list(args.stores)) as stores:
        for name in stores.working:
            factor = scales.get(name, 1.0)
            lengths = [scaled(n, factor) for n in ints(args.lengths)]
            room_events = scaled(args.room_events, factor)
            missed_counts = [scaled(n, factor) for n in ints(args.missed)]
            if name in scales:
                sizes = (
                    f"lengths {', '.join(f'{n:,}' for n in lengths)}; {room_events:,} events over the "
                    f"rooms; {', '.join(f'{n:,}' for n in missed_counts)} missed"
                )
                notes.append(scale_note(name, factor, sizes))
            for length in lengths:
                length_rows.append(await by_length(stores, name, length))
            for rooms in ints(args.rooms):
                room_rows.append(await by_rooms(stores, name, rooms, room_events))
            for missed in missed_counts:
                missed_rows.append(await by_missed(stores, name, missed))
        notes += skipped_notes(stores)
    table(
        "Growth with stream length (2,000 events persisted by 16 emitters, then replayed)",
        ["store", "events already in stream", "persist ev/s", "replay ev/s"],
        length_rows,
        notes,
    )
    table(
        f"Growth with rooms ({args.room_events:,} events round-robin over the rooms; replay of one room)",
        ["store", "rooms", "stream events", "replayed", "replay s", "us per replayed event"],
        room_rows,
        notes,
    )
    table(
        "Growth with missed events (replayed page by page)",
        ["store", "missed", "replayed", "replay s", "replay ev/s"],
        missed_rows,
        notes,
    )


if __name__ == "__main__":
    run_main(main)
