"""MongoDB-specific behaviour: URLs, client objects, indexes, ordering races, retention, failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mongo_server import MongoServer
from pymongo import AsyncMongoClient
from socketio_delivery import Capability, open_store
from socketio_delivery.errors import (
    ConfigurationError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreUnavailableError,
)
from socketio_delivery.testing import StreamReader, assert_same_events, read_all
from socketio_delivery_mongodb import MongoEventStore, MongoOptions
from socketio_delivery_mongodb._options import read_url

Opener = Callable[..., MongoEventStore]


@pytest.fixture
async def opener(mongo_url: str) -> AsyncIterator[Opener]:
    """``opener(url=None, **options)``: a store on the test's database; all closed after the test."""
    stores: list[MongoEventStore] = []

    def make(url: str | None = None, **options: Any) -> MongoEventStore:
        store = MongoEventStore.from_url(url or mongo_url, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


# -- URLs and options (no server) -----------------------------------------------------------------
def test_url_forms_give_the_uri_the_database_and_the_options() -> None:
    plain = read_url("mongodb://localhost/chat", {})
    assert (plain.uri, plain.database, plain.options) == ("mongodb://localhost/chat", "chat", MongoOptions())
    assert read_url("mongodb://localhost:27017", {}).database == "socketio_delivery"
    assert read_url("mongodb://localhost/", {}).database == "socketio_delivery"
    hosts = read_url(
        "mongodb://u:p%40ss@h1:27017,h2:27018/chat?replicaSet=rs0&max_age=60&prefix=app_&w=majority",
        {"max_batch": "7"},
    )
    assert hosts.database == "chat"
    assert hosts.uri == "mongodb://u:p%40ss@h1:27017,h2:27018/chat?replicaSet=rs0&w=majority"
    assert hosts.options == MongoOptions(max_age=60.0, prefix="app_", max_batch=7)
    srv = read_url("mongodb+srv://cluster0.example.net/chat?retryWrites=true&max_events=none", {})
    assert srv.uri == "mongodb+srv://cluster0.example.net/chat?retryWrites=true"
    assert srv.options.max_events is None
    none = read_url("mongodb://h/db?retention_interval=none&purge_delay=0", {})
    assert none.options.retention_interval is None
    assert none.options.purge_delay == 0


def test_open_store_finds_both_schemes_through_the_entry_points() -> None:
    for url in ("mongodb://localhost/chat", "mongodb+srv://cluster0.example.net/chat"):
        store = open_store(url, max_events=10)
        assert isinstance(store, MongoEventStore)
        assert store.options.max_events == 10
        assert store.capabilities == {Capability.DURABLE, Capability.MULTI_PROCESS}


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("mongodb://h/chat?bogusOption=1", {}),  # neither ours nor MongoDB's
        ("mongodb://h/chat?maxPoolSize=lots", {}),
        ("mongodb://h/chat?max_events=0", {}),
        ("mongodb://h/chat?prefix=a-b", {}),
        ("mongodb://h/chat", {"purge_delay": -1}),
        ("mongodb://h/chat", {"bogus": 1}),
        ("mongodb://h/bad.name", {}),
        ("mongodb:///chat", {}),
        ("mongodb+srv://h1,h2/chat", {}),
        ("mongodb+srv://h:27017/chat", {}),
        ("redis://h/0", {}),
    ],
)
def test_bad_urls_and_options_raise_configuration_error(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        MongoEventStore.from_url(url, **options)


VALID_MONGO_OPTIONS = "max_age, max_batch, max_events, prefix, purge_delay, retention_interval, trim_chunk"


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=f"unknown option 'bogus'.*valid options: {VALID_MONGO_OPTIONS}$"
    ):
        MongoEventStore.from_url("mongodb://h/chat", bogus=1)
    # in the query string it may be a MongoDB connection option: PyMongo's hint and ours
    with pytest.raises(
        ConfigurationError, match=f"Unknown option.*store options: {VALID_MONGO_OPTIONS};"
    ) as info:
        MongoEventStore.from_url("mongodb://h/chat?bogusOption=1&maxPoolSize=5")
    assert "MongoDB connection options" in str(info.value)
    target = read_url("mongodb://h/chat?maxPoolSize=5&max_events=3", {})  # MongoDB's options still pass
    assert (target.uri, target.options.max_events) == ("mongodb://h/chat?maxPoolSize=5", 3)


