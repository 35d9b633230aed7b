"""The adapter kit: offsets, options, driver errors, the group-commit writer, the retention loop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from socketio_delivery import KeyState, Reservation
from socketio_delivery.config import build_options, parse_url
from socketio_delivery.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.kit import (
    KEEP,
    MAX_COUNTER,
    AdapterOptions,
    ConnectionThread,
    DriverErrors,
    GroupCommitWriter,
    MaintenanceLoop,
    OffsetCodec,
    Persist,
    Record,
    RecordStore,
    check_fetch,
    decode_json,
    encode_json,
    prepare_persist,
    prepare_session,
    wrap_driver_errors,
)

SQLITE = DriverErrors("SQLite", (sqlite3.Error,), unavailable=(sqlite3.OperationalError,))


# -- offsets ----------------------------------------------------------------------------------
def test_offsets_round_trip_and_sort_as_strings() -> None:
    codec = OffsetCodec("test")
    epoch = codec.new_epoch()
    offsets = [codec.format(epoch, n) for n in (0, 1, 9, 10, 255, 2**40, MAX_COUNTER)]
    assert offsets == sorted(offsets)
    assert [codec.parse(o) for o in offsets] == [
        (epoch, (n,)) for n in (0, 1, 9, 10, 255, 2**40, MAX_COUNTER)
    ]
    assert codec.start(epoch) == f"{epoch}-{0:016x}"


def test_offsets_with_several_counters() -> None:
    codec = OffsetCodec("redis", (16, 16))
    assert codec.format("0badcafe", 5, 7) == "0badcafe-0000000000000005-0000000000000007"
    assert codec.position("0badcafe-0000000000000005-0000000000000007", "0badcafe") == (5, 7)


@pytest.mark.parametrize(
    "bad",
    [
        "0badcafe-0000000000000001x",  # trailing junk: the pattern is anchored
        "x0badcafe-0000000000000001",
        "0badcafe-0000000000000001\n",
        "0BADCAFE-0000000000000001",
        "0badcafe-000000000000001",  # too short
        "0badcafe-00000000000000001",  # 2**64 width
        "0badcafe-8000000000000000",  # 2**63
        "0badcafe-ffffffffffffffff",  # 2**64 - 1
        "0badcafe-000000000000000\u0661",  # a non-ASCII digit
        "",
        None,
        5,
    ],
)
def test_malformed_offsets_are_invalid(bad: Any) -> None:
    with pytest.raises(InvalidOffsetError):
        OffsetCodec("test").parse(bad)


def test_offset_of_another_epoch_is_unavailable() -> None:
    with pytest.raises(OffsetUnavailableError):
        OffsetCodec("test").position("0badcafe-0000000000000001", "deadbeef")


def test_check_refuses_trimmed_and_ahead_positions() -> None:
    OffsetCodec.check("o", (5,), first=(5,), last=(9,))
    OffsetCodec.check("o", (9,), first=(5,), last=(9,))
    with pytest.raises(OffsetUnavailableError, match="retention"):
        OffsetCodec.check("o", (4,), first=(5,), last=(9,))
    with pytest.raises(OffsetUnavailableError, match="ahead"):
        OffsetCodec.check("o", (10,), first=(5,), last=(9,))


# -- options ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options(AdapterOptions):
    journal: str = "wal"


def test_options_come_from_the_url_and_keywords() -> None:
    options = build_options(
        _Options, parse_url("acme:///e.db?max_batch=50&retention_interval=none"), {"trim_chunk": 2}
    )
    assert (options.max_batch, options.retention_interval, options.trim_chunk) == (50, None, 2)


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"valid options: .*max_batch.*trim_chunk"):
        build_options(_Options, parse_url("acme:///e.db?max_bach=5"), {})


@pytest.mark.parametrize(
    "bad",
    [
        {"max_batch": 0},
        {"max_batch": True},
        {"trim_chunk": 0},
        {"retention_interval": 0},
        {"retention_interval": -1},
    ],
)
def test_option_values_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        build_options(_Options, None, bad)


# -- JSON ---------------------------------------------------------------------------------------
def test_encode_json_is_compact_and_refuses_non_json() -> None:
    assert encode_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(InvalidArgumentError, match="event data"):
        encode_json({1j}, "event data")
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidArgumentError):
        encode_json(loop)
    assert decode_json(encode_json((1, 2)), (1, 2)) == [1, 2]
    assert decode_json("5", 5) == 5


# -- driver errors ------------------------------------------------------------------------------
def test_wrap_driver_errors_maps_and_chains() -> None:
    with pytest.raises(StoreUnavailableError) as unavailable, wrap_driver_errors(SQLITE, "fetch_since"):
        raise sqlite3.OperationalError("database is locked")
    assert isinstance(unavailable.value.__cause__, sqlite3.OperationalError)
    assert "SQLite fetch_since failed" in str(unavailable.value)
    with pytest.raises(StoreError) as other, wrap_driver_errors(SQLITE, "persist"):
        raise sqlite3.IntegrityError("x")
    assert type(other.value) is StoreError
    with pytest.raises(StoreUnavailableError), wrap_driver_errors(SQLITE, "persist"):
        raise asyncio.TimeoutError
    with pytest.raises(KeyError), wrap_driver_errors(SQLITE, "persist"):  # a bug stays visible
        raise KeyError("x")
    with pytest.raises(OffsetUnavailableError), wrap_driver_errors(SQLITE, "persist"):  # ours pass
        raise OffsetUnavailableError("x")


def test_unavailable_may_be_decided_by_a_function() -> None:
    driver = DriverErrors("X", (ValueError,), unavailable=lambda exc: "closed" in str(exc))
    assert type(driver.error(ValueError("closed"), "x")) is StoreUnavailableError
    assert type(driver.error(ValueError("bad"), "x")) is StoreError


# -- group commit -------------------------------------------------------------------------------
def test_writer_batches_concurrent_submits() -> None:
    batches: list[int] = []

    async def write(ops: list[Persist]) -> None:
        batches.append(len(ops))
        for op in ops:
            op.future.set_result(op.data)

    async def main() -> list[Any]:
        writer: GroupCommitWriter[Persist] = GroupCommitWriter(write, max_batch=4, driver=SQLITE)
        with pytest.raises(StoreUnavailableError):
            writer.submit(prepare_persist("s", 0, (), ()))
        writer.start()
        results = await asyncio.gather(*(writer.submit(prepare_persist("s", i, (), ())) for i in range(10)))
        await writer.stop()
        await writer.stop()
        return results

    assert asyncio.run(main()) == list(range(10))
    assert batches == [4, 4, 2]


def test_writer_fails_a_broken_batch_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def write(ops: list[Persist]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug")
        for op in ops:
            op.future.set_result("ok")

    async def main() -> tuple[BaseException | None, str]:
        writer: GroupCommitWriter[Persist] = GroupCommitWriter(write, max_batch=100, driver=SQLITE)
        writer.start()
        first = writer.submit(prepare_persist("s", 1, (), ()))
        await asyncio.gather(first, return_exceptions=True)
        second = await writer.submit(prepare_persist("s", 2, (), ()))
        await writer.stop()
        return first.exception(), second

    error, second = asyncio.run(main())
    assert isinstance(error, StoreError)
    assert isinstance(error.__cause__, RuntimeError)
    assert second == "ok"
    assert "batch failed" in caplog.text


def test_writer_cancelled_fails_every_waiting_call() -> None:
    async def write(ops: list[Persist]) -> None:
        await asyncio.sleep(10)

    async def main() -> list[Any]:
        writer: GroupCommitWriter[Persist] = GroupCommitWriter(write, max_batch=1, driver=SQLITE)
        writer.start()
        futures = [writer.submit(prepare_persist("s", i, (), ())) for i in range(3)]
        await asyncio.sleep(0.01)
        assert writer._task is not None
        writer._task.cancel()
        return await asyncio.gather(*futures, return_exceptions=True)

    assert all(isinstance(r, StoreUnavailableError) for r in asyncio.run(main()))


def test_prepare_persist_checks_arguments() -> None:
    async def main() -> None:
        with pytest.raises(InvalidArgumentError):
            prepare_persist("", 1, (), ())
        with pytest.raises(InvalidArgumentError):
            prepare_persist("s", 1, "room", ())
        with pytest.raises(InvalidArgumentError):
            prepare_persist("s", 1, (), [None])
        with pytest.raises(InvalidArgumentError):
            prepare_persist("s", object(), (), ())
        op = prepare_persist("s", (1, "a"), ["r"], {"x"})
        assert (op.data, op.text, op.rooms, op.exclude) == ([1, "a"], '[1,"a"]', ("r",), ("x",))

    asyncio.run(main())


# -- maintenance --------------------------------------------------------------------------------
def test_maintenance_goes_on_after_any_exception(caplog: pytest.LogCaptureFixture) -> None:
    """Not only StoreError: a KeyError once must not end retention (it did on SQLite)."""
    calls = 0

    async def run() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("surprise")
        if calls == 2:
            raise StoreError("down")

    async def main() -> None:
        loop = MaintenanceLoop(run, interval=0.01, logger=logging.getLogger("test.kit"))
        loop.start()
        for _ in range(200):
            if calls >= 4:
                break
            await asyncio.sleep(0.01)
        await loop.stop()
        await loop.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert calls >= 4
    assert "surprise" in caplog.text
    assert "down" in caplog.text


def test_maintenance_runs_early_when_due() -> None:
    ran = asyncio.Event

    async def main() -> int:
        count = 0
        done = ran()

        async def run() -> None:
            nonlocal count
            count += 1
            done.set()

        loop = MaintenanceLoop(run, interval=3600)
        loop.start()
        loop.due()
        await asyncio.wait_for(done.wait(), 5)
        await loop.stop()
        return count

    assert asyncio.run(main()) == 1


def test_maintenance_without_interval_starts_nothing() -> None:
    async def main() -> None:
        async def run() -> None:
            raise AssertionError("not called")

        loop = MaintenanceLoop(run, interval=None)
        loop.start()
        loop.due()
        await asyncio.sleep(0.01)
        await loop.stop()

    asyncio.run(main())


# -- records: sessions and keys on one primitive -------------------------------------------------
class _DictRecords(RecordStore):
    """The smallest RecordStore: a dict (atomic: nothing awaits inside update_record)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record] = {}

    async def update_record(self, kind: str, key: str, change: Any) -> Any:
        new, answer = change(self.records.get((kind, key)), time.time())
        if new is None:
            self.records.pop((kind, key), None)
        elif new is not KEEP:
            self.records[(kind, key)] = new
        return answer


