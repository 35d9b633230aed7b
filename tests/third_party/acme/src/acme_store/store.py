"""``AcmeEventStore``: events, sessions and idempotency keys in one SQLite file.

A deliberately small but complete store, written as a third-party package would
write it: stdlib ``sqlite3`` run in a worker thread, one lock per store, every
write in a ``BEGIN IMMEDIATE`` transaction (so offsets are assigned atomically
with the insert, across processes too). URLs::

    acme:///relative/events.db     acme:////absolute/events.db     acme://  (in memory)
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from socketio_delivery import (
    Capability,
    Event,
    InvalidArgumentError,
    InvalidOffsetError,
    KeyState,
    OffsetUnavailableError,
    Reservation,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.config import StoreOptions, build_options, parse_url
from socketio_delivery.store import DEFAULT_PAGE_SIZE, new_id
from socketio_delivery.validate import (
    check_key,
    check_limit,
    check_offset,
    check_rooms,
    check_stream,
    check_ttl,
)

T = TypeVar("T")

_OFFSET = re.compile(r"([0-9a-f]{8})-([0-9a-f]{16})")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, data TEXT NOT NULL,
    rooms TEXT NOT NULL, exclude TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, seq);
CREATE TABLE IF NOT EXISTS trimmed (stream TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, expires REAL NOT NULL, leased REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, expires REAL NOT NULL, result TEXT NOT NULL);
"""


@dataclass(frozen=True)
class AcmeOptions(StoreOptions):
    """``max_age`` / ``max_events`` (from :class:`StoreOptions`) plus our own option."""

    busy_timeout: float = 10.0


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