def test_objects_that_are_not_async_mongo_clients_are_refused() -> None:
    import pymongo

    with pytest.raises(ConfigurationError):
        MongoEventStore(None)
    sync_client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(connect=False)
    try:
        with pytest.raises(ConfigurationError, match="asyncio client"):
            MongoEventStore(sync_client)
        with pytest.raises(ConfigurationError, match="asyncio client"):
            MongoEventStore(sync_client["db"])
    finally:
        sync_client.close()


# -- client objects -----------------------------------------------------------------------------------


@pytest.mark.mongodb
@pytest.mark.parametrize("kind", ["pymongo-client", "pymongo-database", "motor-client", "motor-database"])
async def test_a_client_or_database_the_app_has_is_used_and_left_open(
    mongo_server: MongoServer, kind: str
) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    name = f"t_{uuid.uuid4().hex[:12]}"
    client: Any = (AsyncIOMotorClient if kind.startswith("motor") else AsyncMongoClient)(mongo_server.url)
    try:
        if kind.endswith("database"):
            store = MongoEventStore(client[name], max_events=100)
        else:
            store = MongoEventStore(client, database=name, max_events=100)
        await store.open()
        assert store.options.max_events == 100
        events = [await store.persist("/chat", {"i": i}, rooms=["r"] if i % 2 else ()) for i in range(4)]
        assert_same_events(await read_all(store, "/chat", rooms=["r"], limit=2), events)
        await store.save_session("pid", {"sid": "a"}, 30)
        assert await store.claim_session("pid", lease=30) == {"sid": "a"}
        with pytest.raises(SessionBusyError):
            await store.claim_session("pid")
        await store.save_session("pid", {"sid": "b"}, 30)
        assert await store.claim_session("pid") == {"sid": "b"}
        assert await store.claim_session("pid") is None
        await store.close()
        assert await client[name]["sio_events"].count_documents({}) == 4, "the client still works"
    finally:
        result = client.close()
        if asyncio.iscoroutine(result):
            await result


@pytest.mark.mongodb
async def test_own_client_journals_writes_unless_the_url_sets_a_write_concern(
    opener: Opener, mongo_url: str
) -> None:
    plain = opener()
    await plain.open()
    assert plain.database.write_concern.document == {"j": True}
    chosen = opener(f"{mongo_url}?w=majority")
    await chosen.open()
    assert chosen.database.write_concern.document == {"w": "majority"}


@pytest.mark.mongodb
async def test_client_default_database_is_used_when_none_is_given(mongo_server: MongoServer) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(f"{mongo_server.url}/{name}")
    try:
        store = MongoEventStore(client)
        await store.open()
        await store.persist("s", 1)
        assert store.database.name == name
        await store.close()
    finally:
        await client.close()


# -- collections and indexes ------------------------------------------------------------------------
@pytest.mark.mongodb
async def test_open_creates_the_documented_collections_and_indexes_idempotently(opener: Opener) -> None:
    store = opener(prefix="app_")
    await store.open()
    await store.close()
    await store.open()  # again: create_indexes is idempotent
    again = opener(prefix="app_")
    await again.open()
    db = store.database
    events = await db["app_events"].index_information()
    assert events["by_seq"]["key"] == [("s", 1), ("q", 1)]
    assert events["by_seq"]["unique"] is True
    assert events["by_room"]["key"] == [("s", 1), ("r", 1), ("q", 1)]
    assert events["expiry"]["expireAfterSeconds"] == 0
    for name in ("app_sessions", "app_keys"):
        info = await db[name].index_information()
        assert info["expiry"]["key"] == [("exp", 1)]
        assert info["expiry"]["expireAfterSeconds"] == 0
    await store.persist("s", 1)
    assert set(await db.list_collection_names()) >= {"app_events", "app_streams", "app_sessions", "app_keys"}


