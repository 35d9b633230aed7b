"""``AcmeEventStore``: events, sessions and keys in one SQLite file (stdlib sqlite3), on the kit."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import astuple, dataclass
from json import dumps, loads
from typing import Any

from socketio_delivery import Capability, Event, kit
from socketio_delivery.config import build_options, parse_url
from socketio_delivery.store import DEFAULT_PAGE_SIZE
from socketio_delivery.validate import check_stream

CODEC = kit.OffsetCodec("acme")  # "<epoch>-<16 hex digits>", parsed whole; counters < 2**63
SQLITE = kit.DriverErrors("acme", (sqlite3.Error,), unavailable=(sqlite3.OperationalError,))
SCHEMA = """PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS meta (epoch);
INSERT INTO meta SELECT '{}' WHERE NOT EXISTS (SELECT * FROM meta);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream, data, rooms, exclude, ts);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream, seq);
CREATE TABLE IF NOT EXISTS trimmed (stream PRIMARY KEY, upto);
CREATE TABLE IF NOT EXISTS records (kind, key, value, expires, leased, PRIMARY KEY (kind, key));"""
FIRST = "ifnull((SELECT upto FROM trimmed WHERE stream = ?1), 0)"  # the newest trimmed seq
BOUNDS = f"SELECT {FIRST}, max(ifnull(max(seq), 0), {FIRST}) FROM events WHERE stream = ?1"  # and newest
AFTER = """SELECT * FROM events WHERE stream = ?1 AND seq > ?2 AND (?3 = 'null' OR rooms = '[]' OR EXISTS
    (SELECT * FROM json_each(rooms) r, json_each(?3) w WHERE r.value = w.value)) ORDER BY seq LIMIT ?4"""
DOOMED = """SELECT stream, seq FROM (SELECT stream, seq, row_number() OVER (PARTITION BY stream ORDER BY seq
    DESC) AS n, max(iif(ts < (julianday('now') - 2440587.5) * 86400 - ?3, seq, NULL)) OVER (PARTITION BY
    stream) AS old FROM events WHERE ?1 IS NULL OR stream = ?1) WHERE n > ?2 OR seq <= old"""  # ?3: max_age
MARK = f"""INSERT INTO trimmed SELECT stream, max(seq) FROM ({DOOMED}) WHERE 1 GROUP BY stream
    ON CONFLICT DO UPDATE SET upto = max(upto, excluded.upto)"""
DROP = f"DELETE FROM events WHERE seq IN (SELECT seq FROM ({DOOMED}))"
INSERT = "INSERT INTO events VALUES (NULL, ?, ?, ?, ?, ?)"
GET = "SELECT value, expires, leased FROM records WHERE kind = ? AND key = ?"
PUT = "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class AcmeOptions(kit.AdapterOptions):  # max_age, max_events, retention_interval, ...: validated
    busy_timeout: float = 10.0  # our own option: seconds to wait for another process's lock


class AcmeEventStore(kit.RecordStore):  # sessions, idempotency keys, generate_id: see update_record()
    def __init__(self, path: str, options: AcmeOptions) -> None:
        self.path, self.options, self.epoch = path or ":memory:", options, ""
        self.capabilities = frozenset({Capability.DURABLE, Capability.MULTI_PROCESS}) if path else frozenset()
        self._db: kit.ConnectionThread[sqlite3.Connection] = kit.ConnectionThread()
        self._retention = kit.MaintenanceLoop(self.trim, interval=options.retention_interval)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AcmeEventStore:
        parsed = parse_url(url)  # acme:///events.db?max_events=1000&busy_timeout=5
        return cls(parsed.path, build_options(AcmeOptions, parsed, options))

    async def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with kit.wrap_driver_errors(SQLITE, "a call"):  # StoreError / StoreUnavailableError, cause chained
            return await self._db.transaction(fn)  # BEGIN IMMEDIATE: one writer at a time, in every process

    async def open(self) -> None:  # idempotent, as the kit's parts are
        with kit.wrap_driver_errors(SQLITE, "open"):
            await self._db.open(self._connect)
        self.epoch = await self._run(lambda db: db.execute("SELECT epoch FROM meta").fetchone()[0])
        self._retention.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, self.options.busy_timeout, 0, None, False
        )  # BEGIN is ours; any thread
        return db.executescript(SCHEMA.format(CODEC.new_epoch())).connection

    async def close(self) -> None:
        await self._retention.stop()
        await self._db.close()

    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        op, now = kit.prepare_persist(stream, data, rooms, exclude), time.time()  # checked, JSON text
        row = (stream, op.text, dumps(op.rooms), dumps(op.exclude), now)
        seq = await self._run(lambda db: db.execute(INSERT, row).lastrowid)
        return Event(CODEC.format(self.epoch, seq), op.data, op.rooms, op.exclude, now)

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: kit.RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        wanted = kit.check_fetch(stream, rooms, limit)
        (after,) = (0,) if offset is None else CODEC.position(offset, self.epoch)  # malformed, other epoch

        def read(db: sqlite3.Connection) -> list[Any]:
            if offset is not None:  # trimmed past it, or ahead of the stream: OffsetUnavailableError
                CODEC.check(offset, after, *db.execute(BOUNDS, (stream,)).fetchone())
            return db.execute(AFTER, (stream, after, dumps(wanted), limit)).fetchall()

        return [self._event(*row) for row in await self._run(read)]

    def _event(self, seq: int, _: str, d: str, r: str, x: str, ts: float) -> Event:  # a row of events
        return Event(CODEC.format(self.epoch, seq), loads(d), tuple(loads(r)), tuple(loads(x)), ts)

    async def last_offset(self, stream: str) -> str:
        _, last = await self._run(lambda db: db.execute(BOUNDS, (check_stream(stream),)).fetchone())
        return CODEC.format(self.epoch, last)

    async def trim(self, stream: str | None = None) -> int:
        o = self.options  # max_events, max_age
        args = (None if stream is None else check_stream(stream), o.max_events, o.max_age)
        return await self._run(lambda db: db.execute(MARK, args) and int(db.execute(DROP, args).rowcount))

    async def update_record(self, kind: str, key: str, change: kit.Change[Any]) -> Any:
        def update(db: sqlite3.Connection) -> Any:
            row = db.execute(GET, (kind, key)).fetchone()
            new, answer = change(None if row is None else kit.Record(*row), time.time())
            if new is not kit.KEEP:  # None: delete; a Record: write it
                db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
            if isinstance(new, kit.Record):
                db.execute(PUT, (kind, key, *astuple(new)))
            return answer

        return await self._run(update)
