"""The SQL of the SQLite store: schema, and the statements that need building."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from typing import Any

__all__ = [
    "CLAIM_SESSION",
    "INSERT_CHUNK",
    "INSERT_EVENTS",
    "INSERT_EVENT_ROOMS",
    "LEASE_SESSION",
    "MIGRATIONS",
    "ROOM_BRANCHES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SESSION_LEASED",
    "fetch_sql",
    "insert_rows",
    "insert_rows_sql",
    "migrate",
    "prepare",
    "upsert_streams_sql",
    "use_wal",
]

log = logging.getLogger("socketio_delivery_sqlite")

#: Bumped only for changes older code cannot read; additive changes are :data:`MIGRATIONS`.
SCHEMA_VERSION = "1"

#: Created in one ``BEGIN IMMEDIATE`` transaction at open (several processes may race here).
#: ``sio_meta.epoch`` is chosen once, when the file is created.
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS sio_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO sio_meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}');
INSERT OR IGNORE INTO sio_meta (key, value) VALUES ('epoch', lower(hex(randomblob(4))));
CREATE TABLE IF NOT EXISTS sio_streams (
    sid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    last_seq INTEGER NOT NULL,
    trimmed_upto INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sio_events (
    id INTEGER PRIMARY KEY,
    sid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL,
    rooms TEXT,
    exclude TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS sio_events_by_seq ON sio_events (sid, seq);
CREATE INDEX IF NOT EXISTS sio_events_for_everyone ON sio_events (sid, seq) WHERE rooms IS NULL;
CREATE TABLE IF NOT EXISTS sio_event_rooms (
    sid INTEGER NOT NULL,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sid, room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sio_sessions (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires REAL NOT NULL,
    leased_until REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sio_sessions_by_expiry ON sio_sessions (expires);
CREATE TABLE IF NOT EXISTS sio_keys (
    key TEXT PRIMARY KEY,
    done INTEGER NOT NULL,
    expires REAL NOT NULL,
    result TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sio_keys_by_expiry ON sio_keys (expires);
COMMIT;
"""

#: Columns added after files were first created: ``(table, column, ALTER TABLE statement)``.
#: :data:`SCHEMA` creates new files with them; a file from an earlier version gets each
#: missing one at open, in its own ``BEGIN IMMEDIATE`` transaction (idempotent: the column
#: is looked up first, and "duplicate column name" from a process that raced us is success).
#: Defaults keep old rows meaning what they meant (``leased_until = 0``: not leased), and
#: code of the previous version still reads and writes the file (it ignores leases).
MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "sio_sessions",
        "leased_until",
        "ALTER TABLE sio_sessions ADD COLUMN leased_until REAL NOT NULL DEFAULT 0",
    ),
)

#: ``claim_session(key)``: delete the record unless a live lease holds it (an expired one
#: is deleted too, and reported absent). Parameters: ``:key``, ``:now``.
CLAIM_SESSION = (
    "DELETE FROM sio_sessions WHERE key = :key AND (leased_until <= :now OR expires <= :now) "
    "RETURNING record, expires"
)
#: ``claim_session(key, lease=...)``: lease a live, unleased record until ``:until``.
LEASE_SESSION = (
    "UPDATE sio_sessions SET leased_until = :until "
    "WHERE key = :key AND expires > :now AND leased_until <= :now RETURNING record, expires"
)
#: After a claim that took nothing, in the same transaction: a live record left under
#: ``:key`` is leased by another claim (busy); none means absent or expired.
SESSION_LEASED = "SELECT leased_until FROM sio_sessions WHERE key = :key AND expires > :now"

#: Most rows one insert statement writes: statements of 64, 32, ..., 1 rows cover any
#: number of rows, so a handful of prepared statements stay cached (and 64 x 6 parameters
#: stay under the 999 of old SQLite builds).
INSERT_CHUNK = 64
INSERT_EVENTS = "INSERT INTO sio_events (sid, seq, ts, data, rooms, exclude) VALUES "
INSERT_EVENT_ROOMS = "INSERT OR IGNORE INTO sio_event_rooms (sid, room, seq) VALUES "


@functools.lru_cache(maxsize=32)
def insert_rows_sql(insert: str, width: int, rows: int) -> str:
    """``insert`` followed by ``rows`` groups of ``width`` parameters: one statement, many rows.

    Several rows per statement cost SQLite (and the driver's binding) about half of what
    ``executemany`` does one row at a time.
    """
    group = "(" + ", ".join(["?"] * width) + ")"
    return insert + ", ".join([group] * rows)