@pytest.mark.mongodb
async def test_fetch_since_queries_use_the_indexes(opener: Opener) -> None:
    store = opener()
    await store.open()
    for i in range(30):
        await store.persist("s", i, rooms=[f"r{i % 3}"] if i % 2 else ())
    events = store.database["sio_events"]
    page = {"s": "s", "q": {"$gt": 3, "$lte": 30}}
    shapes = [
        (page, "by_seq"),
        ({**page, "r": None}, "by_room"),
        ({**page, "r": {"$in": ["r1"]}}, "by_room"),
        ({**page, "r": {"$in": ["r0", "r1", "r2"]}}, "by_room"),
    ]
    for query, index in shapes:  # the shapes fetch_since sends
        explained = await events.find(query).sort("q", 1).limit(5).hint(index).explain()
        plan = str(explained["queryPlanner"]["winningPlan"])
        assert f"'indexName': '{index}'" in plan, plan
        assert "COLLSCAN" not in plan, plan


# -- group commit ------------------------------------------------------------------------------------------
@pytest.mark.mongodb
async def test_concurrent_persists_share_insert_round_trips(opener: Opener) -> None:
    store = opener()
    await store.open()
    events = await asyncio.gather(*(store.persist("s", i) for i in range(200)))
    assert store.writes == 200
    assert store.batches < 50, f"{store.batches} insert_many calls for 200 concurrent persists"
    assert [e.offset for e in await read_all(store, "s")] == sorted(e.offset for e in events)


@pytest.mark.mongodb
async def test_max_batch_bounds_the_events_per_insert(opener: Opener) -> None:
    store = opener(max_batch=7)
    await store.open()
    await asyncio.gather(*(store.persist("s", i) for i in range(50)))
    assert store.batches >= 50 // 7


# -- ordering: the gap problem ------------------------------------------------------------------------------
@pytest.mark.mongodb
async def test_writer_with_a_stale_next_number_loses_the_race_and_retries_above(opener: Opener) -> None:
    one, two = opener(), opener()
    await one.open()
    await two.open()
    first = [await one.persist("s", f"one-{i}") for i in range(3)]  # `one` now expects seq 4 next
    middle = [await two.persist("s", f"two-{i}") for i in range(3)]  # takes 4, 5, 6
    last = await one.persist("s", "one-late")
    assert one.conflicts >= 1, "the stale insert hit the unique (stream, seq) index"
    assert last.offset > middle[-1].offset
    assert_same_events(await read_all(two, "s"), [*first, *middle, last])
    seqs = [int(e.offset.split("-")[1], 16) for e in await read_all(one, "s")]
    assert seqs == list(range(1, 8)), "dense, no gap"


@pytest.mark.mongodb
async def test_events_inserted_but_not_published_stay_invisible_then_appear_in_order(
    opener: Opener,
) -> None:
    store = opener()
    await store.open()
    seen = [await store.persist("s", i) for i in range(3)]
    # A writer that died after its insert, before raising the stream's head:
    await store.database["sio_events"].insert_one({"s": "s", "q": 4, "t": 0.0, "d": '"orphan"'})
    assert await store.fetch_since("s", seen[-1].offset) == [], "not past the published head"
    later = await store.persist("s", "later")
    got = await store.fetch_since("s", seen[-1].offset)
    assert [e.data for e in got] == ["orphan", "later"]
    assert got[-1].offset == later.offset
    assert got[0].offset < later.offset


