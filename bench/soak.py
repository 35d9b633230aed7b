"""Soak: many events through a store with retention on; resident memory sampled as it goes.

    .venv/bin/python bench/soak.py [--events 200000] [--keep 10000] [--stores all]
    .venv/bin/python bench/soak.py --events 1000000                  # the full soak
    .venv/bin/python bench/soak.py --scale mongodb=0.1               # a slow store: 10x fewer

``--emitters`` tasks persist ``--events`` events in all into one stream (rooms cycling over
``--rooms``) while a reader tails the stream the way Delivery's tailer does
(``fetch_since`` from its last offset, page by page). Retention keeps the newest ``--keep``
events (``max_events``); besides the store's own background retention, ``trim()`` is
called at every sample, as a periodic job would. At every tenth of the events (and every
tenth of ``--seconds``, the time limit per store) the table gets a sample: the resident
memory of this process (it holds the memory store and every client driver) and of the
store's server process (redis-server, secantusd), and the events the reader has seen (a
reader that falls more than ``--keep`` events behind gets OffsetUnavailableError and
resyncs to the newest event, as Delivery's tailer does).
``--scale STORE=F``: that store gets F times ``--events`` and ``--keep`` (noted; a slow store
then still passes its retention many times over in its time limit).
Flat RSS columns mean bounded memory. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PAYLOAD,
    SCALE_HELP,
    Stores,
    close_store,
    rss_mb,
    run_main,
    scale_note,
    scaled,
    skipped_notes,
    store_list,
    store_scales,
    table,
)
from socketio_delivery import EventStore, OffsetUnavailableError, open_store

#: store-specific options that make background retention run often enough to matter in a short run
FAST_RETENTION = {"sqlite": {"retention_interval": 1.0}, "redis": {"retention_interval": 1.0}}


async def count_retained(store: EventStore, stream: str) -> int:
    total, offset = 0, None
    while True:
        page = await store.fetch_since(stream, offset, limit=5000)
        if not page:
            return total
        total += len(page)
        offset = page[-1].offset


async def soak(
    name: str,
    store: EventStore,
    server_pid: int | None,
    events: int,
    emitters: int,
    rooms: int,
    seconds: float,
) -> list[list[object]]:
    stream = "/soak"
    done = 0
    seen = 0
    resyncs = 0
    stop = asyncio.Event()
    position = await store.last_offset(stream)

    async def reader() -> None:
        nonlocal seen, position, resyncs
        while not stop.is_set():
            try:
                page = await store.fetch_since(stream, position, limit=500)
            except OffsetUnavailableError:  # fell behind retention: resync as Delivery's tailer does
                resyncs += 1
                position = await store.last_offset(stream)
                continue
            if page:
                seen += len(page)
                position = page[-1].offset
            else:
                await asyncio.sleep(0.01)

    next_tenth = 0.1
    deadline = time.perf_counter() + seconds

    async def emitter(k: int) -> None:
        nonlocal done, next_tenth
        i = k
        while i < events:
            await store.persist(stream, {**PAYLOAD, "i": i}, rooms=(f"room-{i % rooms}",))
            done += 1
            i += emitters
            now = time.perf_counter()
            progress = max(done / events, (now - start) / seconds)  # events or time, whichever leads
            if progress >= next_tenth:
                next_tenth = int(progress * 10 + 1e-9) / 10 + 0.1
                await store.trim(stream)
                sample()
            if now > deadline:
                return
            if i % 64 < emitters:
                await asyncio.sleep(0)  # the memory store never suspends: let the reader run

    from psutil import Process

    server = Process(server_pid) if server_pid else None
    rows: list[list[object]] = []
    start = time.perf_counter()

    def sample() -> None:
        rows.append(
            [
                name,
                done,
                seen,
                time.perf_counter() - start,
                rss_mb(),
                server.memory_info().rss / 2**20 if server else None,
            ]
        )

    gc.collect()
    sample()
    read_task = asyncio.create_task(reader())
    await asyncio.gather(*(emitter(k) for k in range(emitters)))
    stop.set()
    await read_task
    await store.trim(stream)
    if rows[-1][1] != done:
        sample()
    retained = await count_retained(store, stream)
    note = f"{retained:,} retained; tailer resynced {resyncs} times (fell behind retention)"
    if done < events:
        note += f"; time limit ({seconds:.0f} s) reached"
    rows[-1].append(note)
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per store (default 200000)")
    parser.add_argument("--keep", type=int, default=10_000, help="retention: max_events (default 10000)")
    parser.add_argument("--emitters", type=int, default=64, help="concurrent persist tasks (default 64)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per store (default 60)")
    parser.add_argument("--rooms", type=int, default=100, help="rooms the events cycle over (default 100)")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--scale", default="", help=SCALE_HELP + "; scales --events and --keep")
    args = parser.parse_args()
    scales = store_scales(args.scale)
    rows: list[list[object]] = []
    notes: list[str] = []
    async with Stores(store_list(args.stores)) as stores:
        for name, url in stores.urls():
            events, keep = args.events, args.keep
            if name in scales:
                events, keep = scaled(events, scales[name]), scaled(keep, scales[name])
                notes.append(scale_note(name, scales[name], f"{events:,} events, max_events={keep:,}"))
            options = {"max_events": keep, **FAST_RETENTION.get(name, {})}
            store = open_store(url, **options)
            await store.open()
            try:
                rows += await soak(
                    name,
                    store,
                    stores.server_pid(name),
                    events,
                    args.emitters,
                    args.rooms,
                    args.seconds,
                )
            except Exception as exc:
                rows.append([name, None, None, None, None, None, f"{type(exc).__name__}: {exc}"[:90]])
            finally:
                await close_store(store)
        for row in rows:
            row += [""] * (7 - len(row))
        table(
            f"Soak: {args.events:,} events per store, retention max_events={args.keep:,}",
            ["store", "persisted", "read by tailer", "seconds", "bench RSS MB", "server RSS MB", "note"],
            rows,
            notes=notes + skipped_notes(stores),
        )


if __name__ == "__main__":
    run_main(main)
