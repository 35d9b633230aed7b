"""The MongoDB store: durable, shared by every process and machine that opens the database.

::

    from socketio_delivery import open_store

    store = open_store("mongodb://localhost:27017/chat?max_age=3600")
    await store.open()
    event = await store.persist("/chat", {"text": "hi"}, rooms=["lobby"])
    page = await store.fetch_since("/chat", None, rooms=["lobby"])
    await store.close()

    # or with a client (PyMongo async or Motor) or a database object you already have
    store = MongoEventStore(AsyncMongoClient(...), database="chat")

Works on a standalone server: single-document atomic operations only (no
transactions, no change streams). Offsets are dense per-stream sequence numbers
claimed by the insert itself: a unique index on ``(stream, seq)`` lets exactly one
writer insert ``seq``, and a writer only tries ``seq`` once ``seq - 1`` is
committed, so a reader can never see ``seq`` before ``seq - 1`` (no late
arrivals, across any number of processes). See ``docs/adapters/mongodb.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from socketio_delivery import kit
from socketio_delivery.errors import (
    ConfigurationError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Capability, Event, KeyState, Reservation, new_id
from socketio_delivery.validate import check_key, check_stream, check_ttl

from ._codec import CODEC, DRIVER_ERRORS, EVENT_FIELDS, MONGO, epoch_changed, expiry, to_event, unavailable
from ._options import DEFAULT_DATABASE, MongoOptions, read_url

__all__ = ["MongoEventStore", "MongoOptions"]

log = logging.getLogger("socketio_delivery_mongodb")

#: How long past ``max_age`` (plus ``purge_delay``) the TTL index deletes an event that no
#: retention run has trimmed (a backstop: every open store trims every ``retention_interval``).
TTL_BACKSTOP = 3600.0
#: What fails a persist batch without stopping the writer (a closed store raises StoreError).
_WRITE_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, StoreError)
#: Tries of the stream document's upsert (a concurrent upsert may win the insert).
_UPSERT_ATTEMPTS = 5
#: Tries of a claim whose record changed between the claim and the read that explains a miss.
_CLAIM_ATTEMPTS = 5
#: Server error code of a hint naming no index (the collection was dropped with its indexes).
_BAD_HINT = 2
#: Bounds of every call when the URL sets none (PyMongo's: 30 s to select a server, 20 s
#: to connect, no socket timeout at all): past them a call raises StoreUnavailableError.
DEFAULT_TIMEOUTS_MS = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000, "socketTimeoutMS": 5000}


@dataclass(slots=True)
class _Next:
    """What this process knows about a stream's tail: the next sequence number to try."""

    seq: int
    epoch: str
    since: float  # time.monotonic() when ``seq - 1`` was known committed and above the floor


def _driver_types() -> tuple[Any, Any]:
    """The client and database classes accepted: PyMongo's asyncio API, and Motor's if installed."""
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    clients: list[type] = [AsyncMongoClient]
    databases: list[type] = [AsyncDatabase]
    try:
        from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
    except ImportError:
        pass
    else:
        clients.append(AsyncIOMotorClient)
        databases.append(AsyncIOMotorDatabase)
    return tuple(clients), tuple(databases)