def test_record_store_gives_sessions_with_leases_and_keys() -> None:
    async def main() -> None:
        store = _DictRecords()
        assert len(store.generate_id()) >= 22
        await store.save_session("s", {"a": 1}, 30)
        assert await store.claim_session("s", lease=30) == {"a": 1}
        with pytest.raises(SessionBusyError):
            await store.claim_session("s")
        await store.save_session("s", {"a": 2}, 30)  # ends the lease
        assert await store.claim_session("s") == {"a": 2}
        assert await store.claim_session("s") is None
        await store.save_session("t", {}, 30, lease=30)
        with pytest.raises(SessionBusyError):
            await store.claim_session("t")
        await store.save_session("old", {}, 0.01)
        await asyncio.sleep(0.02)
        assert await store.claim_session("old") is None
        assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED
        assert (await store.reserve_key("k", 30)).state is KeyState.PENDING
        await store.release_key("k")
        assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED
        await store.complete_key("k", [1], 30)
        await store.release_key("k")  # a completed key stays
        assert await store.reserve_key("k", 30) == Reservation(KeyState.DONE, [1])
        with pytest.raises(InvalidArgumentError):
            await store.save_session("s", [], 30)  # type: ignore[arg-type]

    asyncio.run(main())


def test_check_fetch_and_prepare_session() -> None:
    assert check_fetch("s", None, 10) is None
    assert check_fetch("s", ["a", "b", "a"], 10) == ["a", "b"]
    with pytest.raises(InvalidArgumentError):
        check_fetch("s", None, 0)
    assert prepare_session("k", {"a": 1}, 5, None) == ('{"a":1}', 5.0, None)
    with pytest.raises(InvalidArgumentError):
        prepare_session("k", {}, 5, 0)


# -- a connection on its own thread ----------------------------------------------------------------
def test_connection_thread_runs_transactions_and_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def main() -> list[Any]:
        db: ConnectionThread[sqlite3.Connection] = ConnectionThread()
        with pytest.raises(StoreUnavailableError):
            await db.run(lambda conn: None)
        await db.open(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
        await db.open(lambda: pytest.fail("open twice"))
        await db.run(lambda conn: conn.execute("CREATE TABLE t (x)"))
        await db.transaction(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))

        def fails(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            await db.transaction(fails)
        rows = await db.run(lambda conn: conn.execute("SELECT x FROM t").fetchall())
        assert db.trips == 4  # create, insert, the failed insert, select
        await db.close(lambda conn: conn.execute("PRAGMA optimize"))
        await db.close()
        return rows

    assert asyncio.run(main()) == [(1,)]
