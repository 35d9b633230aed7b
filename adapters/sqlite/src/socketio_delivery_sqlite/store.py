"""The SQLite store: durable, shared by the processes of one machine, writes group-committed.

::

    from socketio_delivery import open_store

    store = open_store("sqlite:///events.db?busy_timeout=10")
    await store.open()
    event = await store.persist("/chat", {"text": "hi"}, rooms=["lobby"])
    page = await store.fetch_since("/chat", None, rooms=["lobby"])
    await store.close()

One standard-library ``sqlite3`` connection per store object, used by a thread of its
own (:mod:`._thread`). Every write (``persist``, sessions, idempotency keys, retention)
is queued and the kit's group-commit writer runs what is queued in one
``BEGIN IMMEDIATE ... COMMIT`` transaction, in one trip to that thread; each caller is
answered after the commit. Offsets are taken from the stream's counter inside that
transaction, which holds SQLite's write lock, so commit order is offset order across
every process sharing the file: no late arrivals.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from socketio_delivery.config import build_options, parse_url
from socketio_delivery.errors import (
    ConfigurationError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.kit import (
    AdapterOptions,
    ConnectionThread,
    DriverErrors,
    GroupCommitWriter,
    MaintenanceLoop,
    Persist,
    RoomFilter,
    check_fetch,
    check_max_bytes,
    encode_json,
    prepare_persist,
    prepare_session,
    wrap_driver_errors,
)
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Capability, Event, Reservation, new_id
from socketio_delivery.validate import check_key, check_stream, check_ttl

from . import _ops, _sql

__all__ = ["SQLiteEventStore", "SQLiteOptions"]

log = logging.getLogger("socketio_delivery_sqlite")

MEMORY = ":memory:"
_SYNCHRONOUS = ("off", "normal", "full", "extra")
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "closed")


def _unavailable(exc: BaseException) -> bool:
    """Locked, busy, unopenable, I/O error or a closed connection: the backend is out of reach."""
    return isinstance(exc, (sqlite3.OperationalError, sqlite3.ProgrammingError)) and any(
        word in str(exc).lower() for word in _UNAVAILABLE
    )


SQLITE = DriverErrors("SQLite", (sqlite3.Error,), unavailable=_unavailable)


@dataclass(frozen=True)
class SQLiteOptions(AdapterOptions):
    """Options of ``sqlite://`` URLs (query string or keyword options).

    ``busy_timeout``: seconds a call waits for another process's write lock before it
    fails with :class:`~socketio_delivery.errors.StoreUnavailableError` (the bound on
    every call). ``synchronous``: SQLite's ``PRAGMA synchronous`` (``normal``: a commit
    survives a crash of the process, the last commits may be lost on power loss;
    ``full``: fsync on every commit). ``max_batch``, ``retention_interval`` and
    ``trim_chunk``: see :class:`~socketio_delivery.kit.AdapterOptions`; the background
    run also deletes expired sessions and keys. ``max_bytes``: most bytes of event payload
    (UTF-8 JSON text) kept per stream, the oldest events dropped first and the newest always
    kept (``None``: no limit).
    """

    busy_timeout: float = 5.0
    synchronous: str = "normal"
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_max_bytes(self.max_bytes)
        if not self.busy_timeout >= 0:
            raise ConfigurationError(f"busy_timeout must be >= 0 seconds, got {self.busy_timeout!r}")
        if not isinstance(self.synchronous, str) or self.synchronous.lower() not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {self.synchronous!r}"
            )


@dataclass(slots=True)
class _Call:
    """Any other write: ``run(db, now)`` runs in the connection's thread inside the batch."""

    run: Callable[[Any, float], Any]
    future: asyncio.Future[Any] = field(repr=False)