class AcmeEventStore:
    """An :class:`~socketio_delivery.EventStore` in one SQLite file (``acme://`` alone: in memory)."""

    def __init__(self, path: str, options: AcmeOptions) -> None:
        self.path = path or ":memory:"
        self.options = options
        # Capabilities may depend on the URL: a file is durable and shared, memory is not.
        self.capabilities = frozenset({Capability.DURABLE, Capability.MULTI_PROCESS}) if path else frozenset()
        self.epoch = ""
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AcmeEventStore:
        """What ``open_store("acme:///events.db?max_events=1000", busy_timeout=5)`` calls."""
        parsed = parse_url(url)
        return cls(parsed.path, build_options(AcmeOptions, parsed, options))

    # -- plumbing ------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a thread; wrap driver errors at the edge."""

        def call() -> T:
            with self._lock:
                if self._db is None:
                    raise StoreUnavailableError("the store is not open (await store.open() first)")
                try:
                    return fn(self._db)
                except sqlite3.OperationalError as exc:
                    raise StoreUnavailableError(f"sqlite: {exc}") from exc
                except sqlite3.Error as exc:
                    raise StoreError(f"sqlite: {exc}") from exc

        return await asyncio.to_thread(call)

    @staticmethod
    def _write(db: sqlite3.Connection, fn: Callable[[], T]) -> T:
        db.execute("BEGIN IMMEDIATE")  # one writer at a time, in every process
        try:
            result = fn()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            return

        def connect() -> tuple[sqlite3.Connection, str]:
            db = sqlite3.connect(
                self.path, timeout=self.options.busy_timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

            def epoch() -> str:
                row = db.execute("SELECT epoch FROM meta").fetchone()
                if row is None:
                    row = (secrets.token_hex(4),)
                    db.execute("INSERT INTO meta VALUES (?)", row)
                return str(row[0])

            return db, self._write(db, epoch)

        try:
            self._db, self.epoch = await asyncio.to_thread(connect)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open {self.path!r}: {exc}") from exc

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)

    def generate_id(self) -> str:
        return new_id()

    # -- events ------------------------------------------------------------------------
    def _offset(self, seq: int) -> str:
        return f"{self.epoch}-{seq:016x}"

    def _seq_of(self, offset: str | None) -> int:
        if offset is None:
            return 0
        match = _OFFSET.fullmatch(check_offset(offset))
        if match is None:
            raise InvalidOffsetError(f"{offset[:40]!r} is not an acme offset")
        if match.group(1) != self.epoch:
            raise OffsetUnavailableError(f"offset {offset!r} is from another epoch", offset=offset)
        return int(match.group(2), 16)

    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        check_stream(stream)
        event_rooms, event_exclude = check_rooms(rooms), check_rooms(exclude, "exclude")
        text = _dumps(data, "event data")
        now = time.time()

        def insert(db: sqlite3.Connection) -> int:
            def step() -> int:
                cursor = db.execute(
                    "INSERT INTO events (stream, data, rooms, exclude, ts) VALUES (?, ?, ?, ?, ?)",
                    (stream, text, json.dumps(event_rooms), json.dumps(event_exclude), now),
                )
                self._retain(db, stream)
                return int(cursor.lastrowid or 0)

            return self._write(db, step)

        seq = await self._run(insert)
        return Event(self._offset(seq), json.loads(text), event_rooms, event_exclude, now)

    def _retain(self, db: sqlite3.Connection, stream: str) -> int:
        """Drop what retention drops (inside a write transaction); return the count."""
        cut = 0
        if self.options.max_events is not None:
            row = db.execute(
                "SELECT seq FROM events WHERE stream = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (stream, self.options.max_events),
            ).fetchone()
            cut = row[0] if row else 0
        if self.options.max_age is not None:
            row = db.execute(
                "SELECT max(seq) FROM events WHERE stream = ? AND ts < ?",
                (stream, time.time() - self.options.max_age),
            ).fetchone()
            cut = max(cut, row[0] or 0)
        if not cut:
            return 0
        gone = db.execute("DELETE FROM events WHERE stream = ? AND seq <= ?", (stream, cut)).rowcount
        db.execute(
            "INSERT INTO trimmed VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET upto = max(upto, ?)",
            (stream, cut, cut),
        )
        return int(gone)

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
        wanted = None if rooms is None else set(check_rooms(rooms))
        seq = self._seq_of(offset)

        def read(db: sqlite3.Connection) -> list[Event]:
            self._write(db, lambda: self._retain(db, stream))
            row = db.execute("SELECT upto FROM trimmed WHERE stream = ?", (stream,)).fetchone()
            if offset is not None and row is not None and seq < row[0]:
                raise OffsetUnavailableError(f"events after {offset!r} were trimmed", offset=offset)
            out: list[Event] = []
            rows = db.execute(
                "SELECT seq, data, rooms, exclude, ts FROM events WHERE stream = ? AND seq > ? ORDER BY seq",
                (stream, seq),
            )
            for n, data, event_rooms, exclude, ts in rows:
                to = tuple(json.loads(event_rooms))
                if wanted is None or not to or not wanted.isdisjoint(to):
                    out.append(Event(self._offset(n), json.loads(data), to, tuple(json.loads(exclude)), ts))
                    if len(out) == limit:
                        break
            return out

        return await self._run(read)

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)

        def newest(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT max(coalesce((SELECT max(seq) FROM events WHERE stream = ?), 0),"
                " coalesce((SELECT upto FROM trimmed WHERE stream = ?), 0))",
                (stream, stream),
            ).fetchone()
            return int(row[0])

        return self._offset(await self._run(newest))

    async def trim(self, stream: str | None = None) -> int:
        streams = None if stream is None else [check_stream(stream)]

        def trim(db: sqlite3.Connection) -> int:
            names = streams or [r[0] for r in db.execute("SELECT DISTINCT stream FROM events")]
            return self._write(db, lambda: sum(self._retain(db, name) for name in names))

        return await self._run(trim)

    # -- sessions -------------------------------------------------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        check_key(key)
        now = time.time()
        expires = now + check_ttl(ttl)
        leased = 0.0 if lease is None else now + check_ttl(lease, "lease")  # 0: claimable at once
        if not isinstance(record, Mapping):
            raise InvalidArgumentError("a session record must be a mapping")
        text = _dumps(dict(record), "session record")
        sql = "INSERT OR REPLACE INTO sessions (key, record, expires, leased) VALUES (?, ?, ?, ?)"
        args = (key, text, expires, leased)
        await self._run(lambda db: self._write(db, lambda: db.execute(sql, args)))

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        check_key(key)
        seconds = None if lease is None else check_ttl(lease, "lease")

        def claim(db: sqlite3.Connection) -> Any:
            now = time.time()
            row = db.execute("SELECT record, expires, leased FROM sessions WHERE key = ?", (key,)).fetchone()
            if row is None or row[1] <= now:
                db.execute("DELETE FROM sessions WHERE key = ?", (key,))
                return None
            if row[2] > now:
                raise SessionBusyError("the session is being recovered by another connection")
            if seconds is None:
                db.execute("DELETE FROM sessions WHERE key = ?", (key,))
            else:
                db.execute("UPDATE sessions SET leased = ? WHERE key = ?", (now + seconds, key))
            return json.loads(row[0])

        return await self._run(lambda db: self._write(db, lambda: claim(db)))

    # -- idempotency keys -----------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")

        def reserve(db: sqlite3.Connection) -> Reservation:
            now = time.time()
            row = db.execute("SELECT state, expires, result FROM keys WHERE key = ?", (key,)).fetchone()
            if row is not None and row[1] > now:
                state = KeyState(row[0])
                return Reservation(state, json.loads(row[2]) if state is KeyState.DONE else None)
            sql = "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, 'null')"
            db.execute(sql, (key, KeyState.PENDING.value, now + seconds))
            return Reservation(KeyState.ACQUIRED)

        return await self._run(lambda db: self._write(db, lambda: reserve(db)))

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        expires = time.time() + check_ttl(ttl)
        text = _dumps(result, "result")
        sql = "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)"
        args = (key, KeyState.DONE.value, expires, text)
        await self._run(lambda db: self._write(db, lambda: db.execute(sql, args)))

    async def release_key(self, key: str) -> None:
        check_key(key)
        sql = "DELETE FROM keys WHERE key = ? AND state = ?"
        args = (key, KeyState.PENDING.value)
        await self._run(lambda db: self._write(db, lambda: db.execute(sql, args)))
