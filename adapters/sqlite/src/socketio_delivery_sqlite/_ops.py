"""The writes of the SQLite store, run in the connection's thread inside the batch transaction.

Each function takes the ``sqlite3.Connection`` and the transaction's timestamp ``now``
first; the store queues them (with their arguments bound) for the group commit.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from socketio_delivery.kit import OffsetCodec, Persist, encode_json
from socketio_delivery.store import Event, KeyState, Reservation

from . import _sql

__all__ = [
    "Busy",
    "CODEC",
    "claim_session",
    "complete_key",
    "insert_events",
    "release_key",
    "reserve_key",
    "save_session",
    "sweep",
    "trim_chunk",
]

#: ``<epoch>-<seq, 16 hex digits>``: the format stored offsets have always had.
CODEC = OffsetCodec("SQLite")


#: What a claim answers when a lease holds the session (raising would fail the whole batch).
class Busy(NamedTuple):
    """A claim found the record leased: for ``retry_after`` more seconds."""

    retry_after: float


#: Expired sessions/keys deleted per sweep transaction.
SWEEP_CHUNK = 5000

Db = Any  # sqlite3.Connection


def _one(cursor: Any) -> Any:
    """The first row (the statement run to its end), or ``None``."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def insert_events(
    db: Db, ops: list[Persist], epoch: str, now: float, max_events: int | None
) -> tuple[list[Event], dict[str, int], bool]:
    """Reserve every stream's sequence numbers in one statement, insert the rows in a few.

    Returns the events, the ids of their streams and whether a stream is due for retention.
    """
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.stream] = counts.get(op.stream, 0) + 1
    params: list[Any] = []
    for name, count in counts.items():
        params += (name, count)
    sids: dict[str, int] = {}
    next_seq: dict[str, int] = {}
    due = False
    held = None if max_events is None else max_events + max(100, max_events // 10)
    for sid, name, last_seq, trimmed_upto in db.execute(_sql.upsert_streams_sql(len(counts)), params):
        sids[name] = sid
        next_seq[name] = last_seq - counts[name] + 1
        due = due or (held is not None and last_seq - trimmed_upto > held)  # retention is behind
    event_params: list[Any] = []  # flat: 6 per event
    room_params: list[Any] = []  # flat: 3 per room of an event
    texts: dict[tuple[str, ...], str | None] = {(): None}  # rooms/exclude -> JSON
    events: list[Event] = []
    prefix = f"{epoch}-"
    for op in ops:
        sid = sids[op.stream]
        seq = next_seq[op.stream]
        next_seq[op.stream] = seq + 1
        rooms = op.rooms
        rooms_text = texts.get(rooms)
        if rooms_text is None and rooms:
            rooms_text = texts[rooms] = encode_json(list(rooms))
        exclude_text = texts.get(op.exclude)
        if exclude_text is None and op.exclude:
            exclude_text = texts[op.exclude] = encode_json(list(op.exclude))
        event_params += (sid, seq, now, op.text, rooms_text, exclude_text)
        for room in rooms:
            room_params += (sid, room, seq)
        events.append(Event(f"{prefix}{seq:016x}", op.data, rooms, op.exclude, now))
    _sql.insert_rows(db, _sql.INSERT_EVENTS, 6, event_params)
    _sql.insert_rows(db, _sql.INSERT_EVENT_ROOMS, 3, room_params)
    return events, sids, due


#: The newest event of stream ``?1`` after ``?2`` beyond which the newer payloads hold more
#: than ``?3`` bytes (their UTF-8 JSON text): that event and older ones go (max_bytes).
_OVER_BYTES = (
    "SELECT seq FROM (SELECT seq, sum(length(CAST(data AS BLOB))) OVER (ORDER BY seq DESC) AS held "
    "FROM sio_events WHERE sid = ?1 AND seq > ?2) WHERE held > ?3 ORDER BY seq DESC LIMIT 1"
)


def trim_chunk(
    db: Db,
    now: float,
    sid: int,
    chunk: int,
    max_events: int | None,
    max_age: float | None,
    max_bytes: int | None = None,
) -> tuple[int, bool]:
    """Drop at most ``chunk`` expired events of stream ``sid``; ``(dropped, more to drop)``."""
    row = _one(db.execute("SELECT last_seq, trimmed_upto FROM sio_streams WHERE sid = ?", (sid,)))
    if row is None:
        return 0, False
    last_seq, trimmed = row
    chunk_end = min(last_seq, trimmed + chunk)
    upto = trimmed
    if max_events is not None:
        upto = max(upto, min(chunk_end, last_seq - max_events))
    if max_bytes is not None and upto < chunk_end:
        over = _one(db.execute(_OVER_BYTES, (sid, trimmed, max_bytes)))
        if over is not None:  # the newest event stays, however large
            upto = max(upto, min(chunk_end, over[0], last_seq - 1))
    if max_age is not None and upto < chunk_end:
        kept = _one(
            db.execute(
                "SELECT seq FROM sio_events WHERE sid = ? AND seq > ? AND seq <= ? AND ts >= ? "
                "ORDER BY seq LIMIT 1",
                (sid, upto, chunk_end, now - max_age),
            )
        )
        upto = chunk_end if kept is None else max(upto, kept[0] - 1)
    if upto <= trimmed:
        return 0, False
    db.execute(
        "DELETE FROM sio_event_rooms WHERE (sid, room, seq) IN (SELECT e.sid, j.value, e.seq "
        "FROM sio_events e, json_each(e.rooms) j WHERE e.sid = ? AND e.seq > ? AND e.seq <= ? "
        "AND e.rooms IS NOT NULL)",
        (sid, trimmed, upto),
    )
    db.execute("DELETE FROM sio_events WHERE sid = ? AND seq > ? AND seq <= ?", (sid, trimmed, upto))
    db.execute("UPDATE sio_streams SET trimmed_upto = ? WHERE sid = ?", (upto, sid))
    return upto - trimmed, upto == chunk_end and chunk_end < last_seq


def sweep(db: Db, now: float) -> bool:
    """Delete expired sessions and keys; True if more remain."""
    more = False
    for table in ("sio_sessions", "sio_keys"):
        cursor = db.execute(
            f"DELETE FROM {table} WHERE key IN "
            f"(SELECT key FROM {table} WHERE expires <= ? LIMIT {SWEEP_CHUNK})",
            (now,),
        )
        more = more or cursor.rowcount >= SWEEP_CHUNK
    return more


def save_session(db: Db, now: float, key: str, text: str, ttl: float, lease: float | None) -> None:
    """Upsert the record; ``leased_until`` 0 (claimable) or now + lease, what a leased claim writes."""
    db.execute(
        "INSERT INTO sio_sessions (key, record, expires, leased_until) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET record = excluded.record, "
        "expires = excluded.expires, leased_until = excluded.leased_until",
        (key, text, now + ttl, 0.0 if lease is None else now + lease),
    )


def claim_session(db: Db, now: float, key: str, lease: float | None) -> object:
    """The record's text (deleted, or leased until now + lease), ``None``, or :class:`Busy`.

    One write statement skipping a leased record; a claim that took nothing looks, in the
    same transaction, for a live record left behind: that one is leased (busy).
    """
    params: dict[str, Any] = {"key": key, "now": now}
    if lease is None:
        row = _one(db.execute(_sql.CLAIM_SESSION, params))
    else:
        row = _one(db.execute(_sql.LEASE_SESSION, {**params, "until": now + lease}))
    if row is not None:
        return None if row[1] <= now else str(row[0])  # an expired one was deleted
    held = _one(db.execute(_sql.SESSION_LEASED, params))
    if held is not None:
        return Busy(max(0.0, float(held[0] or now) - now))
    return None


def reserve_key(db: Db, now: float, key: str, lease: float) -> Reservation:
    taken = db.execute(
        "INSERT INTO sio_keys (key, done, expires, result) VALUES (?, 0, ?, NULL) "
        "ON CONFLICT (key) DO UPDATE SET done = 0, expires = excluded.expires, result = NULL "
        "WHERE sio_keys.expires <= ? RETURNING 1",
        (key, now + lease, now),
    ).fetchall()
    if taken:
        return Reservation(KeyState.ACQUIRED)
    done, result = db.execute("SELECT done, result FROM sio_keys WHERE key = ?", (key,)).fetchall()[0]
    if done:
        return Reservation(KeyState.DONE, json.loads(result))
    return Reservation(KeyState.PENDING)


def complete_key(db: Db, now: float, key: str, text: str, ttl: float) -> None:
    db.execute(
        "INSERT INTO sio_keys (key, done, expires, result) VALUES (?, 1, ?, ?) ON CONFLICT (key) "
        "DO UPDATE SET done = 1, expires = excluded.expires, result = excluded.result",
        (key, now + ttl, text),
    )


def release_key(db: Db, now: float, key: str) -> None:
    db.execute("DELETE FROM sio_keys WHERE key = ? AND done = 0", (key,))