class SQLiteEventStore:
    """An :class:`~socketio_delivery.EventStore` in one SQLite file (or ``:memory:``).

    ``database`` is a file path (created with its tables if missing) or ``":memory:"``.
    :attr:`commits` counts the write transactions this object committed and
    :attr:`writes` the writes they held, so ``writes / commits`` is the batching factor.
    """

    capabilities: frozenset[Capability]

    def __init__(self, database: str, options: SQLiteOptions | None = None) -> None:
        if not isinstance(database, str) or not database:
            raise ConfigurationError(f"database must be a file path or ':memory:', got {database!r}")
        self.database = database
        self.options = options or SQLiteOptions()
        self.in_memory = database == MEMORY
        self.capabilities = (
            frozenset() if self.in_memory else frozenset({Capability.DURABLE, Capability.MULTI_PROCESS})
        )
        self.epoch = ""
        self.commits = 0
        self.writes = 0
        self._thread: ConnectionThread[sqlite3.Connection] = ConnectionThread()
        self._open_lock = asyncio.Lock()
        self._writer: GroupCommitWriter[Persist | _Call] = GroupCommitWriter(
            self._write_batch, max_batch=self.options.max_batch, driver=SQLITE, doing="write transaction"
        )
        self._retention = MaintenanceLoop(
            self._maintain, interval=self.options.retention_interval, logger=log
        )
        self._sids: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteEventStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite://:memory:``."""
        parsed = parse_url(url)
        if parsed.scheme != "sqlite":
            raise ConfigurationError(f"SQLiteEventStore opens sqlite:// URLs, got {parsed}")
        if parsed.host or parsed.port or parsed.username:
            raise ConfigurationError(
                f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////absolute.db, got {parsed}"
            )
        if not parsed.path:
            raise ConfigurationError(
                f"a SQLite URL needs a file: sqlite:///events.db or sqlite://:memory:, got {parsed}"
            )
        return cls(parsed.path, build_options(SQLiteOptions, parsed, options))

    def __repr__(self) -> str:
        return f"<SQLiteEventStore {self.database!r}>"

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        async with self._open_lock:
            if self._thread.is_open:
                return
            opts = self.options
            setup = functools.partial(
                _sql.prepare,
                busy_timeout=opts.busy_timeout,
                synchronous=opts.synchronous,
                wal=not self.in_memory,
            )
            try:
                await self._thread.open(self._connect, name=f"{self!r} connection")
                meta = await self._thread.run(setup)
            except (sqlite3.Error, OSError) as exc:
                await self._thread.close()
                error = SQLITE.error(exc, f"opening {self.database!r}")
                if isinstance(exc, sqlite3.OperationalError) and type(error) is StoreError:
                    error = StoreUnavailableError(str(error))  # cannot open it at all
                raise error from exc
            if meta.get("schema") != _sql.SCHEMA_VERSION:
                await self._thread.close()
                raise StoreError(
                    f"{self.database!r} has socketio-delivery schema {meta.get('schema')!r}, "
                    f"this version reads {_sql.SCHEMA_VERSION!r}"
                )
            self.epoch = meta["epoch"]
            self._sids.clear()
            self._writer.start(f"{self!r} writer")
            self._retention.start(f"{self!r} retention")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)

    async def close(self) -> None:
        async with self._open_lock:
            if not self._thread.is_open:
                return
            await self._retention.stop()
            await self._writer.stop()
            with wrap_driver_errors(SQLITE, "close"):
                await self._thread.close(lambda db: db.execute("PRAGMA optimize"))

    def generate_id(self) -> str:
        return new_id()

    # -- the writer ------------------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(db, now, *args)`` in the next group commit; its answer after the commit."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        return await self._writer.submit(_Call(lambda db, now: fn(db, now, *args), future))

    async def _write_batch(self, batch: list[Persist | _Call]) -> None:
        results, sids, due = await self._thread.transaction(self._run_batch, batch)
        self._sids.update(sids)
        if due:
            self._retention.due()
        self.commits += 1
        self.writes += len(batch)
        for op, result in zip(batch, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)

    def _run_batch(
        self, db: sqlite3.Connection, batch: list[Persist | _Call]
    ) -> tuple[list[Any], dict[str, int], bool]:
        """In the connection's thread, inside ``BEGIN IMMEDIATE ... COMMIT``: every write of ``batch``."""
        now = time.time()  # taken under the write lock: ts follow seq order
        persists = [op for op in batch if type(op) is Persist]
        events, sids, due = (
            _ops.insert_events(db, persists, self.epoch, now, self.options.max_events)
            if persists
            else ([], {}, False)
        )
        it = iter(events)
        results = [next(it) if type(op) is Persist else op.run(db, now) for op in batch]  # type: ignore[union-attr]
        return results, sids, due

    # -- event streams ----------------------------------------------------------------
    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        return await self._writer.submit(prepare_persist(stream, data, rooms, exclude))  # type: ignore[no-any-return]

    async def _read(self, sql: str, params: Any, doing: str) -> list[Any]:
        if not self._writer.running:
            raise StoreUnavailableError(f"{self!r} is not open: await store.open() first")
        with wrap_driver_errors(SQLITE, doing):
            return await self._thread.run(lambda db: db.execute(sql, params).fetchall())

    async def _sid(self, stream: str) -> int | None:
        sid = self._sids.get(stream)
        if sid is None:
            rows = await self._read(
                "SELECT sid FROM sio_streams WHERE name = ?", (stream,), "reading a stream"
            )
            if rows:
                sid = self._sids[stream] = int(rows[0][0])
        return sid

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        wanted = check_fetch(stream, rooms, limit)
        (after,) = (0,) if offset is None else _ops.CODEC.position(offset, self.epoch)
        sid = await self._sid(stream)
        if sid is None:
            if after != 0:
                raise OffsetUnavailableError(f"offset {offset!r} is not held by this store", offset=offset)
            return []
        params: dict[str, Any] = {"sid": sid, "after": after, "limit": limit}
        if wanted is not None:
            if len(wanted) > _sql.ROOM_BRANCHES:
                params["rooms"] = json.dumps(wanted)
            else:
                params.update((f"r{i}", room) for i, room in enumerate(wanted))
        rows = await self._read(
            _sql.fetch_sql(None if wanted is None else len(wanted)), params, "fetch_since"
        )
        out: list[Event] = []
        last_seq = trimmed_upto = 0
        for seq, ts, data, event_rooms, exclude in rows:
            if seq == -1:
                last_seq, trimmed_upto = ts, data
                continue
            out.append(
                Event(
                    _ops.CODEC.format(self.epoch, seq),
                    json.loads(data),
                    tuple(json.loads(event_rooms)) if event_rooms else (),
                    tuple(json.loads(exclude)) if exclude else (),
                    ts,
                )
            )
        if offset is not None:
            _ops.CODEC.check(offset, (after,), first=(trimmed_upto,), last=(last_seq,))
        out.sort(key=lambda e: e.offset)
        return out

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)
        rows = await self._read(
            "SELECT last_seq FROM sio_streams WHERE name = ?", (stream,), "reading a stream"
        )
        return _ops.CODEC.format(self.epoch, int(rows[0][0]) if rows else 0)

    # -- retention ----------------------------------------------------------------------
    async def trim(self, stream: str | None = None) -> int:
        if stream is not None:
            check_stream(stream)
            sid = await self._sid(stream)
            return 0 if sid is None else await self._trim_stream(sid)
        rows = await self._read(
            "SELECT sid FROM sio_streams WHERE last_seq > trimmed_upto", (), "listing streams"
        )
        total = 0
        for (sid,) in rows:
            total += await self._trim_stream(int(sid))
        return total

    async def _trim_stream(self, sid: int) -> int:
        opts = self.options
        total = 0
        while True:
            dropped, more = await self._call(
                _ops.trim_chunk, sid, opts.trim_chunk, opts.max_events, opts.max_age, opts.max_bytes
            )
            total += int(dropped)
            if not more:
                return total

    async def sweep(self) -> None:
        """Delete expired sessions and idempotency keys now (also done in the background)."""
        while await self._call(_ops.sweep):
            pass

    async def _maintain(self) -> None:
        await self.trim()
        await self.sweep()

    # -- sessions -------------------------------------------------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        """Upsert the record; this also replaces any lease on ``key``.

        ``leased_until`` becomes 0 (claimable at once) or, with ``lease``, now + lease,
        exactly what a leased claim writes::

            await store.save_session(pid, record, 120, lease=10)  # renewed while connected
        """
        text, seconds, lease_seconds = prepare_session(key, record, ttl, lease)
        await self._call(_ops.save_session, key, text, seconds, lease_seconds)

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        """Take the session under ``key``: delete it, or with ``lease`` hide it for that long.

        One write statement (``DELETE``/``UPDATE ... RETURNING``, skipping a leased
        record) in the group-commit transaction, which holds SQLite's write lock, so of
        concurrent claims in any process exactly one takes the record. A claim that took
        nothing looks, in that same transaction, for a live record left behind: that one
        is leased, and the claim raises :class:`~socketio_delivery.errors.SessionBusyError`.

        ::

            record = await store.claim_session(key, lease=10)  # hidden for 10 s
            ...  # restore the connection; a crash here loses nothing
            await store.save_session(key, new_record, ttl)  # replaces it, ends the lease
        """
        check_key(key)
        seconds = None if lease is None else check_ttl(lease, "lease")
        text = await self._call(_ops.claim_session, key, seconds)
        if isinstance(text, _ops.Busy):
            raise SessionBusyError(
                f"session {key!r} is being recovered by another connection", retry_after=text.retry_after
            )
        return None if text is None else json.loads(text)

    # -- idempotency keys ---------------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")
        return await self._call(_ops.reserve_key, key, seconds)  # type: ignore[no-any-return]

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        text = encode_json(result, "result")
        await self._call(_ops.complete_key, key, text, seconds)

    async def release_key(self, key: str) -> None:
        check_key(key)
        await self._call(_ops.release_key, key)