class MongoEventStore:
    """An :class:`~socketio_delivery.EventStore` in a MongoDB database.

    ``client`` is a URL (``mongodb://...``: the store makes and closes its own
    ``pymongo.AsyncMongoClient``), a client the application already has
    (``pymongo.AsyncMongoClient`` or Motor's ``AsyncIOMotorClient``; the database
    is ``database``, else the client's default database, else
    ``socketio_delivery``) or a database object of either driver. A client or
    database passed in is never closed by the store. ``options`` or keyword
    options: see :class:`MongoOptions`.

    :attr:`batches` counts the ``insert_many`` round trips of ``persist`` and
    :attr:`writes` the events they held (``writes / batches``: the batching factor);
    :attr:`conflicts` counts the inserts that lost a sequence number to another
    writer (another store object or process) and were retried.
    """

    capabilities: frozenset[Capability] = frozenset({Capability.DURABLE, Capability.MULTI_PROCESS})

    def __init__(
        self,
        client: Any,
        *,
        database: str | None = None,
        options: MongoOptions | None = None,
        **option_values: Any,
    ) -> None:
        if options is not None and option_values:
            raise ConfigurationError("give either options=MongoOptions(...) or keyword options, not both")
        self._uri: str | None = None
        self._given: Any = None
        if isinstance(client, str):
            target = read_url(client, option_values)
            self._uri, database, options = target.uri, database or target.database, options or target.options
        elif client is None:
            raise ConfigurationError("MongoEventStore needs a URL, a client or a database object")
        else:
            clients, databases = _driver_types()
            if not isinstance(client, (*clients, *databases)):
                raise ConfigurationError(
                    "MongoEventStore takes a URL, or an asyncio client or database of PyMongo "
                    f"(AsyncMongoClient) or Motor (AsyncIOMotorClient), got {type(client).__name__}"
                )
            self._given = client
            if options is None:
                from socketio_delivery.config import build_options

                options = build_options(MongoOptions, None, option_values)
        self.options: MongoOptions = options
        self._database_name = database
        self.batches = 0
        self.writes = 0
        self.conflicts = 0
        self._client: Any = None
        self._db: Any = None
        self._open = False
        self._open_lock = asyncio.Lock()
        self._writer: kit.GroupCommitWriter[kit.Persist] = kit.GroupCommitWriter(
            self._write_batch, max_batch=options.max_batch, driver=MONGO, doing="persist"
        )
        self._retention = kit.MaintenanceLoop(self.trim, interval=options.retention_interval, logger=log)
        self._next: dict[str, _Next] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MongoEventStore:
        """``mongodb://[user:pass@]host[:port][,host2...]/database?options`` or ``mongodb+srv://...``.

        Query parameters that are :class:`MongoOptions` fields are the store's; the
        others are MongoDB connection options passed to the driver.
        """
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"<MongoEventStore {self._database_name or '?'!r}>"

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def database(self) -> Any:
        """The driver's database object (PyMongo async or Motor); ``None`` before ``open()``."""
        return self._db

    def _collection(self, name: str) -> Any:
        db = self._db
        if db is None:  # closed while the call was under way
            raise StoreUnavailableError(f"{self!r} is not open: await store.open() first")
        return db[self.options.prefix + name]

    async def open(self) -> None:
        async with self._open_lock:
            if self._open:
                return
            db, owned = self._resolve()
            try:
                with kit.wrap_driver_errors(MONGO, f"opening database {db.name!r}"):
                    await db.command("ping")
                    await self._create_indexes(db)
            except BaseException:
                if owned is not None:
                    with contextlib.suppress(Exception):
                        await owned.close()
                raise
            self._client, self._db = owned, db
            self._database_name = db.name
            self._open = True
            self._next.clear()
            self._writer.start(f"{self!r} writer")
            self._retention.start(f"{self!r} retention")

    def _resolve(self) -> tuple[Any, Any]:
        """``(database, client this store owns or None)``."""
        if self._uri is not None:
            from pymongo import AsyncMongoClient

            named = {key.lower() for key, _ in parse_qsl(self._uri.partition("?")[2])}
            kwargs: dict[str, Any] = {k: v for k, v in DEFAULT_TIMEOUTS_MS.items() if k.lower() not in named}
            if not named & {"journal", "w", "wtimeoutms"}:
                kwargs["journal"] = True  # acknowledged = journaled: survives a crash of the server
            client: Any = AsyncMongoClient(self._uri, **kwargs)
            return client[self._database_name or DEFAULT_DATABASE], client
        given: Any = self._given
        clients, databases = _driver_types()
        if isinstance(given, clients):
            name = self._database_name
            if name is None:
                with contextlib.suppress(Exception):
                    name = given.get_default_database().name
            return given[name or DEFAULT_DATABASE], None
        if isinstance(given, databases):
            if self._database_name not in (None, given.name):
                raise ConfigurationError(
                    f"database={self._database_name!r} given with a database object named {given.name!r}"
                )
            return given, None
        raise ConfigurationError(
            "MongoEventStore takes a URL, or an asyncio client or database of PyMongo "
            f"(AsyncMongoClient) or Motor (AsyncIOMotorClient), got {type(given).__name__}"
        )

    async def _create_indexes(self, db: Any) -> None:
        """Every index the store reads through; ``create_indexes`` is idempotent."""
        p = self.options.prefix
        ttl = IndexModel([("exp", ASCENDING)], name="expiry", expireAfterSeconds=0)
        await db[p + "events"].create_indexes(
            [
                IndexModel([("s", ASCENDING), ("q", ASCENDING)], name="by_seq", unique=True),
                IndexModel([("s", ASCENDING), ("r", ASCENDING), ("q", ASCENDING)], name="by_room"),
                ttl,
            ]
        )
        await db[p + "sessions"].create_indexes([ttl])
        await db[p + "keys"].create_indexes([ttl])

    async def close(self) -> None:
        async with self._open_lock:
            if not self._open:
                return
            self._open = False
            await self._retention.stop()
            await self._writer.stop()
            client, self._client, self._db = self._client, None, None
            if client is not None:
                with kit.wrap_driver_errors(MONGO, "close"):
                    await client.close()

    def _check_open(self) -> None:
        if not self._open:
            raise StoreUnavailableError(f"{self!r} is not open: await store.open() first")

    def generate_id(self) -> str:
        return new_id()

    # -- persist: group commit -----------------------------------------------------------
    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        op = kit.prepare_persist(stream, data, rooms, exclude)
        op.rooms = tuple(dict.fromkeys(op.rooms))
        self._check_open()
        return await self._writer.submit(op)  # type: ignore[no-any-return]

    async def _write_batch(self, batch: list[kit.Persist]) -> None:
        """The kit's writer calls this with up to ``max_batch`` queued persists."""
        by_stream: dict[str, list[kit.Persist]] = {}
        for op in batch:
            by_stream.setdefault(op.stream, []).append(op)
        await asyncio.gather(*(self._write_stream(s, ops) for s, ops in by_stream.items()))

    async def _write_stream(self, stream: str, ops: list[kit.Persist]) -> None:
        """Insert ``ops`` at the stream's next sequence numbers; answer each op."""
        pending = ops
        conflicts = 0
        while pending:
            try:
                state = await self._tail(stream)
                written, pending = await self._insert(stream, state, pending)
            except _WRITE_ERRORS as exc:
                self._next.pop(stream, None)
                error = MONGO.error(exc, "persist")
                for op in pending:
                    if not op.future.done():
                        op.future.set_exception(error)
                return
            if pending and not written:
                conflicts += 1  # another writer took the sequence number: back off a little
                if conflicts > 2:
                    await asyncio.sleep(random.uniform(0, 0.002 * min(conflicts, 20)))

    async def _tail(self, stream: str) -> _Next:
        """The next sequence number to try: known from our last write, else read.

        Read order matters: the highest sequence number in the events first, the
        stream's floor after (a trim raises the floor before it deletes anything).
        """
        known = self._next.get(stream)
        if known is not None and time.monotonic() - known.since < self.options.purge_delay / 4:
            return known
        top = await self._collection("events").find_one(
            {"s": stream}, {"_id": 0, "q": 1}, sort=[("q", DESCENDING)]
        )
        since = time.monotonic()
        doc = await self._stream_doc(stream)
        seq = max(int(top["q"]) if top else 0, int(doc["h"]), int(doc["f"])) + 1
        state = self._next[stream] = _Next(seq, str(doc["e"]), since)
        return state

    async def _stream_doc(self, stream: str) -> dict[str, Any]:
        """The stream's document, created (with a new epoch) if missing."""
        doc = await self._streams_upsert(stream, {})
        return doc

    async def _streams_upsert(
        self, stream: str, update: dict[str, Any], projection: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        """Apply ``update`` to the stream's document, creating it (with a new epoch) if missing.

        Creating it means the stream is new or the data was wiped (a dropped
        database loses its indexes too): the indexes are made again.
        """
        token = new_id()
        fresh = {"e": CODEC.new_epoch(), "h": 0, "f": 0, "df": 0, "pf": 0, "pt": 0.0, "c": token}
        taken = {key for op in update.values() for key in op}
        update = {**update, "$setOnInsert": {k: v for k, v in fresh.items() if k not in taken}}
        for attempt in range(_UPSERT_ATTEMPTS):
            try:
                doc: dict[str, Any] | None = await self._collection("streams").find_one_and_update(
                    {"_id": stream},
                    update,
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                    projection=projection,
                )
            except DuplicateKeyError:  # a concurrent upsert created it: update that one
                if attempt == _UPSERT_ATTEMPTS - 1:
                    raise
                continue
            if doc is None:  # seen on SecantusDB when upserts race; the update is idempotent
                continue
            if doc.get("c") == token:
                await self._create_indexes(self._db)
            return doc
        raise StoreError(f"{self!r}: the document of stream {stream!r} could not be read back")

    async def _insert(
        self, stream: str, state: _Next, ops: list[kit.Persist]
    ) -> tuple[int, list[kit.Persist]]:
        """One ``insert_many`` at ``state.seq``; returns (how many went in, ops still to write)."""
        first = state.seq
        now = time.time()
        ttl = (
            None
            if self.options.max_age is None
            else expiry(now + self.options.max_age + self.options.purge_delay + TTL_BACKSTOP)
        )
        docs: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            doc: dict[str, Any] = {"s": stream, "q": first + i, "t": now, "d": op.text}
            if op.rooms:
                doc["r"] = list(op.rooms)
            if op.exclude:
                doc["ex"] = list(op.exclude)
            if ttl is not None:
                doc["exp"] = ttl
            docs.append(doc)
        written = len(docs)
        failure: BaseException | None = None
        try:
            await self._collection("events").insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            written = int(exc.details.get("nInserted", 0))
            errors = exc.details.get("writeErrors") or [{}]
            if errors[0].get("code") != 11000:  # not a lost race: that event fails
                failure = exc
            else:
                self.conflicts += 1
        self.batches += 1
        self.writes += written
        self._next.pop(stream, None)
        rest = ops[written:]
        if failure is not None and rest:
            error = MONGO.error(failure, "persist")
            rest[0].future.set_exception(error)
            rest = rest[1:]
        if written:
            await self._publish(stream, state, ops[:written], docs[:written], now)
        return written, rest

    async def _publish(
        self, stream: str, state: _Next, ops: list[kit.Persist], docs: list[dict[str, Any]], now: float
    ) -> None:
        """Raise the stream's visible head over the inserted events, then answer their callers."""
        last = int(docs[-1]["q"])
        since = time.monotonic()
        doc = await self._streams_upsert(stream, {"$max": {"h": last}}, {"e": 1, "f": 1, "h": 1, "c": 1})
        epoch, floor = str(doc["e"]), int(doc["f"])
        first = int(docs[0]["q"])
        if floor >= first and since - state.since > self.options.purge_delay / 2:
            # Stalled past purge_delay: the numbers may have been trimmed and purged meanwhile.
            error = StoreUnavailableError(
                f"{self!r}: persist to {stream!r} stalled for more than purge_delay/2; not confirmed"
            )
            for op in ops:
                op.future.set_exception(error)
            return
        if floor < last:
            self._next[stream] = _Next(last + 1, epoch, since)
        max_events = self.options.max_events
        if max_events is not None and int(doc["h"]) - floor > max_events + max(100, max_events // 10):
            self._retention.due()
        for op, d in zip(ops, docs, strict=True):
            if not op.future.done():
                op.future.set_result(
                    Event(CODEC.format(epoch, int(d["q"])), op.data, op.rooms, op.exclude, now)
                )

    # -- reading ---------------------------------------------------------------------------
    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: kit.RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        wanted = kit.check_fetch(stream, rooms, limit)
        epoch, (after,) = (None, (0,)) if offset is None else CODEC.parse(offset)
        self._check_open()
        with kit.wrap_driver_errors(MONGO, "fetch_since"):
            try:
                return await self._fetch(stream, offset, epoch, after, wanted, limit)
            except OperationFailure as exc:
                if exc.code != _BAD_HINT:
                    raise
                await self._create_indexes(self._db)  # the collection was dropped: make them again
                return await self._fetch(stream, offset, epoch, after, wanted, limit)

    async def _fetch(
        self,
        stream: str,
        offset: str | None,
        epoch: str | None,
        after: int,
        wanted: list[str] | None,
        limit: int,
    ) -> list[Event]:
        started = time.monotonic()
        doc = await self._collection("streams").find_one({"_id": stream}, {"e": 1, "h": 1, "f": 1})
        if doc is None:
            if offset is not None:
                raise epoch_changed(offset, "this store holds no such stream (another database, or wiped)")
            return []
        head, floor = int(doc["h"]), int(doc["f"])
        if offset is not None:
            if epoch != doc["e"]:
                raise epoch_changed(offset, "it is from another epoch (the data was wiped, or another store)")
            CODEC.check(offset, (after,), first=(floor,), last=(head,))
        low = max(after, floor)
        if low >= head:
            return []
        # Everything up to ``head`` is committed: the page is a consistent snapshot.
        base: dict[str, Any] = {"s": stream, "q": {"$gt": low, "$lte": head}}
        events = self._collection("events")
        if wanted is None:
            docs = await self._page(events, base, limit, "by_seq")
        else:  # events for everyone, and for any wanted room: each a range of by_room
            queries = [self._page(events, {**base, "r": None}, limit, "by_room")]
            if wanted:
                queries.append(self._page(events, {**base, "r": {"$in": wanted}}, limit, "by_room"))
            pages = await asyncio.gather(*queries)
            merged = {int(d["q"]): d for page in pages for d in page}
            docs = [merged[q] for q in sorted(merged)[:limit]]
        if time.monotonic() - started > self.options.purge_delay / 2:
            # A stalled read may have raced a purge: trust only what is above the floor now.
            again = await self._collection("streams").find_one({"_id": stream}, {"f": 1})
            floor = int(again["f"]) if again else head
            if offset is not None and after < floor:
                raise unavailable(offset, "events after it were trimmed by retention")
            docs = [d for d in docs if int(d["q"]) > floor]
        return [to_event(str(doc["e"]), d) for d in docs]

    @staticmethod
    async def _page(events: Any, query: dict[str, Any], limit: int, index: str) -> list[dict[str, Any]]:
        """One page, oldest first, read along ``index`` (hinted: the plan never depends on statistics)."""
        cursor = events.find(query, EVENT_FIELDS).sort("q", ASCENDING).limit(limit).hint(index)
        return [d async for d in cursor]

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)
        self._check_open()
        with kit.wrap_driver_errors(MONGO, "last_offset"):
            doc = await self._collection("streams").find_one({"_id": stream}, {"e": 1, "h": 1})
            if doc is None:
                doc = await self._stream_doc(stream)  # fixes the epoch of the empty stream
        return CODEC.format(str(doc["e"]), int(doc["h"]))

    # -- retention --------------------------------------------------------------------------
    async def trim(self, stream: str | None = None) -> int:
        """Apply retention now; return how many events went.

        Trimmed events are invisible at once (the stream's floor moves past them)
        and deleted ``purge_delay`` seconds later, by a later run.
        """
        if stream is not None:
            check_stream(stream)
        self._check_open()
        with kit.wrap_driver_errors(MONGO, "trim"):
            if stream is not None:
                return await self._trim_stream(stream)
            total = 0
            async for doc in self._collection("streams").find({}, {"_id": 1}):
                total += await self._trim_stream(str(doc["_id"]))
            return total

    async def _trim_stream(self, stream: str) -> int:
        streams, events = self._collection("streams"), self._collection("events")
        total = 0
        while True:
            doc = await streams.find_one({"_id": stream})
            if doc is None:
                return total
            doc = await self._purge(stream, doc)
            head, floor = int(doc["h"]), int(doc["f"])
            chunk_end = min(head, floor + self.options.trim_chunk)
            upto = floor
            if self.options.max_events is not None:
                upto = max(upto, min(chunk_end, head - self.options.max_events))
            if self.options.max_age is not None and upto < chunk_end:
                kept = await events.find_one(
                    {
                        "s": stream,
                        "q": {"$gt": upto, "$lte": chunk_end},
                        "t": {"$gte": time.time() - self.options.max_age},
                    },
                    {"_id": 0, "q": 1},
                    sort=[("q", ASCENDING)],
                )
                upto = chunk_end if kept is None else max(upto, int(kept["q"]) - 1)
            if upto <= floor:
                return total
            gone = await events.count_documents({"s": stream, "q": {"$gt": floor, "$lte": upto}})
            moved = await streams.update_one({"_id": stream, "f": floor}, {"$set": {"f": upto}})
            if moved.modified_count:
                total += gone
                self._next.pop(stream, None)
                await self._purge(stream, {**doc, "f": upto})  # schedules the purge of these
            if upto >= head or upto < chunk_end:
                return total

    async def _purge(self, stream: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Delete events trimmed at least ``purge_delay`` ago; schedule the next purge.

        Returns ``doc`` as it now is (when another process changed it meanwhile,
        as it was: that process does the work).
        """
        floor, deleted, pending, since = int(doc["f"]), int(doc["df"]), int(doc["pf"]), float(doc["pt"])
        now = time.time()
        update: dict[str, Any] = {}
        if pending > deleted and now - since >= self.options.purge_delay:
            await self._collection("events").delete_many(
                {"s": stream, "q": {"$gt": deleted, "$lte": pending}}
            )
            update["df"] = deleted = pending
        if floor > pending and pending <= deleted:
            update["pf"], update["pt"] = floor, now
        if not update:
            return dict(doc)
        done = await self._collection("streams").update_one(
            {"_id": stream, "df": doc["df"], "pf": doc["pf"]}, {"$set": update}
        )
        return {**doc, **update} if done.modified_count else dict(doc)

    # -- sessions ----------------------------------------------------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        """Replace the document of ``key`` (one upserting ``replace_one``).

        Without ``lease`` it has no lease field ``l`` (claimable at once); with ``lease``
        ``l`` is now + lease, exactly what a leased claim sets::

            await store.save_session(pid, record, 120, lease=10)  # renewed while connected
        """
        text, seconds, lease_seconds = kit.prepare_session(key, record, ttl, lease)
        self._check_open()
        now = time.time()
        at = now + seconds
        doc: dict[str, Any] = {"v": text, "x": at, "exp": expiry(at)}
        if lease_seconds is not None:
            doc["l"] = now + lease_seconds
        with kit.wrap_driver_errors(MONGO, "save_session"):
            await self._retry_upsert(
                lambda: self._collection("sessions").replace_one({"_id": key}, doc, upsert=True)
            )

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        """Take the record: one ``find_one_and_delete`` (no ``lease``), or one
        ``find_one_and_update`` that sets the lease ``l`` (epoch seconds, as ``x``).

        Both match only a live record whose lease is absent (a document written before
        leases existed, or saved since) or run out. When nothing matched, one read tells
        "busy" (a lease still runs) from "absent" (no record, or an expired one).
        """
        check_key(key)
        seconds = None if lease is None else check_ttl(lease, "lease")
        self._check_open()
        sessions = self._collection("sessions")
        with kit.wrap_driver_errors(MONGO, "claim_session"):
            for _ in range(_CLAIM_ATTEMPTS):
                now = time.time()
                free = {
                    "_id": key,
                    "x": {"$gt": now},
                    "$or": [{"l": {"$exists": False}}, {"l": {"$lte": now}}],
                }
                if seconds is None:
                    doc = await sessions.find_one_and_delete(free, projection={"v": 1})
                else:
                    doc = await sessions.find_one_and_update(
                        free,
                        {"$set": {"l": now + seconds}},
                        projection={"v": 1},
                        return_document=ReturnDocument.BEFORE,
                    )
                if doc is not None:
                    record: dict[str, Any] = json.loads(doc["v"])
                    return record
                held = await sessions.find_one({"_id": key}, {"x": 1, "l": 1})
                now = time.time()
                if held is None:
                    return None
                if float(held["x"]) <= now:
                    await sessions.delete_one({"_id": key, "x": {"$lte": now}})
                    return None
                leased = float(held.get("l", 0.0))
                if leased > now:
                    raise SessionBusyError(
                        "the session is being recovered by another connection", retry_after=leased - now
                    )
                # saved anew, or its lease ran out, since the claim looked: claim again
        raise SessionBusyError("the session is being claimed by other connections")

    # -- idempotency keys ------------------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")
        self._check_open()
        keys = self._collection("keys")
        with kit.wrap_driver_errors(MONGO, "reserve_key"):
            for _ in range(5):
                now = time.time()
                at = now + seconds
                try:  # absent or run out: take it; present: the upsert's insert hits _id
                    await keys.update_one(
                        {"_id": key, "x": {"$lte": now}},
                        {"$set": {"done": False, "x": at, "exp": expiry(at), "res": None}},
                        upsert=True,
                    )
                    return Reservation(KeyState.ACQUIRED)
                except DuplicateKeyError:
                    pass
                doc = await keys.find_one({"_id": key})
                if doc is None or float(doc["x"]) <= time.time():
                    continue  # released or ran out meanwhile: try again
                if doc["done"]:
                    return Reservation(KeyState.DONE, json.loads(doc["res"]))
                return Reservation(KeyState.PENDING)
        return Reservation(KeyState.PENDING)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        text = kit.encode_json(result, "result")
        self._check_open()
        at = time.time() + seconds
        update = {"$set": {"done": True, "x": at, "exp": expiry(at), "res": text}}
        with kit.wrap_driver_errors(MONGO, "complete_key"):
            await self._retry_upsert(
                lambda: self._collection("keys").update_one({"_id": key}, update, upsert=True)
            )

    async def release_key(self, key: str) -> None:
        check_key(key)
        self._check_open()
        with kit.wrap_driver_errors(MONGO, "release_key"):
            await self._collection("keys").delete_one({"_id": key, "done": False})

    @staticmethod
    async def _retry_upsert(write: Any) -> None:
        """An upsert on ``_id`` may lose a race to a concurrent insert: once more updates it."""
        try:
            await write()
        except DuplicateKeyError:
            await write()