@pytest.mark.mongodb
async def test_batch_that_hits_a_taken_number_midway_keeps_its_head_and_retries_the_rest(
    opener: Opener,
) -> None:
    store = opener()
    await store.open()
    seen = [await store.persist("s", i) for i in range(3)]
    # Seq 5 taken by someone else (as a racing writer would, once 4 is in): the batch 4, 5, 6
    # keeps 4, loses 5, and writes the rest above.
    await store.database["sio_events"].insert_one({"s": "s", "q": 5, "t": 0.0, "d": '"other"'})
    mine = await asyncio.gather(*(store.persist("s", f"mine-{i}") for i in range(3)))
    got = await store.fetch_since("s", seen[-1].offset)
    assert [e.data for e in got] == ["mine-0", "other", "mine-1", "mine-2"]
    assert [e.offset for e in got if e.data != "other"] == [e.offset for e in mine]
    assert [int(e.offset.split("-")[1], 16) for e in got] == [4, 5, 6, 7]


@pytest.mark.mongodb
async def test_racing_store_objects_lose_nothing_and_a_reader_sees_no_late_arrival(
    opener: Opener,
) -> None:
    """Four store objects (four writer tasks, four connection pools: the same race as four
    processes, without the process start-up) write one stream while a fifth reads it."""
    writers = [opener() for _ in range(4)]
    reader_store = opener()
    for store in [*writers, reader_store]:
        await store.open()
    persisted: list[str] = []

    async def write(store: MongoEventStore, w: int) -> None:
        for i in range(15):
            persisted.append((await store.persist("s", {"w": w, "i": i})).offset)

    reader = StreamReader(reader_store, "s", limit=20)
    writing = asyncio.ensure_future(
        asyncio.gather(*(write(store, w * 2 + k) for w, store in enumerate(writers) for k in range(2)))
    )
    while not writing.done():
        await reader.poll()
        await asyncio.sleep(0.005)
    await writing
    await reader.drain()
    full = await reader.check_no_late_arrivals()
    assert [e.offset for e in full] == sorted(persisted)
    assert [int(o.split("-")[1], 16) for o in sorted(persisted)] == list(range(1, 4 * 2 * 15 + 1))


# -- epochs ---------------------------------------------------------------------------------------
@pytest.mark.mongodb
async def test_wiped_database_gives_new_epochs_and_old_offsets_are_unavailable(opener: Opener) -> None:
    store = opener()
    await store.open()
    old = [await store.persist("s", i) for i in range(3)]
    mark = await store.last_offset("empty")
    await store.database.client.drop_database(store.database.name)
    new = await store.persist("s", "after the wipe")
    assert new.offset.split("-")[0] != old[0].offset.split("-")[0]
    for offset in (old[0].offset, old[-1].offset):
        with pytest.raises(OffsetUnavailableError):
            await store.fetch_since("s", offset)
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("empty", mark)
    assert_same_events(await read_all(store, "s"), [new])


@pytest.mark.mongodb
async def test_offset_beyond_the_published_head_is_unavailable(opener: Opener) -> None:
    store = opener()
    await store.open()
    event = await store.persist("s", 1)
    epoch = event.offset.split("-")[0]
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("s", f"{epoch}-{99:016x}")


# -- retention -----------------------------------------------------------------------------------------------
@pytest.mark.mongodb
async def test_trimmed_events_are_invisible_at_once_and_purged_after_purge_delay(opener: Opener) -> None:
    store = opener(max_events=3, max_age=None, purge_delay=0.5, retention_interval=None)
    await store.open()
    events = [await store.persist("s", i) for i in range(10)]
    raw = store.database["sio_events"]
    assert await store.trim("s") == 7
    assert_same_events(await read_all(store, "s"), events[7:])
    assert await raw.count_documents({"s": "s"}) == 10, "kept (invisible) for purge_delay"
    await asyncio.sleep(0.7)
    assert await store.trim() == 0
    assert await raw.count_documents({"s": "s"}) == 3
    assert_same_events(await read_all(store, "s"), events[7:])


