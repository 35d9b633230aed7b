"""Persist throughput of the Redis store against raw redis-py (prints a table, asserts nothing).

    .venv/bin/python adapters/redis/bench/persist.py [--events 20000] [--emitters 256] [--url URL]

Without ``--url`` it starts its own ``redis-server`` (AOF, ``appendfsync everysec``) on a
free loopback port. Rows:

* raw XADD, pipelines of E: ``XADD *`` of E events per pipeline, one after the other
  (the ceiling for one connection);
* raw XADD, one by one: one awaited ``XADD`` per event (what no batching gives);
* store, E emitters: E tasks each awaiting ``persist`` in a loop (group commit);
* store, 1 emitter: one task awaiting ``persist`` in a loop (one round trip per event).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

import redis.asyncio as aioredis
from socketio_delivery_redis import RedisEventStore

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "support"))

PAYLOAD = {"event": "message", "args": [{"text": "hello", "n": 1}]}


async def _raw(url: str, events: int, batch: int) -> float:
    client = aioredis.from_url(url)
    key = f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    for first in range(0, events, batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(batch, events - first)):
            pipe.xadd(key, {"d": json.dumps(PAYLOAD)})
        await pipe.execute()
    elapsed = time.perf_counter() - start
    await client.delete(key)
    await client.aclose()
    return elapsed


async def _store(url: str, events: int, emitters: int) -> tuple[float, int]:
    store = RedisEventStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex[:8]}", retention_interval=None)
    await store.open()
    per = events // emitters

    async def emitter() -> None:
        for _ in range(per):
            await store.persist("/", PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(emitter() for _ in range(emitters)))
    elapsed = time.perf_counter() - start
    round_trips = store.round_trips
    await store.close()
    return elapsed, round_trips


async def main(url: str, events: int, emitters: int) -> None:
    rows: list[tuple[str, int, float, str]] = []
    elapsed = await _raw(url, events, emitters)
    rows.append(
        (f"raw XADD, pipelines of {emitters}", events, elapsed, f"{-(-events // emitters)} pipelines")
    )
    few = min(events, 2000)
    elapsed = await _raw(url, few, 1)
    rows.append(("raw XADD, one by one", few, elapsed, f"{few} round trips"))
    total = events // emitters * emitters
    elapsed, trips = await _store(url, total, emitters)
    rows.append((f"store, {emitters} emitters", total, elapsed, f"{trips} round trips"))
    elapsed, trips = await _store(url, few, 1)
    rows.append(("store, 1 emitter", few, elapsed, f"{trips} round trips"))
    print(f"{'case':<32} {'events':>7} {'seconds':>8} {'events/s':>10}  note")
    for name, n, seconds, note in rows:
        print(f"{name:<32} {n:>7} {seconds:>8.3f} {n / seconds:>10,.0f}  {note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--emitters", type=int, default=256)
    parser.add_argument("--url", help="a Redis to use (default: start one)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(main(args.url, args.events, args.emitters))
    else:
        from redis_server import RedisServer

        server = RedisServer(persistent=True)
        server.start()
        try:
            asyncio.run(main(server.url, args.events, args.emitters))
        finally:
            server.close()
