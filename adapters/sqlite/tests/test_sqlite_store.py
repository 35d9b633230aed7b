"""SQLite-specific behaviour: URLs, group commit, indexes, locking and broken files, retention,
session leases and files of the previous version."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio_delivery import Capability, open_store
from socketio_delivery.errors import (
    ConfigurationError,
    InvalidArgumentError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.kit import decode_json, encode_json
from socketio_delivery.testing import (
    assert_json_equal,
    assert_same_events,
    json_values,
    read_all,
    run_workers,
)
from socketio_delivery_sqlite import SQLiteEventStore, SQLiteOptions, _sql

Opener = Callable[..., SQLiteEventStore]


@pytest.fixture
async def opener(tmp_path: Path) -> AsyncIterator[Opener]:
    """``opener(**options)``: a new store on a new file; every store is closed after the test."""
    stores: list[SQLiteEventStore] = []
    counter = itertools.count()

    def make(path: Path | None = None, **options: Any) -> SQLiteEventStore:
        path = path or tmp_path / f"db-{next(counter)}.db"
        store = SQLiteEventStore.from_url(f"sqlite:///{path}", **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


# -- URLs and options -------------------------------------------------------------------------
def test_url_forms_give_the_database_path_and_options(tmp_path: Path) -> None:
    assert SQLiteEventStore.from_url("sqlite:///events.db").database == "events.db"
    assert SQLiteEventStore.from_url("sqlite:///data/events.db").database == "data/events.db"
    assert SQLiteEventStore.from_url(f"sqlite:///{tmp_path}/e.db").database == f"{tmp_path}/e.db"
    assert SQLiteEventStore.from_url("sqlite:////abs/e.db").database == "/abs/e.db"
    store = SQLiteEventStore.from_url("sqlite:///e.db?busy_timeout=0.5&max_events=10", max_batch=7)
    assert store.options == SQLiteOptions(busy_timeout=0.5, max_events=10, max_batch=7)
    memory = SQLiteEventStore.from_url("sqlite://:memory:?retention_interval=none")
    assert memory.database == ":memory:"
    assert memory.options.retention_interval is None


def test_capabilities_durable_and_multi_process_for_files_only() -> None:
    assert SQLiteEventStore.from_url("sqlite:///e.db").capabilities == {
        Capability.DURABLE,
        Capability.MULTI_PROCESS,
    }
    assert SQLiteEventStore.from_url("sqlite://:memory:").capabilities == frozenset()


def test_open_store_finds_the_adapter_through_its_entry_point() -> None:
    assert isinstance(open_store("sqlite:///e.db"), SQLiteEventStore)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("sqlite://", {}),
        ("sqlite://host/e.db", {}),
        ("sqlite:///e.db?nope=1", {}),
        ("sqlite:///e.db", {"busy_timeout": -1}),
        ("sqlite:///e.db", {"synchronous": "sometimes"}),
        ("sqlite:///e.db", {"max_batch": 0}),
        ("sqlite:///e.db", {"retention_interval": 0}),
        ("sqlite:///e.db", {"trim_chunk": 0}),
        ("sqlite:///e.db", {"max_bytes": 0}),
        ("sqlite:///e.db?max_batch=many", {}),
    ],
)
def test_bad_urls_and_options_raise_configuration_error(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteEventStore.from_url(url, **options)


VALID_SQLITE_OPTIONS = (
    "busy_timeout, max_age, max_batch, max_bytes, max_events, retention_interval, synchronous, trim_chunk"
)


@pytest.mark.parametrize(("url", "options"), [("sqlite:///e.db?nope=1", {}), ("sqlite:///e.db", {"nope": 1})])
def test_unknown_option_names_the_valid_ones(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(
        ConfigurationError, match=f"unknown option 'nope'.*valid options: {VALID_SQLITE_OPTIONS}$"
    ):
        SQLiteEventStore.from_url(url, **options)


async def test_memory_database_works_without_a_file() -> None:
    store = SQLiteEventStore.from_url("sqlite://:memory:")
    await store.open()
    try:
        event = await store.persist("s", {"x": 1}, rooms=["r"])
        assert_same_events(await store.fetch_since("s", None, rooms=["r"]), [event])
    finally:
        await store.close()


async def test_file_uses_wal_and_the_tables_it_documents(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = opener(path)
    await store.open()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE name LIKE 'sio_%'")}
    assert names == {
        "sio_meta",
        "sio_streams",
        "sio_events",
        "sio_events_by_seq",
        "sio_events_for_everyone",
        "sio_event_rooms",
        "sio_sessions",
        "sio_sessions_by_expiry",
        "sio_keys",
        "sio_keys_by_expiry",
    }


async def test_stores_opening_one_new_file_at_once_all_open(opener: Opener, tmp_path: Path) -> None:
    # switching a new file to WAL takes an exclusive lock SQLite does not wait for: retried
    for n in range(20):
        stores = [opener(tmp_path / f"new-{n}.db") for _ in range(3)]
        await asyncio.gather(*(store.open() for store in stores))
        assert len({store.epoch for store in stores}) == 1


# -- group commit -------------------------------------------------------------------------------
async def test_concurrent_persists_share_few_transactions(opener: Opener) -> None:
    store = opener()
    await store.open()
    events = await asyncio.gather(*(store.persist("s", {"i": i}) for i in range(200)))
    assert store.writes == 200
    assert store.commits <= 10, f"200 concurrent persists took {store.commits} transactions"
    assert sorted(e.offset for e in events) == [e.offset for e in await read_all(store, "s")]


async def test_max_batch_bounds_the_writes_per_transaction(opener: Opener) -> None:
    store = opener(max_batch=16)
    await store.open()
    await asyncio.gather(*(store.persist("s", i) for i in range(100)))
    assert store.commits >= 100 // 16


async def test_mixed_writes_in_one_batch_each_get_their_answer(opener: Opener) -> None:
    store = opener()
    await store.open()
    await store.save_session("k", {"v": 1}, 30)
    results = await asyncio.gather(
        store.persist("s", 1),
        store.claim_session("k"),
        store.reserve_key("op", 30),
        store.persist("t", 2, rooms=["r"]),
        store.claim_session("k"),
    )
    assert results[1] == {"v": 1}
    assert results[4] is None
    assert results[2].state.value == "acquired"


async def test_a_batch_of_persists_is_one_trip_to_the_connection_thread(opener: Opener) -> None:
    store = opener()
    await store.open()
    trips, commits = store._thread.trips, store.commits
    await asyncio.gather(*(store.persist("s", {"i": i}, rooms=["r"]) for i in range(200)))
    assert store._thread.trips - trips == store.commits - commits  # BEGIN, rows, COMMIT: one trip


async def test_mixed_writes_of_a_batch_are_one_trip_too(opener: Opener) -> None:
    store = opener()
    await store.open()
    trips, commits = store._thread.trips, store.commits
    await asyncio.gather(
        *(store.persist("s", i) for i in range(50)),
        *(store.save_session(f"k{i}", {"i": i}, 30) for i in range(50)),
        *(store.reserve_key(f"op{i}", 30) for i in range(50)),
    )
    assert store._thread.trips - trips == store.commits - commits


async def test_retention_goes_on_after_an_unexpected_exception(opener: Opener) -> None:
    """The background run used to catch StoreError only: any other exception ended it silently."""
    store = opener(retention_interval=0.02)
    calls = 0

    async def flaky_trim(stream: str | None = None) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unexpected")
        return 0

    store.trim = flaky_trim  # type: ignore[method-assign]
    await store.open()
    for _ in range(200):
        if calls >= 3:
            break
        await asyncio.sleep(0.02)
    assert calls >= 3, "retention stopped after the first exception"


async def test_rows_on_disk_hold_compact_json_of_each_event(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    store = opener(path)
    await store.open()
    writes = [
        ("s", {"t": "é\u2028", "n": [1, 2.5, None]}, ["lobby", "ü"], ["sid-1"]),
        ("s", "text", ["lobby", "ü"], []),
        ("t", [1, {"a": True}], [], ["sid-1", "sid-2"]),
        ("s", None, [], []),
        ("s", (1, 2), ("lobby",), ("sid-1",)),
    ]
    events = await asyncio.gather(
        *(store.persist(stream, data, rooms=r, exclude=x) for stream, data, r, x in writes)
    )
    assert store.commits <= 2

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "SELECT s.name, e.seq, e.data, e.rooms, e.exclude FROM sio_events e "
            "JOIN sio_streams s USING (sid) ORDER BY e.id"
        ).fetchall()
        room_rows = raw.execute(
            "SELECT s.name, r.room, r.seq FROM sio_event_rooms r JOIN sio_streams s USING (sid) "
            "ORDER BY s.name, r.seq, r.room"
        ).fetchall()
    written = zip(writes, events, strict=True)
    by_offset = {(stream, e.offset): (data, r, x) for (stream, data, r, x), e in written}
    assert len(rows) == len(writes)
    expected_rooms = []
    for name, seq, data, rooms, exclude in rows:
        value, r, x = by_offset[(name, f"{store.epoch}-{seq:016x}")]
        assert (data, rooms, exclude) == (
            compact(value),
            compact(list(r)) if r else None,
            compact(list(x)) if x else None,
        )
        expected_rooms += [(name, room, seq) for room in r]
    assert room_rows == sorted(expected_rooms, key=lambda row: (row[0], row[2], row[1]))
    for (_, data, r, x), event in zip(writes, events, strict=True):
        assert event.data == json.loads(compact(data))
        assert (event.rooms, event.exclude) == (tuple(r), tuple(x))


@settings(max_examples=300, deadline=None)
@given(json_values | st.tuples(st.floats(), st.text()))
def test_event_json_is_the_json_module_s(value: Any) -> None:
    text = encode_json(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert_json_equal(decode_json(text), json.loads(text))


async def test_circular_event_data_is_refused(opener: Opener) -> None:
    store = opener()
    await store.open()
    data: list[Any] = []
    data.append(data)
    with pytest.raises(InvalidArgumentError):
        await store.persist("s", data)
    with pytest.raises(InvalidArgumentError):
        await store.persist("s", 1, rooms=["r", 2])  # type: ignore[list-item]
    assert await store.persist("s", 1, rooms=["r"])


# -- durability and epochs -----------------------------------------------------------------------
def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def test_recreated_file_gets_a_new_epoch(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "re.db"
    store = opener(path)
    await store.open()
    old = await store.persist("s", 1)
    await store.close()
    _delete_database(path)
    again = opener(path)
    await again.open()
    await again.persist("s", 2)
    with pytest.raises(OffsetUnavailableError):
        await again.fetch_since("s", old.offset)


async def test_offset_beyond_the_newest_event_is_unavailable(opener: Opener) -> None:
    store = opener()
    await store.open()
    event = await store.persist("s", 1)
    future = f"{store.epoch}-{int(event.offset.split('-')[1], 16) + 5:016x}"
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("s", future)


# -- several processes --------------------------------------------------------------------------
async def test_many_processes_and_tasks_lose_nothing_and_get_dense_offsets(opener: Opener) -> None:
    store = opener()
    await store.open()
    url = f"sqlite:///{store.database}"
    job = {"op": "persist", "stream": "s", "tasks": 8, "count": 30}
    results = await run_workers(url, {}, [{**job, "tag": n} for n in range(4)], timeout=120)
    offsets = sorted(offset for per_worker in results for offset in per_worker)
    assert len(offsets) == len(set(offsets)) == 4 * 8 * 30
    assert [e.offset for e in await read_all(store, "s")] == offsets
    assert [int(o.split("-")[1], 16) for o in offsets] == list(range(1, len(offsets) + 1))


# -- indexes ------------------------------------------------------------------------------------
def _plan(path: Path, sql: str, params: Any) -> str:
    with sqlite3.connect(path) as raw:
        return "\n".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_fetch_since_reads_index_ranges_only(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "plan.db"
    store = opener(path)
    await store.open()
    for i in range(50):
        await store.persist("s", i, rooms=[f"r{i % 5}"] if i % 2 else ())
    base = {"sid": 1, "after": 0, "limit": 10}
    plain = _plan(path, _sql.fetch_sql(None), base)
    assert "USING INDEX sio_events_by_seq (sid=? AND seq>?)" in plain
    assert "TEMP B-TREE" not in plain
    rooms = _plan(path, _sql.fetch_sql(2), {**base, "r0": "r1", "r1": "r3"})
    assert "INDEX sio_events_for_everyone (sid=? AND seq>?)" in rooms
    assert "INDEX sio_events_by_seq (sid=? AND seq=?)" in rooms
    assert rooms.count("USING PRIMARY KEY (sid=? AND room=? AND seq>?)") == 2
    assert "SCAN sio_events" not in rooms.replace("SCAN sio_events_", "")
    many = _plan(path, _sql.fetch_sql(_sql.ROOM_BRANCHES + 1), {**base, "rooms": '["a"]'})
    assert "USING PRIMARY KEY (sid=? AND room=? AND seq>?)" in many
    assert "SCAN sio_event_rooms" not in many


async def test_many_wanted_rooms_filter_like_few(opener: Opener) -> None:
    store = opener()
    await store.open()
    events = [await store.persist("s", i, rooms=[f"r{i}"] if i % 3 else ()) for i in range(30)]
    wanted = [f"r{i}" for i in range(0, 30, 2)] + [f"other{i}" for i in range(_sql.ROOM_BRANCHES)]
    expected = [e for e in events if not e.rooms or e.rooms[0] in wanted]
    assert_same_events(await read_all(store, "s", rooms=wanted, limit=4), expected)


# -- failures -------------------------------------------------------------------------------------
async def test_write_lock_held_elsewhere_fails_the_whole_batch_and_loses_nothing(
    opener: Opener, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    store = opener(path, busy_timeout=0.2)
    await store.open()
    kept = await store.persist("s", "kept")
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        results = await asyncio.gather(*(store.persist("s", i) for i in range(20)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
        assert all(isinstance(r.__cause__, sqlite3.OperationalError) for r in results)
        assert_same_events(await store.fetch_since("s", None), [kept])  # reads still work (WAL)
        raw.execute("ROLLBACK")
    finally:
        raw.close()
    after = await store.persist("s", "after")
    assert_same_events(await read_all(store, "s"), [kept, after])


async def test_writes_fail_within_busy_timeout_while_another_process_holds_the_lock(
    opener: Opener, tmp_path: Path
) -> None:
    path = tmp_path / "bounded.db"
    store = opener(path, busy_timeout=0.3)
    await store.open()
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        for call in (lambda: store.persist("s", 1), lambda: store.claim_session("pid")):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError):
                await asyncio.wait_for(call(), 10)
            assert time.monotonic() - started < 0.3 + 1.5
    finally:
        raw.close()


async def test_unopenable_path_raises_store_unavailable(tmp_path: Path) -> None:
    for path in (tmp_path / "missing-dir" / "e.db", tmp_path):
        store = SQLiteEventStore.from_url(f"sqlite:///{path}")
        with pytest.raises(StoreUnavailableError) as info:
            await store.open()
        assert isinstance(info.value.__cause__, sqlite3.Error)
        with pytest.raises(StoreUnavailableError):
            await store.persist("s", 1)


async def test_corrupt_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    store = SQLiteEventStore.from_url(f"sqlite:///{path}")
    with pytest.raises(StoreError) as info:
        await store.open()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def _open_and_write(store: SQLiteEventStore) -> None:
    await store.open()
    await store.persist("s", 2)


async def test_read_only_file_raises_store_error(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    store = opener(path)
    await store.open()
    await store.persist("s", 1)
    await store.close()
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    path.chmod(0o444)
    ro = SQLiteEventStore.from_url(f"sqlite:///{path}")
    try:
        with pytest.raises(StoreError):
            await _open_and_write(ro)
    finally:
        await ro.close()
        path.chmod(0o644)


async def test_operations_after_close_raise_store_unavailable(opener: Opener) -> None:
    store = opener()
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailableError):
        await store.persist("s", 1)
    with pytest.raises(StoreUnavailableError):
        await store.fetch_since("s", None)
    await store.open()  # and it opens again
    assert len(await store.fetch_since("s", None)) == 0


# -- retention ------------------------------------------------------------------------------------
async def test_trim_deletes_in_chunks_and_drops_room_rows(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "chunks.db"
    store = opener(path, max_events=5, max_age=None, trim_chunk=7, retention_interval=None)
    await store.open()
    events = [await store.persist("s", i, rooms=["a", "b"] if i % 2 else ()) for i in range(100)]
    commits = store.commits
    assert await store.trim("s") == 95
    assert store.commits - commits >= 95 // 7
    assert_same_events(await read_all(store, "s"), events[95:])
    assert_same_events(await read_all(store, "s", rooms=["a"]), events[95:])
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM sio_event_rooms").fetchone()[0] == 3 * 2  # 95, 97, 99
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("s", events[50].offset)


async def test_max_bytes_keeps_the_newest_payloads_within_the_bound(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "bytes.db"
    store = opener(path, max_bytes=250, max_events=None, max_age=None, retention_interval=None, trim_chunk=3)
    await store.open()
    events = [await store.persist("s", "é" * 49, rooms=["r"]) for _ in range(10)]  # 100 bytes each
    assert await store.trim("s") == 8
    assert_same_events(await read_all(store, "s"), events[8:])
    assert_same_events(await read_all(store, "s", rooms=["r"]), events[8:])
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("s", events[0].offset)
    big = await store.persist("s", "y" * 1000)  # over the bound alone: the newest stays
    await store.trim()
    assert_same_events(await read_all(store, "s"), [big])
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM sio_event_rooms").fetchone()[0] == 0


async def test_retention_runs_in_the_background(opener: Opener) -> None:
    store = opener(max_events=10, max_age=None, retention_interval=0.05)
    await store.open()
    for i in range(300):
        await store.persist("s", i)
    for _ in range(400):
        if len(await read_all(store, "s")) == 10:
            break
        await asyncio.sleep(0.02)
    assert [e.data for e in await read_all(store, "s")] == list(range(290, 300))


async def test_expired_sessions_and_keys_are_swept(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    store = opener(path, retention_interval=None)
    await store.open()
    await store.save_session("gone", {}, 0.05)
    await store.save_session("kept", {}, 60)
    await store.reserve_key("gone", 0.05)
    await store.reserve_key("kept", 60)
    await asyncio.sleep(0.1)
    await store.sweep()
    with sqlite3.connect(path) as raw:
        assert [r[0] for r in raw.execute("SELECT key FROM sio_sessions")] == ["kept"]
        assert [r[0] for r in raw.execute("SELECT key FROM sio_keys")] == ["kept"]


# -- session leases and files of the previous version ---------------------------------------------
#: ``sio_sessions`` as the first release created it, before ``leased_until``.
_V1_SESSIONS = """
CREATE TABLE sio_sessions (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
"""


def _make_v1_file(path: Path, sessions: dict[str, Any]) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode = WAL")  # as the previous version left its files
        raw.executescript(_V1_SESSIONS)
        raw.executescript(_sql.SCHEMA)  # the other tables: unchanged since the first release
        raw.executemany(
            "INSERT INTO sio_sessions (key, record, expires) VALUES (?, ?, ?)",
            [(key, json.dumps(record), time.time() + 600) for key, record in sessions.items()],
        )
    raw.close()


def _columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as raw:
        columns = [row[1] for row in raw.execute(f"PRAGMA table_info({table})")]
    raw.close()
    return columns


async def test_file_of_the_previous_version_gains_leases_on_open(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _make_v1_file(path, {"a": {"n": 1}, "b": {"n": 2}})
    first, second = opener(path), opener(path)
    await asyncio.gather(first.open(), second.open())  # two connections migrate at once
    assert _columns(path, "sio_sessions") == ["key", "record", "expires", "leased_until"]
    assert first.epoch == second.epoch
    assert await first.claim_session("a", lease=60) == {"n": 1}
    with pytest.raises(SessionBusyError):
        await second.claim_session("a")
    assert await second.claim_session("b") == {"n": 2}
    await first.close()
    await first.open()  # opening a migrated file again changes nothing
    assert _columns(path, "sio_sessions") == ["key", "record", "expires", "leased_until"]
    with pytest.raises(SessionBusyError):
        await first.claim_session("a", lease=60)  # the lease survived the reopen
    await second.save_session("a", {"n": 3}, 60)
    assert await first.claim_session("a") == {"n": 3}


async def test_a_leased_save_sets_leased_until_in_its_upsert(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "leased-save.db"
    _make_v1_file(path, {"a": {"n": 1}})  # an old row, replaced by a leased save
    store, other = opener(path), opener(path)
    await store.open()
    await other.open()
    before = time.time()
    await asyncio.gather(
        store.save_session("a", {"n": 2}, 60, lease=30), store.save_session("b", {"n": 3}, 60, lease=30)
    )
    with sqlite3.connect(path) as raw:
        rows = dict(raw.execute("SELECT key, leased_until - expires FROM sio_sessions").fetchall())
        leased = [r[0] for r in raw.execute("SELECT leased_until FROM sio_sessions")]
    raw.close()
    assert all(before + 30 <= until <= time.time() + 30 for until in leased)
    assert rows == pytest.approx({"a": -30.0, "b": -30.0}), "one clock reading for ttl and lease"
    for key in ("a", "b"):
        with pytest.raises(SessionBusyError):
            await other.claim_session(key)
    await store.save_session("a", {"n": 4}, 60)
    assert await other.claim_session("a") == {"n": 4}


async def test_processes_racing_to_migrate_an_old_file_then_to_lease_have_one_winner(
    opener: Opener, tmp_path: Path
) -> None:
    path = tmp_path / "v1-race.db"
    keys = [f"k{i}" for i in range(10)]
    _make_v1_file(path, {key: {"key": key} for key in keys})
    results = await run_workers(
        f"sqlite:///{path}", {}, [{"op": "claim", "keys": keys, "lease": 60}] * 4, timeout=120
    )
    for n, key in enumerate(keys):
        assert sorted(map(str, (per_worker[n] for per_worker in results))) == sorted(
            map(str, [{"key": key}, "busy", "busy", "busy"])
        ), key
    assert _columns(path, "sio_sessions") == ["key", "record", "expires", "leased_until"]


async def test_claims_of_one_key_in_one_batch_leave_one_winner(opener: Opener) -> None:
    store = opener()
    await store.open()
    await store.save_session("k", {"v": 1}, 60)
    commits = store.commits

    async def claim(lease: float | None) -> Any:
        try:
            return await store.claim_session("k", lease=lease)
        except SessionBusyError:
            return "busy"

    got = await asyncio.gather(claim(60), claim(None), claim(60), store.persist("s", 1))
    assert store.commits == commits + 1  # one transaction, and a busy claim did not fail it
    assert got[:3] == [{"v": 1}, "busy", "busy"]
    assert got[3].data == 1


async def test_a_column_another_process_added_first_counts_as_migrated(
    opener: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raced.db"
    await opener(path).open()  # leased_until exists; the look-up below is for a column that does not
    alter = "ALTER TABLE sio_sessions ADD COLUMN leased_until REAL NOT NULL DEFAULT 0"
    monkeypatch.setattr(_sql, "MIGRATIONS", (("sio_sessions", "not_there", alter),))
    store = opener(path)
    await store.open()  # the ALTER fails with "duplicate column name": as if a racer won
    await store.save_session("k", {"v": 1}, 60)
    assert await store.claim_session("k") == {"v": 1}