@pytest.mark.mongodb
async def test_zero_purge_delay_purges_on_the_next_run_and_reads_recheck_the_floor(
    opener: Opener,
) -> None:
    store = opener(max_events=3, max_age=None, purge_delay=0, retention_interval=None)
    await store.open()
    events = [await store.persist("s", i) for i in range(10)]
    assert await store.trim() == 7
    assert await store.trim() == 0  # purges what the first run trimmed
    assert await store.database["sio_events"].count_documents({"s": "s"}) == 3
    assert_same_events(await read_all(store, "s", limit=2), events[7:])
    assert_same_events(await store.fetch_since("s", events[7].offset, rooms=[]), events[8:])
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("s", events[2].offset)
    later = await store.persist("s", "later")
    assert later.offset > events[-1].offset


@pytest.mark.mongodb
async def test_retention_runs_in_the_background(opener: Opener) -> None:
    store = opener(max_events=5, max_age=None, retention_interval=0.1)
    await store.open()
    events = [await store.persist("s", i) for i in range(20)]
    for _ in range(100):
        if len(await read_all(store, "s")) == 5:
            break
        await asyncio.sleep(0.1)
    assert_same_events(await read_all(store, "s"), events[-5:])


@pytest.mark.mongodb
async def test_ttl_indexes_delete_expired_sessions_and_keys(opener: Opener) -> None:
    """The server's TTL monitor (every second on the test server; mongod: 60 s) deletes them."""
    store = opener()
    await store.open()
    await store.save_session("short", {"x": 1}, 0.2)
    await store.save_session("long", {"x": 2}, 300)
    await store.reserve_key("lease", 0.2)
    db = store.database
    for _ in range(150):  # up to 15 s: the monitor's own pace, not ours
        if (
            await db["sio_sessions"].count_documents({}) == 1
            and await db["sio_keys"].count_documents({}) == 0
        ):
            break
        await asyncio.sleep(0.1)
    assert [d["_id"] async for d in db["sio_sessions"].find({})] == ["long"]
    assert await db["sio_keys"].count_documents({}) == 0


@pytest.mark.mongodb
async def test_sessions_saved_before_leases_existed_are_claimable_with_and_without_a_lease(
    opener: Opener,
) -> None:
    """Documents of the previous version have no lease field ``l``."""
    import json
    import time

    from socketio_delivery_mongodb._codec import expiry

    store = opener()
    await store.open()
    sessions = store.database["sio_sessions"]
    at = time.time() + 300
    for key in ("plain", "leased"):
        await sessions.insert_one({"_id": key, "v": json.dumps({"k": key}), "x": at, "exp": expiry(at)})
    await sessions.insert_one({"_id": "expired", "v": "{}", "x": time.time() - 1, "exp": expiry(at)})
    assert await store.claim_session("plain") == {"k": "plain"}
    assert await sessions.find_one({"_id": "plain"}) is None
    assert await store.claim_session("leased", lease=300) == {"k": "leased"}
    held = await sessions.find_one({"_id": "leased"})
    assert held is not None
    assert held["x"] == at, "a lease leaves the record's own TTL as it was"
    assert held["l"] > time.time()
    with pytest.raises(SessionBusyError):
        await store.claim_session("leased", lease=300)
    assert await store.claim_session("expired", lease=300) is None
    assert await sessions.find_one({"_id": "expired"}) is None, "an expired record is deleted on claim"


@pytest.mark.mongodb
async def test_a_lease_taken_by_one_store_object_holds_for_another(opener: Opener) -> None:
    first, second = opener(), opener()
    await asyncio.gather(first.open(), second.open())
    await first.save_session("k", {"v": 1}, 300)
    assert await first.claim_session("k", lease=300) == {"v": 1}
    with pytest.raises(SessionBusyError):
        await second.claim_session("k")
    await second.save_session("k", {"v": 2}, 300)
    assert "l" not in (await second.database["sio_sessions"].find_one({"_id": "k"}))
    assert await first.claim_session("k") == {"v": 2}


