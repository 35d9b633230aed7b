"""The SQLite store: durable, shared by the processes of one machine, writes group-committed.

::

    from socketio_delivery import open_store

    store = open_store("sqlite:///events.db?busy_timeout=10")
    await store.open()
    event = await store.persist("/chat", {"text": "hi"}, rooms=["lobby"])
    page = await store.fetch_since("/chat", None, rooms=["lobby"])
    await store.close()

One aiosqlite connection per store object. Every write (``persist``, sessions,
idempotency keys, retention) is queued and a single writer task runs what is
queued in one ``BEGIN IMMEDIATE ... COMMIT`` transaction (group commit); each
caller is answered after the commit. Offsets are taken from the stream's counter
inside that transaction, which holds SQLite's write lock, so commit order is
offset order across every process sharing the file: no late arrivals. The persists
of a batch are written by one call in the connection's thread (``BEGIN``, the
counters, multi-row inserts, ``COMMIT``), not one trip per statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, TypeVar

import aiosqlite
from socketio_delivery.config import StoreOptions, build_options, parse_url
from socketio_delivery.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.store import (
    DEFAULT_PAGE_SIZE,
    Capability,
    Event,
    KeyState,
    Reservation,
    new_id,
)
from socketio_delivery.validate import (
    check_key,
    check_limit,
    check_offset,
    check_rooms,
    check_stream,
    check_ttl,
)

from . import _sql

__all__ = ["SQLiteEventStore", "SQLiteOptions"]

log = logging.getLogger("socketio_delivery_sqlite")
_T = TypeVar("_T")

MEMORY = ":memory:"
_OFFSET = re.compile(r"([0-9a-f]{8})-([0-9a-f]{16})")
_SYNCHRONOUS = ("off", "normal", "full", "extra")
#: Expired sessions/keys deleted per sweep transaction.
_SWEEP_CHUNK = 5000
#: What a claim's write transaction answers when a lease holds the session.
_BUSY = object()


@dataclass(frozen=True)
class SQLiteOptions(StoreOptions):
    """Options of ``sqlite://`` URLs (query string or keyword options).

    ``busy_timeout``: seconds to wait for another process's write lock before a
    write fails with :class:`~socketio_delivery.errors.StoreUnavailableError`.
    ``synchronous``: SQLite's ``PRAGMA synchronous`` (``normal``: a commit survives
    a crash of the process, the last commits may be lost on power loss; ``full``:
    fsync on every commit). ``max_batch``: most writes in one transaction.
    ``retention_interval``: seconds between background retention and expiry
    sweeps (``None``: only :meth:`~SQLiteEventStore.trim`). ``trim_chunk``: most
    events one retention transaction deletes (writers wait less).
    """

    busy_timeout: float = 5.0
    synchronous: str = "normal"
    max_batch: int = 1000
    retention_interval: float | None = 30.0
    trim_chunk: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.busy_timeout >= 0:
            raise ConfigurationError(f"busy_timeout must be >= 0 seconds, got {self.busy_timeout!r}")
        if not isinstance(self.synchronous, str) or self.synchronous.lower() not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {self.synchronous!r}"
            )
        if not self.max_batch >= 1:
            raise ConfigurationError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if self.retention_interval is not None and not self.retention_interval > 0:
            raise ConfigurationError(
                f"retention_interval must be > 0 seconds or None, got {self.retention_interval!r}"
            )
        if not self.trim_chunk >= 1:
            raise ConfigurationError(f"trim_chunk must be >= 1, got {self.trim_chunk!r}")


@dataclass(slots=True)
class _Persist:
    stream: str
    data: Any
    data_text: str
    rooms: tuple[str, ...]
    exclude: tuple[str, ...]
    future: asyncio.Future[Any] = field(repr=False)


@dataclass(slots=True)
class _Call:
    """Any other write: ``run(now)`` runs inside the batch transaction."""

    run: Callable[[float], Awaitable[Any]]
    future: asyncio.Future[Any] = field(repr=False)


_Op = _Persist | _Call


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_SCALARS = (str, int, float, bool, type(None))
#: ``json.loads`` without its whitespace checks, for text :func:`_encode` wrote: ``(value, end)``.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
#: The C encoder ``_ENCODER.encode`` builds anew on every call (a third of ``persist``'s
#: time went there), built once. Without circular-reference markers, so it keeps no state
#: and any thread may use it: a circular value ends in ``RecursionError`` instead.
_C_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
)


def _encode(value: Any) -> str:
    """``_ENCODER.encode(value)``: the same text, with less overhead per call."""
    if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def _dumps(value: Any, what: str) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


def _room_tuple(rooms: Collection[str], name: str) -> tuple[str, ...]:
    """``check_rooms(rooms, name)``, without its ABC check for tuples and lists of ``str``."""
    if type(rooms) is tuple or type(rooms) is list:
        out = tuple(rooms)
        for room in out:
            if type(room) is not str:
                return check_rooms(rooms, name)
        return out
    return check_rooms(rooms, name)


def _store_error(exc: BaseException, doing: str) -> StoreError:
    """The :class:`StoreError` (or :class:`StoreUnavailableError`) for a driver error, cause chained."""
    text = str(exc)
    lowered = text.lower()
    unavailable = isinstance(exc, sqlite3.OperationalError) and any(
        word in lowered for word in ("locked", "busy", "unable to open", "disk i/o")
    )
    if isinstance(exc, ValueError) and "closed" in lowered:  # aiosqlite: connection closed
        unavailable = True
    cls = StoreUnavailableError if unavailable else StoreError
    error = cls(f"SQLite {doing} failed: {type(exc).__name__}: {text}")
    error.__cause__ = exc
    return error


async def _use_wal(conn: aiosqlite.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, retried for up to ``timeout`` seconds while "locked".

    Switching a file to WAL needs an exclusive lock and SQLite does not wait for it
    (no busy handler), so processes opening a new file at once would fail at random.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            rows = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return str(next(iter(rows))[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Add the columns of :data:`_sql.MIGRATIONS` a file from an earlier version lacks.

    Idempotent and safe when several processes open an old file at once: the column is
    looked up first, added in its own ``BEGIN IMMEDIATE`` transaction, and a "duplicate
    column name" error (another process added it after our look-up) counts as done.
    """
    for table, column, alter in _sql.MIGRATIONS:
        rows = await conn.execute_fetchall(f"PRAGMA table_info({table})")
        if any(row[1] == column for row in rows):
            continue
        try:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute(alter)
            await conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            if "duplicate column name" not in str(exc).lower():
                raise
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise


async def _connect(database: str) -> aiosqlite.Connection:
    """``aiosqlite.connect``; on failure, wait for its worker thread to stop (it answers the loop)."""
    pending = aiosqlite.connect(database, isolation_level=None)
    try:
        return await pending
    except BaseException:
        thread = getattr(pending, "_thread", None)  # aiosqlite stops it; let it finish first
        if thread is not None and hasattr(thread, "join"):
            await asyncio.to_thread(thread.join, 5)
        raise


async def _in_thread(conn: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(db, *args)`` in the thread of ``conn`` (``db``: its ``sqlite3.Connection``).

    Many statements in one trip to the thread instead of one trip each. aiosqlite has no
    public call for it; ``_execute`` (queue a function) and ``_conn`` have been there since
    its first releases.
    """

    def run() -> _T:
        return fn(conn._conn, *args)

    return await conn._execute(run)  # type: ignore[no-any-return,no-untyped-call]


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
        self._conn: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()
        self._conn_lock = asyncio.Lock()  # a transaction and reads never interleave on the connection
        self._queue: deque[_Op] = deque()
        self._wakeup = asyncio.Event()
        self._retention_due = asyncio.Event()
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
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
            if self._conn is not None:
                return
            conn: aiosqlite.Connection | None = None
            try:
                conn = await _connect(self.database)
                await conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout * 1000)}")
                if not self.in_memory:
                    mode = await _use_wal(conn, self.options.busy_timeout)
                    if str(mode).lower() != "wal":
                        log.warning("%s: journal_mode is %s, not wal", self.database, mode)
                await conn.execute(f"PRAGMA synchronous = {self.options.synchronous.upper()}")
                try:
                    await conn.executescript(_sql.SCHEMA)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                    raise
                await _migrate(conn)
                rows = await conn.execute_fetchall("SELECT key, value FROM sio_meta")
                meta: dict[str, str] = {str(k): str(v) for k, v in rows}
            except BaseException as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                if isinstance(exc, (sqlite3.Error, ValueError, OSError)):
                    error = _store_error(exc, f"opening {self.database!r}")
                    if isinstance(exc, sqlite3.OperationalError) and type(error) is StoreError:
                        error = StoreUnavailableError(str(error))
                        error.__cause__ = exc
                    raise error from exc
                raise
            if meta.get("schema") != _sql.SCHEMA_VERSION:
                await conn.close()
                raise StoreError(
                    f"{self.database!r} has socketio-delivery schema {meta.get('schema')!r}, "
                    f"this version reads {_sql.SCHEMA_VERSION!r}"
                )
            self.epoch = str(meta["epoch"])
            self._conn = conn
            self._stopping = False
            self._sids.clear()
            # Fresh primitives: a store may be opened again on another event loop.
            self._conn_lock = asyncio.Lock()
            self._wakeup = asyncio.Event()
            self._retention_due = asyncio.Event()
            self._writer = asyncio.create_task(self._write_loop(), name=f"{self!r} writer")
            if self.options.retention_interval is not None:
                self._maintenance = asyncio.create_task(self._maintain(), name=f"{self!r} retention")

    async def close(self) -> None:
        async with self._open_lock:
            conn = self._conn
            if conn is None:
                return
            self._stopping = True
            if self._maintenance is not None:
                self._maintenance.cancel()
                await asyncio.gather(self._maintenance, return_exceptions=True)
                self._maintenance = None
            self._wakeup.set()
            if self._writer is not None:
                await asyncio.gather(self._writer, return_exceptions=True)
                self._writer = None
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.execute("PRAGMA optimize")
            try:
                await conn.close()
            except Exception as exc:
                raise _store_error(exc, "close") from exc

    def generate_id(self) -> str:
        return new_id()

    # -- offsets ---------------------------------------------------------------------
    def _offset(self, seq: int) -> str:
        return f"{self.epoch}-{seq:016x}"

    def _seq_of(self, offset: object) -> int:
        text = check_offset(offset)
        match = _OFFSET.fullmatch(text)
        if match is None:
            raise InvalidOffsetError(f"{text[:40]!r} is not an offset of the SQLite store")
        if match.group(1) != self.epoch:
            raise OffsetUnavailableError(
                f"offset {text!r} is from another epoch (the database was recreated or is another one)",
                offset=text,
            )
        return int(match.group(2), 16)

    # -- the writer ------------------------------------------------------------------
    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None or self._stopping:
            raise StoreUnavailableError(f"{self!r} is not open: await store.open() first")
        return self._conn

    def _enqueue(self, op: _Op) -> None:
        """Queue ``op`` for the writer; its future gets the answer after the commit."""
        if self._conn is None or self._stopping:
            self._connection()  # raises
        self._queue.append(op)
        self._wakeup.set()

    async def _call(self, run: Callable[[float], Awaitable[Any]]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Call(run, future))
        return await future

    async def _write_loop(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), self.options.max_batch))]
            try:
                await self._run_batch(batch)
            except BaseException as exc:  # cancelled (loop shutdown): nobody waits forever
                error = StoreUnavailableError(f"{self!r} writer stopped")
                error.__cause__ = exc
                for op in [*batch, *queue]:
                    if not op.future.done():
                        op.future.set_exception(error)
                queue.clear()
                raise

    async def _run_batch(self, batch: list[_Op]) -> None:
        conn = self._conn
        assert conn is not None
        persists = [op for op in batch if type(op) is _Persist]
        calls_too = len(persists) < len(batch)
        results: list[Any] = []
        async with self._conn_lock:
            try:
                # One trip to the connection's thread: BEGIN, the events, and COMMIT unless
                # other writes (which await the connection themselves) share the transaction.
                now, events, sids, due = await _in_thread(conn, self._write_events, persists, not calls_too)
                if calls_too:
                    it = iter(events)
                    for op in batch:
                        results.append(next(it) if type(op) is _Persist else await op.run(now))  # type: ignore[union-attr]
                    await conn.execute("COMMIT")
                else:
                    results = events
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(_store_error(exc, "write transaction"))
                return
        self._sids.update(sids)
        if due:
            self._retention_due.set()
        self.commits += 1
        self.writes += len(batch)
        for op, result in zip(batch, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)

    def _write_events(
        self, db: sqlite3.Connection, ops: list[_Persist], commit: bool
    ) -> tuple[float, list[Event], dict[str, int], bool]:
        """In the connection's thread: ``BEGIN IMMEDIATE``, insert ``ops`` (maybe none), ``COMMIT``.

        Returns the transaction's timestamp, the events, the ids of their streams and whether
        a stream is due for retention. On error the caller rolls back.
        """
        db.execute("BEGIN IMMEDIATE")
        now = time.time()  # taken under the write lock: ts follow seq order
        events: list[Event] = []
        sids: dict[str, int] = {}
        due = False
        if ops:
            counts: dict[str, int] = {}
            for op in ops:
                counts[op.stream] = counts.get(op.stream, 0) + 1
            params: list[Any] = []
            for name, count in counts.items():
                params += (name, count)
            rows = db.execute(_sql.upsert_streams_sql(len(counts)), params).fetchall()
            next_seq: dict[str, int] = {}
            max_events = self.options.max_events
            held = None if max_events is None else max_events + max(100, max_events // 10)
            for sid, name, last_seq, trimmed_upto in rows:
                sids[name] = sid
                next_seq[name] = last_seq - counts[name] + 1
                if held is not None and last_seq - trimmed_upto > held:
                    due = True  # retention is behind: run it now
            event_params: list[Any] = []  # flat: 6 per event
            room_params: list[Any] = []  # flat: 3 per room of an event
            texts: dict[tuple[str, ...], str | None] = {(): None}  # rooms/exclude -> JSON
            prefix = f"{self.epoch}-"
            for op in ops:
                sid = sids[op.stream]
                seq = next_seq[op.stream]
                next_seq[op.stream] = seq + 1
                rooms = op.rooms
                rooms_text = texts.get(rooms)
                if rooms_text is None and rooms:
                    rooms_text = texts[rooms] = _encode(list(rooms))
                exclude_text = texts.get(op.exclude)
                if exclude_text is None and op.exclude:
                    exclude_text = texts[op.exclude] = _encode(list(op.exclude))
                event_params += (sid, seq, now, op.data_text, rooms_text, exclude_text)
                for room in rooms:
                    room_params += (sid, room, seq)
                events.append(Event(f"{prefix}{seq:016x}", op.data, rooms, op.exclude, now))
            _sql.insert_rows(db, _sql.INSERT_EVENTS, 6, event_params)
            _sql.insert_rows(db, _sql.INSERT_EVENT_ROOMS, 3, room_params)
        if commit:
            db.execute("COMMIT")
        return now, events, sids, due

    # -- event streams ----------------------------------------------------------------
    async def persist(
        self,
        stream: str,
        data: Any,
        *,
        rooms: Collection[str] = (),
        exclude: Collection[str] = (),
    ) -> Event:
        check_stream(stream)
        event_rooms = () if rooms == () else _room_tuple(rooms, "rooms")
        event_exclude = () if exclude == () else _room_tuple(exclude, "exclude")
        text = _dumps(data, "event data")
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        # The event holds its own JSON value, as fetch_since returns it (tuples become lists).
        copy = data if type(data) in _SCALARS else _SCAN(text, 0)[0]
        self._enqueue(_Persist(stream, copy, text, event_rooms, event_exclude, future))
        return await future

    async def _read(self, sql: str, params: Any, doing: str) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            async with self._conn_lock:
                return list(await conn.execute_fetchall(sql, params))  # type: ignore[arg-type]
        except (sqlite3.Error, ValueError) as exc:
            raise _store_error(exc, doing) from exc

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
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        check_stream(stream)
        check_limit(limit)
        wanted = None if rooms is None else list(dict.fromkeys(check_rooms(rooms)))
        after = 0 if offset is None else self._seq_of(offset)
        self._connection()
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
                    self._offset(seq),
                    json.loads(data),
                    tuple(json.loads(event_rooms)) if event_rooms else (),
                    tuple(json.loads(exclude)) if exclude else (),
                    ts,
                )
            )
        if offset is not None and (after < trimmed_upto or after > last_seq):
            raise OffsetUnavailableError(
                f"events after offset {offset!r} are no longer held (retention) or it is unknown",
                offset=offset,
            )
        out.sort(key=lambda e: e.offset)
        return out

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)
        rows = await self._read(
            "SELECT last_seq FROM sio_streams WHERE name = ?", (stream,), "reading a stream"
        )
        return self._offset(int(rows[0][0]) if rows else 0)

    # -- retention ----------------------------------------------------------------------
    async def trim(self, stream: str | None = None) -> int:
        if stream is not None:
            check_stream(stream)
            sid = await self._sid(stream)
            return 0 if sid is None else await self._trim_stream(sid)
        self._connection()
        rows = await self._read(
            "SELECT sid FROM sio_streams WHERE last_seq > trimmed_upto", (), "listing streams"
        )
        total = 0
        for (sid,) in rows:
            total += await self._trim_stream(int(sid))
        return total

    async def _trim_stream(self, sid: int) -> int:
        total = 0
        while True:
            dropped, more = await self._call(lambda now: self._trim_chunk(sid, now))
            total += int(dropped)
            if not more:
                return total

    async def _trim_chunk(self, sid: int, now: float) -> tuple[int, bool]:
        """Inside a write transaction: drop at most ``trim_chunk`` expired events of ``sid``."""
        conn = self._conn
        assert conn is not None
        rows = await conn.execute_fetchall(
            "SELECT last_seq, trimmed_upto FROM sio_streams WHERE sid = ?", (sid,)
        )
        if not rows:
            return 0, False
        last_seq, trimmed = next(iter(rows))
        chunk_end = min(last_seq, trimmed + self.options.trim_chunk)
        upto = trimmed
        if self.options.max_events is not None:
            upto = max(upto, min(chunk_end, last_seq - self.options.max_events))
        if self.options.max_age is not None and upto < chunk_end:
            kept = await conn.execute_fetchall(
                "SELECT seq FROM sio_events WHERE sid = ? AND seq > ? AND seq <= ? AND ts >= ? "
                "ORDER BY seq LIMIT 1",
                (sid, upto, chunk_end, now - self.options.max_age),
            )
            first_kept = next(iter(kept), None)
            upto = chunk_end if first_kept is None else max(upto, first_kept[0] - 1)
        if upto <= trimmed:
            return 0, False
        await conn.execute(
            "DELETE FROM sio_event_rooms WHERE (sid, room, seq) IN (SELECT e.sid, j.value, e.seq "
            "FROM sio_events e, json_each(e.rooms) j WHERE e.sid = ? AND e.seq > ? AND e.seq <= ? "
            "AND e.rooms IS NOT NULL)",
            (sid, trimmed, upto),
        )
        await conn.execute(
            "DELETE FROM sio_events WHERE sid = ? AND seq > ? AND seq <= ?", (sid, trimmed, upto)
        )
        await conn.execute("UPDATE sio_streams SET trimmed_upto = ? WHERE sid = ?", (upto, sid))
        more = upto == chunk_end and chunk_end < last_seq
        return upto - trimmed, more

    async def _sweep(self, now: float) -> bool:
        """Inside a write transaction: delete expired sessions and keys; True if more remain."""
        conn = self._conn
        assert conn is not None
        more = False
        for table in ("sio_sessions", "sio_keys"):
            cursor = await conn.execute(
                f"DELETE FROM {table} WHERE key IN "
                f"(SELECT key FROM {table} WHERE expires <= ? LIMIT {_SWEEP_CHUNK})",
                (now,),
            )
            more = more or cursor.rowcount >= _SWEEP_CHUNK
        return more

    async def sweep(self) -> None:
        """Delete expired sessions and idempotency keys now (also done in the background)."""
        while await self._call(self._sweep):
            pass

    async def _maintain(self) -> None:
        interval = self.options.retention_interval
        assert interval is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retention_due.wait(), interval)
            self._retention_due.clear()
            try:
                await self.trim()
                await self.sweep()
            except StoreError as exc:
                log.warning("%r: retention failed: %s", self, exc)

    # -- sessions -------------------------------------------------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        """Upsert the record; this also replaces any lease on ``key``.

        ``leased_until`` becomes 0 (claimable at once) or, with ``lease``, now + lease,
        exactly what a leased claim writes::

            await store.save_session(pid, record, 120, lease=10)  # renewed while connected
        """
        check_key(key)
        seconds = check_ttl(ttl)
        lease_seconds = None if lease is None else check_ttl(lease, "lease")
        if not isinstance(record, Mapping):
            raise InvalidArgumentError("a session record must be a mapping")
        text = _dumps(dict(record), "session record")

        async def run(now: float) -> None:
            assert self._conn is not None
            until = 0.0 if lease_seconds is None else now + lease_seconds
            await self._conn.execute(
                "INSERT INTO sio_sessions (key, record, expires, leased_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET record = excluded.record, "
                "expires = excluded.expires, leased_until = excluded.leased_until",
                (key, text, now + seconds, until),
            )

        await self._call(run)

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

        async def run(now: float) -> object:
            conn = self._conn
            assert conn is not None
            params: dict[str, Any] = {"key": key, "now": now}
            if seconds is None:
                rows = await conn.execute_fetchall(_sql.CLAIM_SESSION, params)
            else:
                rows = await conn.execute_fetchall(_sql.LEASE_SESSION, {**params, "until": now + seconds})
            row = next(iter(rows), None)
            if row is not None:
                return None if row[1] <= now else str(row[0])  # an expired one was deleted
            if list(await conn.execute_fetchall(_sql.SESSION_LEASED, params)):
                return _BUSY  # answered, not raised: raising here would fail the whole batch
            return None

        text = await self._call(run)
        if text is _BUSY:
            raise SessionBusyError(f"session {key!r} is being recovered by another connection")
        return None if text is None else json.loads(text)

    # -- idempotency keys ---------------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")

        async def run(now: float) -> Reservation:
            conn = self._conn
            assert conn is not None
            taken = await conn.execute_fetchall(
                "INSERT INTO sio_keys (key, done, expires, result) VALUES (?, 0, ?, NULL) "
                "ON CONFLICT (key) DO UPDATE SET done = 0, expires = excluded.expires, result = NULL "
                "WHERE sio_keys.expires <= ? RETURNING 1",
                (key, now + seconds, now),
            )
            if list(taken):
                return Reservation(KeyState.ACQUIRED)
            rows = await conn.execute_fetchall("SELECT done, result FROM sio_keys WHERE key = ?", (key,))
            done, result = next(iter(rows))
            if done:
                return Reservation(KeyState.DONE, json.loads(result))
            return Reservation(KeyState.PENDING)

        return await self._call(run)  # type: ignore[no-any-return]

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        text = _dumps(result, "result")

        async def run(now: float) -> None:
            assert self._conn is not None
            await self._conn.execute(
                "INSERT INTO sio_keys (key, done, expires, result) VALUES (?, 1, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET done = 1, expires = excluded.expires, result = excluded.result",
                (key, now + seconds, text),
            )

        await self._call(run)

    async def release_key(self, key: str) -> None:
        check_key(key)

        async def run(now: float) -> None:
            assert self._conn is not None
            await self._conn.execute("DELETE FROM sio_keys WHERE key = ? AND done = 0", (key,))

        await self._call(run)
