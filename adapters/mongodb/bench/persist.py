"""Persist throughput of the MongoDB store against raw PyMongo (prints a table, asserts nothing).

    .venv/bin/python adapters/mongodb/bench/persist.py [--url mongodb://127.0.0.1:27017]
        [--events 5000] [--emitters 128] [--stores 1,4]

Without ``--url`` a SecantusDB test server is started for the run (the numbers then say
more about that Python server than about MongoDB). Rows:

* raw, insert_many of E: batches of E documents, one after the other, into a collection
  with the store's indexes (the ceiling for E emitters on one connection);
* store, E emitters: E tasks each awaiting ``persist`` in a loop (group commit);
* N stores, E emitters: the same events written through N store objects on one stream
  (N independent writers racing for sequence numbers, as N processes would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid

from pymongo import AsyncMongoClient, IndexModel
from socketio_delivery_mongodb import MongoEventStore

PAYLOAD = {"event": "message", "args": [{"text": "hello", "n": 1}]}


async def _raw(url: str, events: int, batch: int) -> float:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    collection = client[f"bench_{uuid.uuid4().hex[:8]}"]["raw"]
    await collection.create_indexes(  # the store's indexes: the row measures the protocol only
        [
            IndexModel([("s", 1), ("q", 1)], unique=True),
            IndexModel([("s", 1), ("r", 1), ("q", 1)]),
            IndexModel([("exp", 1)], expireAfterSeconds=0),
        ]
    )
    start = time.perf_counter()
    for first in range(0, events, batch):
        docs = [
            {"s": "/", "q": first + i, "t": time.time(), "d": json.dumps(PAYLOAD)}
            for i in range(min(batch, events - first))
        ]
        await collection.insert_many(docs, ordered=True)
    elapsed = time.perf_counter() - start
    await client.drop_database(collection.database.name)
    await client.close()
    return elapsed


async def _stores(url: str, events: int, emitters: int, count: int) -> tuple[float, int, int]:
    database = f"bench_{uuid.uuid4().hex[:8]}"
    stores = [MongoEventStore.from_url(f"{url}/{database}") for _ in range(count)]
    for store in stores:
        await store.open()
    per = events // emitters

    async def emitter(store: MongoEventStore) -> None:
        for _ in range(per):
            await store.persist("/", PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(emitter(stores[n % count]) for n in range(emitters)))
    elapsed = time.perf_counter() - start
    batches = sum(s.batches for s in stores)
    conflicts = sum(s.conflicts for s in stores)
    await stores[0].database.client.drop_database(database)
    for store in stores:
        await store.close()
    return elapsed, batches, conflicts


async def main(url: str, events: int, emitters: int, counts: list[int]) -> None:
    rows = [(f"raw, insert_many of {emitters}", await _raw(url, events, emitters), events // emitters, 0)]
    for count in counts:
        elapsed, batches, conflicts = await _stores(url, events, emitters, count)
        label = f"store, {emitters} emitters" if count == 1 else f"{count} stores, {emitters} emitters"
        rows.append((label, elapsed, batches, conflicts))
    print(f"{events} events of {len(json.dumps(PAYLOAD))} bytes to {url}")
    print(f"{'':30} {'events/s':>10} {'inserts':>8} {'lost races':>10}")
    for label, elapsed, batches, conflicts in rows:
        print(f"{label:30} {events / elapsed:10.0f} {batches:8d} {conflicts:10d}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a MongoDB server (default: start a SecantusDB test server)")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--emitters", type=int, default=128)
    parser.add_argument("--stores", default="1,4", help="comma-separated store counts")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "support"))
        from mongo_server import MongoServer

        server = MongoServer()
        server.start()
        url = server.url
    try:
        asyncio.run(
            main(url.rstrip("/"), args.events, args.emitters, [int(n) for n in args.stores.split(",")])
        )
    finally:
        if server is not None:
            server.close()