def insert_rows(db: sqlite3.Connection, insert: str, width: int, params: list[Any]) -> None:
    """Insert the rows ``params`` holds (flat, ``width`` per row) in statements of at most
    :data:`INSERT_CHUNK` rows, each a power of two."""
    rows = len(params) // width
    done = 0
    while done < rows:
        count = min(INSERT_CHUNK, 1 << ((rows - done).bit_length() - 1))
        db.execute(insert_rows_sql(insert, width, count), params[done * width : (done + count) * width])
        done += count


#: Up to this many wanted rooms, each room is its own index range bounded by the limit;
#: beyond it one ``room IN (...)`` range is read and sorted (still correct, less bounded).
ROOM_BRANCHES = 100

_STREAM_ROW = "SELECT -1, last_seq, trimmed_upto, NULL, NULL FROM sio_streams WHERE sid = :sid"
_EVENT_COLUMNS = "seq, ts, data, rooms, exclude"


def upsert_streams_sql(count: int) -> str:
    """Add ``?2`` events to stream ``?1`` (``count`` pairs): one statement reserving every seq."""
    values = ", ".join(["(?, ?)"] * count)
    return (
        f"INSERT INTO sio_streams (name, last_seq) VALUES {values} "
        "ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + excluded.last_seq "
        "RETURNING sid, name, last_seq, trimmed_upto"
    )


def fetch_sql(rooms: int | None) -> str:
    """One statement (one snapshot) returning the stream's row and the page of events.

    The stream row has ``-1`` in the first column. Parameters: ``:sid``, ``:after``,
    ``:limit`` and ``:r0``, ``:r1``, ... (or ``:rooms``, a JSON array, past
    :data:`ROOM_BRANCHES` rooms). ``rooms=None``: no room filter.
    """
    if rooms is None:
        page = (
            f"SELECT {_EVENT_COLUMNS} FROM sio_events WHERE sid = :sid AND seq > :after "
            "ORDER BY seq LIMIT :limit"
        )
    else:
        branches = [
            "SELECT seq FROM (SELECT seq FROM sio_events WHERE sid = :sid AND rooms IS NULL "
            "AND seq > :after ORDER BY seq LIMIT :limit)"
        ]
        if rooms > ROOM_BRANCHES:
            branches.append(
                "SELECT seq FROM (SELECT seq FROM sio_event_rooms WHERE sid = :sid "
                "AND room IN (SELECT value FROM json_each(:rooms)) AND seq > :after "
                "ORDER BY seq LIMIT :limit)"
            )
        else:
            branches.extend(
                f"SELECT seq FROM (SELECT seq FROM sio_event_rooms WHERE sid = :sid AND room = :r{i} "
                "AND seq > :after ORDER BY seq LIMIT :limit)"
                for i in range(rooms)
            )
        page = (
            f"SELECT {_EVENT_COLUMNS} FROM sio_events WHERE sid = :sid AND seq IN ("
            + " UNION ".join(branches)
            + ") ORDER BY seq LIMIT :limit"
        )
    return f"{_STREAM_ROW} UNION ALL SELECT * FROM ({page})"


def use_wal(db: sqlite3.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, retried for up to ``timeout`` seconds while "locked".

    Switching a file to WAL needs an exclusive lock and SQLite does not wait for it
    (no busy handler), so processes opening a new file at once would fail at random.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns of :data:`MIGRATIONS` a file from an earlier version lacks.

    Idempotent and safe when several processes open an old file at once: the column is
    looked up first, added in its own ``BEGIN IMMEDIATE`` transaction, and a "duplicate
    column name" error (another process added it after our look-up) counts as done.
    """
    for table, column, alter in MIGRATIONS:
        if any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})")):
            continue
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(alter)
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            if (
                not isinstance(exc, sqlite3.OperationalError)
                or "duplicate column name" not in str(exc).lower()
            ):
                raise


def prepare(db: sqlite3.Connection, busy_timeout: float, synchronous: str, wal: bool) -> dict[str, str]:
    """At open: pragmas, WAL, the schema, migrations; returns ``sio_meta`` (schema, epoch)."""
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if wal:
        mode = use_wal(db, busy_timeout)
        if mode.lower() != "wal":
            log.warning("journal_mode is %s, not wal", mode)
    db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    try:
        db.executescript(SCHEMA)
    except BaseException:
        with contextlib.suppress(Exception):
            db.execute("ROLLBACK")
        raise
    migrate(db)
    return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM sio_meta")}
