"""Memory of the memory store: resident bytes per event, and a one-room replay among them.

    .venv/bin/python bench/memory_store.py [--counts 100000,1000000] [--rooms 10000]

Each count runs in a new process (so RSS is that store's alone): ``memory://`` with no
retention is filled with N events of ``bench/_common.PAYLOAD`` (its ``n`` set to the event's
number), each addressed to one of R user rooms round-robin (every 100th to everyone). Columns:
RSS growth over N (bytes per event, from ``/proc/self/statm`` after a ``gc.collect()``), the
fill rate, and the time of one ``fetch_since(None, rooms=["u0"])`` page of 500 (the client of
room ``u0`` replaying from the start; it gets N / R of the events plus the broadcast ones).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PAYLOAD, table
from socketio_delivery import open_store


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _measure(count: int, rooms: int) -> dict[str, float]:
    store = open_store("memory://", max_events=None, max_age=None)
    await store.open()
    gc.collect()
    before = _rss()
    started = time.perf_counter()
    for i in range(count):
        data = copy.deepcopy(PAYLOAD)
        data["args"][0]["n"] = i
        to = () if i % 100 == 0 else (f"u{i % rooms}",)
        await store.persist("/bench", data, rooms=to)
    fill = time.perf_counter() - started
    gc.collect()
    grown = _rss() - before
    started = time.perf_counter()
    page = await store.fetch_since("/bench", None, rooms=["u0"])
    fetch = time.perf_counter() - started
    await store.close()
    return {"bytes": grown / count, "fill": count / fill, "fetch_ms": fetch * 1000, "got": len(page)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="100000,1000000")
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(asyncio.run(_measure(args.one, args.rooms))))
        return
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(count), "--rooms", str(args.rooms)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append((f"{count:,}", round(r["bytes"]), round(r["fill"]), round(r["fetch_ms"], 2), r["got"]))
    table(
        f"memory:// resident memory per event ({args.rooms:,} rooms)",
        ["events", "RSS bytes/event", "persist ev/s", "room fetch ms", "events in page"],
        rows,
    )


if __name__ == "__main__":
    main()