@pytest.mark.mongodb
async def test_a_leased_save_writes_the_lease_field_with_the_record(opener: Opener) -> None:
    import time

    first, second = opener(), opener()
    await asyncio.gather(first.open(), second.open())
    before = time.time()
    await first.save_session("k", {"v": 1}, 300, lease=30)
    doc = await first.database["sio_sessions"].find_one({"_id": "k"})
    assert doc is not None
    assert set(doc) == {"_id", "v", "x", "exp", "l"}
    assert before + 30 <= doc["l"] <= time.time() + 30
    assert doc["x"] - doc["l"] == pytest.approx(270), "the record's own TTL, from the same clock reading"
    with pytest.raises(SessionBusyError):
        await second.claim_session("k")
    await second.save_session("k", {"v": 2}, 300, lease=30)  # renewed by another store object
    with pytest.raises(SessionBusyError):
        await first.claim_session("k", lease=30)
    await second.save_session("k", {"v": 3}, 300)
    assert await first.claim_session("k") == {"v": 3}


# -- failures ------------------------------------------------------------------------------------------------
async def test_unreachable_server_raises_store_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = MongoEventStore.from_url(f"mongodb://127.0.0.1:{port}/x?serverSelectionTimeoutMS=300")
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    assert info.value.__cause__ is not None
    await store.close()


@pytest.mark.mongodb
async def test_operations_after_close_raise_store_unavailable(opener: Opener) -> None:
    store = opener()
    await store.open()
    await store.close()
    calls = [
        store.persist("s", 1),
        store.fetch_since("s", None),
        store.last_offset("s"),
        store.save_session("k", {}, 10),
        store.claim_session("k"),
        store.reserve_key("k", 10),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError):
            await call


@pytest.mark.mongodb
async def test_server_down_raises_store_unavailable_and_a_restart_keeps_everything(
    mongo_server_factory: Callable[..., MongoServer],
) -> None:
    server = mongo_server_factory(persistent=True)
    url = f"{server.url}/chat?serverSelectionTimeoutMS=500"
    store = MongoEventStore.from_url(url)
    await store.open()
    events = [await store.persist("s", {"i": i}, rooms=["r"] if i % 2 else ()) for i in range(5)]
    await store.save_session("pid", {"sid": "a"}, 300)
    await store.reserve_key("op", 300)
    await store.complete_key("op", {"ok": 1}, 300)
    server.stop()
    with pytest.raises(StoreUnavailableError) as info:
        await store.persist("s", "lost")
    assert info.value.__cause__ is not None
    with pytest.raises(StoreUnavailableError):
        await store.fetch_since("s", None)
    with pytest.raises(StoreUnavailableError):
        await store.claim_session("pid")
    server.start()
    after = await store.persist("s", "after the restart")  # the same store object reconnects
    assert after.offset > events[-1].offset
    await store.close()
    reopened = MongoEventStore.from_url(url)
    await reopened.open()
    try:
        assert_same_events(await read_all(reopened, "s"), [*events, after])
        assert await reopened.claim_session("pid") == {"sid": "a"}
        done = await reopened.reserve_key("op", 30)
        assert done.result == {"ok": 1}
    finally:
        await reopened.close()
        server.close()


# -- the command ------------------------------------------------------------------------------------
@pytest.mark.mongodb
def test_check_command_works_against_the_server(mongo_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "socketio_delivery.cli", "check", mongo_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


async def test_calls_are_bounded_by_default_and_the_url_wins() -> None:
    """Every call ends within 5 s by default (select a server, connect, each socket read)."""
    for url, bound in (
        ("mongodb://127.0.0.1:1/x", 5.0),
        ("mongodb://127.0.0.1:1/x?socketTimeoutMS=800", 0.8),
    ):
        _, client = MongoEventStore(url)._resolve()
        try:
            assert client.options.server_selection_timeout == 5.0
            assert client.options.pool_options.connect_timeout == 5.0
            assert client.options.pool_options.socket_timeout == bound
        finally:
            await client.close()
