"""Redis-specific behaviour on real redis-server processes: URLs, client objects, restarts,
wiped data, outages, group commit, key layout, bounded reads, retention, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.crc import key_slot
from redis_server import RedisClusterNodes, RedisSentinel, RedisServer
from socketio_delivery import open_store
from socketio_delivery.errors import (
    ConfigurationError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from socketio_delivery.store import Capability, KeyState, Page, read_on_from
from socketio_delivery.testing import assert_same_events, read_all
from socketio_delivery_redis import RedisEventStore, RedisOptions, _scripts
from socketio_delivery_redis.store import _StreamKeys

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private server these tests may stop, kill and flush: AOF with fsync always, unix socket."""
    return redis_server_factory(persistent=True, fsync="always", unix_socket=True)


@pytest.fixture
def admin(server: RedisServer) -> redis.Redis:
    server.start()  # an earlier test may have left it stopped
    return redis.Redis(port=server.port)


def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisEventStore]:
    server.start()
    store = RedisEventStore.from_url(f"{server.url}?prefix={prefix()}&retention_interval=none")
    await store.open()
    yield store
    await store.close()


def command_calls(admin: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# -- URLs and construction ------------------------------------------------------------------------
def test_url_forms_and_options() -> None:
    store = open_store("redis://user:secret@cache:6380/2?prefix=chat&max_events=50&socket_timeout=2")
    assert isinstance(store, RedisEventStore)
    assert store.options.prefix == "chat"
    assert store.options.max_events == 50
    assert store.url == "redis://user:secret@cache:6380/2?socket_timeout=2"  # redis-py's part only
    assert "secret" not in repr(store)
    assert isinstance(open_store("rediss://cache/0?ssl_cert_reqs=none"), RedisEventStore)
    unix = open_store("unix:///run/redis.sock?db=3&max_age=none", prefix="x")
    assert isinstance(unix, RedisEventStore)
    assert unix.url == "unix:///run/redis.sock?db=3"
    assert unix.options.max_age is None
    assert unix.options.prefix == "x"
    assert {Capability.DURABLE, Capability.MULTI_PROCESS} <= store.capabilities


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/0?no_such_option=1",
        "redis://h/0?socket_timeout=soon",
        "redis://h/0?prefix=a{b}",
        "redis://h/0?max_batch=0",
        "redis://h/0?scan_count=-1",
        "unix://",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisEventStore.from_url(url)


VALID_REDIS_OPTIONS = (
    "cluster, max_age, max_batch, max_events, prefix, retention_interval, retries, scan_count, trim_chunk"
)


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=f"unknown option 'no_such_option'.*{VALID_REDIS_OPTIONS};"):
        RedisEventStore.from_url("redis://h/0?no_such_option=1")
    with pytest.raises(ConfigurationError, match=f"unknown option 'no_such_option'.*{VALID_REDIS_OPTIONS}$"):
        RedisEventStore.from_url("redis://h/0", no_such_option=1)
    with pytest.raises(ConfigurationError, match=f"unknown option 'no_such_option'.*{VALID_REDIS_OPTIONS}$"):
        RedisEventStore.from_client(object(), no_such_option=1)


def test_store_needs_a_client_or_a_url() -> None:
    with pytest.raises(ConfigurationError):
        RedisEventStore()
    with pytest.raises(ConfigurationError):
        RedisEventStore(object(), url="redis://h")
    with pytest.raises(ConfigurationError):
        RedisEventStore.from_client(object(), no_such_option=1)


async def test_unix_socket_url(server: RedisServer) -> None:
    server.start()
    store = open_store(server.unix_url + f"&prefix={prefix()}")
    await store.open()
    try:
        event = await store.persist("/", {"via": "unix"})
        assert_same_events(await store.fetch_since("/", None), [event])
    finally:
        await store.close()


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_client_object_is_used_and_left_open(server: RedisServer, decode_responses: bool) -> None:
    server.start()
    client = aioredis.Redis(port=server.port, decode_responses=decode_responses)
    try:
        store = RedisEventStore.from_client(client, prefix=prefix(), max_events=100)
        assert store.options.max_events == 100
        await store.open()
        events = [await store.persist("/", {"i": i, "s": "ñ"}, rooms=["r"], exclude=["x"]) for i in range(3)]
        assert_same_events(await read_all(store, "/", rooms=["r"]), events)
        assert_same_events(await store.fetch_since("/", events[0].offset), events[1:])
        await store.save_session("pid", {"sid": "s1"}, 30)
        assert await store.claim_session("pid", lease=30) == {"sid": "s1"}
        with pytest.raises(SessionBusyError):
            await store.claim_session("pid")
        await store.save_session("pid", {"sid": "s2"}, 30)
        assert await store.claim_session("pid") == {"sid": "s2"}
        assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED
        await store.complete_key("k", {"ok": 1}, 30)
        done = await store.reserve_key("k", 30)
        assert done.state is KeyState.DONE
        assert done.result == {"ok": 1}
        await store.close()
        assert await client.ping()  # still the caller's, still open
    finally:
        await client.aclose()


# -- the server going away, restarting, losing data ---------------------------------------------------
async def test_restart_with_persisted_data_keeps_offsets_valid(
    server: RedisServer, store: RedisEventStore
) -> None:
    events = [await store.persist("/", {"i": i}) for i in range(5)]
    mark = await store.last_offset("/")
    server.restart()  # graceful: the AOF holds everything
    assert_same_events(await store.fetch_since("/", events[1].offset), events[2:])  # same store object
    newer = await store.persist("/", "after restart")
    assert newer.offset > events[-1].offset
    assert_same_events(await store.fetch_since("/", mark), [newer])
    other = RedisEventStore.from_url(server.url, prefix=store.options.prefix)
    await other.open()
    try:
        assert_same_events(await read_all(other, "/"), [*events, newer])
    finally:
        await other.close()


async def test_kill_9_loses_nothing_persist_reported_with_fsync_always(
    server: RedisServer, store: RedisEventStore
) -> None:
    events = list(await asyncio.gather(*(store.persist("/", {"i": i}) for i in range(50))))
    await store.save_session("pid", {"sid": "x"}, 60)
    server.restart(kill=True)
    events.sort(key=lambda e: e.offset)
    assert_same_events(await read_all(store, "/"), events)
    assert await store.claim_session("pid") == {"sid": "x"}


async def test_server_down_raises_unavailable_and_nothing_persisted_is_lost(
    server: RedisServer, store: RedisEventStore
) -> None:
    events = [await store.persist("/", {"i": i}) for i in range(5)]
    server.stop()
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await store.persist("/", "while down")
        assert isinstance(info.value.__cause__, redis.RedisError)
        with pytest.raises(StoreUnavailableError):
            await store.fetch_since("/", None)
        with pytest.raises(StoreUnavailableError):
            await store.claim_session("pid")
        with pytest.raises(StoreUnavailableError):
            await store.reserve_key("k", 30)
        with pytest.raises(StoreUnavailableError):
            await store.last_offset("/")
    finally:
        server.start()
    assert_same_events(await read_all(store, "/"), events)
    later = await store.persist("/", "back")
    assert_same_events(await store.fetch_since("/", events[-1].offset), [later])


def test_calls_are_bounded_by_default() -> None:
    store = RedisEventStore.from_url("redis://localhost/0")
    client = store._make_client()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 5.0
    own = RedisEventStore.from_url("redis://localhost/0?socket_timeout=2")._make_client()
    assert own.connection_pool.connection_kwargs["socket_timeout"] == 2.0  # the URL wins


async def test_a_paused_server_makes_calls_fail_within_the_timeout(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """SIGSTOP: connections are accepted, nothing answers. Each call ends within socket_timeout."""
    server = redis_server_factory(persistent=False)
    store = RedisEventStore.from_url(f"{server.url}?socket_timeout=1&prefix={prefix()}")
    await store.open()
    try:
        before = await store.persist("/", "before")
        await store.save_session("pid", {"sid": "x"}, 60)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            calls = {
                "persist": lambda: store.persist("/", "while paused"),
                "fetch_since": lambda: store.fetch_since("/", None),
                "claim_session": lambda: store.claim_session("pid"),
            }
            for name, call in calls.items():
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError):
                    await asyncio.wait_for(call(), 10)
                took = time.monotonic() - started
                assert took < 1 + 1.5, f"{name} took {took:.1f}s with socket_timeout=1"
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        events = await read_all(store, "/")
        assert events[0] == before
        assert await store.claim_session("pid") in ({"sid": "x"}, None)  # the paused claim may have run
    finally:
        await store.close()


async def test_open_against_a_dead_server_is_unavailable(server: RedisServer) -> None:
    server.start()
    dead = RedisServer(persistent=False)  # never started: nothing listens on its port
    try:
        store = RedisEventStore.from_url(dead.url, retries=0)
        with pytest.raises(StoreUnavailableError) as info:
            await store.open()
        assert isinstance(info.value.__cause__, redis.RedisError)
        with pytest.raises(StoreUnavailableError):
            await store.persist("/", 1)
        await store.close()  # harmless
    finally:
        dead.close()


async def test_flushall_makes_old_offsets_unavailable(admin: redis.Redis, store: RedisEventStore) -> None:
    events = [await store.persist("/", i) for i in range(3)]
    old_mark = await store.last_offset("/")
    admin.flushall()
    for offset in (events[0].offset, events[-1].offset, old_mark):
        with pytest.raises(OffsetUnavailableError):
            await store.fetch_since("/", offset)
    new_mark = await store.last_offset("/")
    assert new_mark.split("-")[0] != old_mark.split("-")[0], "a new epoch"
    fresh = await store.persist("/", "fresh")
    assert_same_events(await store.fetch_since("/", new_mark), [fresh])
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("/", events[-1].offset)


async def test_restart_of_a_non_persistent_server_makes_old_offsets_unavailable(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(persistent=False)
    store = RedisEventStore.from_url(server.url)
    await store.open()
    try:
        event = await store.persist("/", 1)
        server.restart()
        with pytest.raises(OffsetUnavailableError):
            await store.fetch_since("/", event.offset)
        assert await store.fetch_since("/", None) == []
        again = await store.persist("/", 2)
        assert again.offset.split("-")[0] != event.offset.split("-")[0]
    finally:
        await store.close()
        server.close()


async def test_a_deleted_or_evicted_stream_starts_a_new_epoch(
    admin: redis.Redis, store: RedisEventStore
) -> None:
    events = [await store.persist("/", i) for i in range(3)]
    admin.delete(_StreamKeys(store.options.prefix, "/", "").events)  # the meta hash is still there
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("/", events[0].offset)
    fresh = await store.persist("/", "fresh")
    assert fresh.offset.split("-")[0] != events[0].offset.split("-")[0]
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("/", events[-1].offset)


# -- writes -----------------------------------------------------------------------------------------------
async def test_concurrent_persists_share_round_trips(admin: redis.Redis, store: RedisEventStore) -> None:
    admin.config_resetstat()
    events = await asyncio.gather(*(store.persist("/a" if i % 2 else "/b", {"i": i}) for i in range(400)))
    assert len({e.offset for e in events}) == 400
    # One pipeline with one EVALSHA per stream would be 2; allow a few batches, never one per event.
    calls = command_calls(admin, "evalsha") + command_calls(admin, "eval")
    assert 2 <= calls <= 6, f"{calls} script calls for 400 concurrent persists"
    assert store.round_trips <= 3
    assert store.writes == 400
    before = store.round_trips
    for i in range(5):
        await store.persist("/a", i)
    assert store.round_trips == before + 5, "a lone persist is one round trip"


async def test_max_batch_bounds_one_round_trip(admin: redis.Redis, server: RedisServer) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), max_batch=50)
    await store.open()
    try:
        admin.config_resetstat()
        await asyncio.gather(*(store.persist("/", i) for i in range(200)))
        assert command_calls(admin, "evalsha") + command_calls(admin, "eval") >= 4
        assert len(await read_all(store, "/")) == 200
    finally:
        await store.close()


async def test_a_re_sent_batch_is_appended_once(admin: redis.Redis, store: RedisEventStore) -> None:
    keys = _StreamKeys(store.options.prefix, "/", "writer-1")
    args = ["abcd0123", "token-1", 0, 0, 1000, 100, 1000]
    for i in range(3):
        args += [f'{{"i":{i}}}', 0, 0]
    first = admin.eval(_scripts.PERSIST.source, 3, keys.events, keys.meta, keys.writer, *args)
    again = admin.eval(_scripts.PERSIST.source, 3, keys.events, keys.meta, keys.writer, *args)
    assert first == again
    assert admin.xlen(keys.events) == 3
    args[1] = "token-2"  # the next batch of that writer is appended
    admin.eval(_scripts.PERSIST.source, 3, keys.events, keys.meta, keys.writer, *args)
    assert admin.xlen(keys.events) == 6


async def test_scripts_are_sent_again_after_script_flush(admin: redis.Redis, store: RedisEventStore) -> None:
    first = await store.persist("/", 1)
    admin.script_flush()
    second = await store.persist("/", 2)
    admin.script_flush()
    assert_same_events(await store.fetch_since("/", first.offset), [second])
    admin.script_flush()
    assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED


# -- keys ---------------------------------------------------------------------------------------------------
async def test_keys_of_one_stream_share_a_cluster_slot_and_are_documented(
    admin: redis.Redis, store: RedisEventStore
) -> None:
    p = store.options.prefix
    for name in ("/", "/chat", "{x}", "a}b{c", "%7B", "ñ"):
        keys = _StreamKeys(p, name, "w")
        assert key_slot(keys.events) == key_slot(keys.meta) == key_slot(keys.writer), name
        base = keys.meta[: -len(b"meta")]  # the room index keys the scripts build from it
        assert key_slot(base + b"all") == key_slot(base + b"r:{room}") == key_slot(keys.events), name
    assert _StreamKeys(p, "{x}", "w").events != _StreamKeys(p, "%7Bx%7D", "w").events
    await store.persist("/chat", 1, rooms=["r"])
    await store.last_offset("/idle")
    await store.save_session("pid", {}, 30)
    await store.reserve_key("op", 30)
    found = {k.decode() for k in admin.scan_iter(match=f"{p}:*")}
    writer = next(k for k in found if ":w:" in k)
    assert found == {
        f"{p}:streams",
        f"{p}:{{/chat}}:events",
        f"{p}:{{/chat}}:meta",
        f"{p}:{{/chat}}:r:r",
        f"{p}:{{/idle}}:meta",
        writer,
        f"{p}:session:pid",
        f"{p}:key:op",
    }
    assert writer.startswith(f"{p}:{{/chat}}:w:")
    assert 0 < admin.pttl(writer) <= 60_000
    assert 0 < admin.pttl(f"{p}:session:pid") <= 30_000
    assert admin.ttl(f"{p}:{{/chat}}:events") == -1
    assert admin.smembers(f"{p}:streams") == {b"/chat"}


async def test_a_leased_session_stays_one_key_with_its_ttl_and_old_records_stay_claimable(
    admin: redis.Redis, store: RedisEventStore
) -> None:
    key = f"{store.options.prefix}:session:pid"
    admin.set(key, b'{"sid":"old"}', px=30_000)  # as written by the version before leases
    assert await store.claim_session("pid", lease=60) == {"sid": "old"}
    value = admin.get(key)
    assert value is not None
    assert value.startswith(b"l:")
    assert value.endswith(b'|{"sid":"old"}')
    assert 0 < admin.pttl(key) <= 30_000, "a lease keeps the record's own ttl"
    assert {k.decode() for k in admin.scan_iter(match=f"{store.options.prefix}:*")} == {key}
    with pytest.raises(SessionBusyError):
        await store.claim_session("pid", lease=60)
    await store.save_session("pid", {"sid": "new"}, 20)
    assert admin.get(key) == b'{"sid":"new"}', "save_session ends the lease: a plain record again"
    assert 0 < admin.pttl(key) <= 20_000
    # A lease that ran out (the claimer died): the record comes back unchanged, still leasable.
    admin.set(key, b'l:1000|{"sid":"back"}', px=30_000)
    assert await store.claim_session("pid", lease=60) == {"sid": "back"}
    admin.set(key, b'l:1000|{"sid":"back"}', px=30_000)
    assert await store.claim_session("pid") == {"sid": "back"}
    assert admin.exists(key) == 0
    await store.save_session("inf", {"a": 1}, 30)
    assert await store.claim_session("inf", lease=float("inf")) == {"a": 1}
    with pytest.raises(SessionBusyError):
        await store.claim_session("inf")


async def test_a_leased_save_writes_the_leased_form_with_the_ttl(
    admin: redis.Redis, store: RedisEventStore
) -> None:
    key = f"{store.options.prefix}:session:pid"
    await store.save_session("pid", {"sid": "live"}, 20, lease=60)
    value = admin.get(key)
    assert value is not None
    until, _, record = value[2:].partition(b"|")
    assert value.startswith(b"l:"), value
    assert record == b'{"sid":"live"}'
    server_ms = admin.time()[0] * 1000
    assert server_ms < int(until) <= server_ms + 61_000, "the lease runs on the server's clock"
    assert 0 < admin.pttl(key) <= 20_000, "the record's own ttl"
    with pytest.raises(SessionBusyError):
        await store.claim_session("pid")
    admin.set(key, value.replace(until, b"1000"), px=20_000)  # as if the lease ran out
    assert await store.claim_session("pid") == {"sid": "live"}
    await store.save_session("inf", {"a": 1}, 30, lease=float("inf"))
    with pytest.raises(SessionBusyError):
        await store.claim_session("inf")
    await store.save_session("inf", {"a": 2}, 30)
    assert admin.get(f"{store.options.prefix}:session:inf") == b'{"a":2}'


# -- reads and retention ----------------------------------------------------------------------
def _script_calls(admin: redis.Redis) -> int:
    return command_calls(admin, "evalsha") + command_calls(admin, "eval")


def _drop_room_index(admin: redis.Redis, store: RedisEventStore, stream: str) -> None:
    """Make ``stream`` look written by a version without the room index."""
    keys = _StreamKeys(store.options.prefix, stream, "")
    admin.hdel(keys.meta, "ix", "ig")
    base = keys.meta[: -len(b"meta")]
    for key in [*admin.scan_iter(match=base + b"r:*"), base + b"all"]:
        admin.delete(key)


async def test_room_filtered_fetch_reads_the_room_index_in_one_step(
    admin: redis.Redis, server: RedisServer
) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), scan_count=100)
    await store.open()
    try:
        for _ in range(4):
            await asyncio.gather(*(store.persist("/", "noise", rooms=["x"]) for _ in range(250)))
        wanted = [await store.persist("/", i, rooms=["y"]) for i in range(3)]
        everyone = await store.persist("/", "all")
        await store.fetch_since("/", everyone.offset, rooms=["y"])  # the script is loaded
        admin.config_resetstat()
        got = await store.fetch_since("/", None, rooms=["y", "nobody"], limit=10)
        assert_same_events(got, [*wanted, everyone])
        assert _script_calls(admin) == 1, "k + 1 index ranges merged in one script call"
        assert_same_events(await store.fetch_since("/", None, rooms=["y"], limit=2), wanted[:2])
        assert_same_events(await store.fetch_since("/", wanted[0].offset, rooms=[]), [everyone])
        assert await store.fetch_since("/", everyone.offset, rooms=["y"]) == []
        many_rooms = [await store.persist("/", "wide", rooms=[f"r{i}" for i in range(300)])]
        assert_same_events(await store.fetch_since("/", everyone.offset, rooms=["r299"]), many_rooms)
        assert_same_events(await store.fetch_since("/", everyone.offset, rooms=["r300"]), [])
        both = await store.persist("/", "both", rooms=["y", "z", "y"])
        assert_same_events(await store.fetch_since("/", many_rooms[0].offset, rooms=["z", "y"]), [both])
    finally:
        await store.close()


async def test_streams_written_before_the_room_index_still_fetch_by_scanning(
    admin: redis.Redis, server: RedisServer
) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), scan_count=100)
    await store.open()
    try:
        for _ in range(4):
            await asyncio.gather(*(store.persist("/", "noise", rooms=["x"]) for _ in range(250)))
        old = [await store.persist("/", i, rooms=["y"]) for i in range(3)]
        _drop_room_index(admin, store, "/")
        new = [await store.persist("/", i, rooms=["y"]) for i in range(3, 5)]  # indexed from here on
        await store.fetch_since("/", new[-1].offset, rooms=["y"])  # the script is loaded
        admin.config_resetstat()
        assert_same_events(await read_all(store, "/", rooms=["y"], limit=10), [*old, *new])
        assert _script_calls(admin) >= 10, "1005 entries from before the index, 100 a scan step"
        admin.config_resetstat()
        assert_same_events(await store.fetch_since("/", old[-1].offset, rooms=["y"]), new)
        assert _script_calls(admin) == 1, "after the index began: the index"
        assert_same_events(await store.fetch_since("/", old[0].offset, rooms=["y"]), [*old[1:], *new])
    finally:
        await store.close()


async def test_a_short_scanned_page_says_how_far_it_looked(admin: redis.Redis, server: RedisServer) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), scan_count=100)
    await store.open()
    try:
        first = await store.persist("/", "first", rooms=["y"])
        for _ in range(6):
            await asyncio.gather(*(store.persist("/", "noise", rooms=["x"]) for _ in range(250)))
        last = await store.persist("/", "last", rooms=["y"])
        _drop_room_index(admin, store, "/")
        await store.fetch_since("/", last.offset, rooms=["y"])  # the script is loaded
        admin.config_resetstat()
        page = await store.fetch_since("/", None, rooms=["y"], limit=10)
        assert_same_events(page, [first])  # ten scan steps found one event: a short page
        assert isinstance(page, Page)
        assert page.examined is not None
        assert first.offset < page.examined < last.offset
        rest = await store.fetch_since("/", read_on_from(page, None), rooms=["y"], limit=10)
        assert_same_events(rest, [last])
        steps = _script_calls(admin)
        assert steps <= 17, f"1502 entries, 100 a step, none twice: {steps} script calls"
    finally:
        await store.close()


async def test_retention_trims_the_room_index_with_the_stream(
    admin: redis.Redis, server: RedisServer
) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), max_events=50, retention_interval=None)
    await store.open()
    try:
        for start in range(0, 600, 100):
            await asyncio.gather(
                *(store.persist("/", i, rooms=[f"u{i}"] if i % 5 else []) for i in range(start, start + 100))
            )
        assert await store.trim("/") >= 0
        keys = _StreamKeys(store.options.prefix, "/", "")
        base = keys.meta[: -len(b"meta")]
        assert admin.xlen(keys.events) == 50
        rooms = list(admin.scan_iter(match=base + b"r:*", count=1000))
        assert len(rooms) == 40, "the rooms of the 50 retained events, the emptied ones deleted"
        assert admin.xlen(base + b"all") == 10
        got = await store.fetch_since("/", None, rooms=["u599", "u598", "u1"])
        assert [e.data for e in got] == [i for i in range(550, 600) if i % 5 == 0 or i in (598, 599)]
    finally:
        await store.close()


async def test_count_retention_runs_on_the_persist_path(server: RedisServer, admin: redis.Redis) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), max_events=50, retention_interval=None)
    await store.open()
    try:
        first = await store.persist("/", 0)
        for _ in range(4):
            await asyncio.gather(*(store.persist("/", 1) for _ in range(100)))
        keys = _StreamKeys(store.options.prefix, "/", "")
        assert admin.xlen(keys.events) <= 50 + 100 + 100  # max_events + slack + one batch
        with pytest.raises(OffsetUnavailableError):
            await store.fetch_since("/", first.offset)
        assert await store.trim("/") >= 0
        assert admin.xlen(keys.events) == 50
    finally:
        await store.close()


async def test_background_retention_trims_idle_streams(server: RedisServer) -> None:
    store = RedisEventStore.from_url(server.url, prefix=prefix(), max_age=0.3, retention_interval=0.1)
    await store.open()
    try:
        old = await store.persist("/idle", "old")
        for _ in range(200):  # no assertion on time: poll until retention has run
            if not await store.fetch_since("/idle", None):
                break
            await asyncio.sleep(0.05)
        assert await store.fetch_since("/idle", None) == []
        assert await store.fetch_since("/idle", old.offset) == []  # nothing after it is missing
    finally:
        await store.close()


async def test_persistence_warning_for_a_server_without_persistence(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory(persistent=False)
    store = RedisEventStore.from_url(server.url)
    try:
        await store.open()
        assert any("does not persist" in r.message for r in caplog.records)
    finally:
        await store.close()
        server.close()


async def test_errors_from_redis_are_store_errors(admin: redis.Redis, store: RedisEventStore) -> None:
    await store.save_session("pid", {"a": 1}, 30)
    admin.set(f"{store.options.prefix}:{{/}}:events", "not a stream")
    with pytest.raises(StoreError) as info:
        await store.persist("/", 1)
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert not isinstance(info.value, StoreUnavailableError)
    assert await store.claim_session("pid") == {"a": 1}  # the rest still works


def test_options_dataclass_defaults() -> None:
    options = RedisOptions()
    assert options.prefix == "sio"
    assert options.max_events == 1_000_000
    assert options.retention_interval == 60.0


# -- the command line ----------------------------------------------------------------------
def test_cli_check_against_redis(server: RedisServer) -> None:
    server.start()
    exe = os.path.join(os.path.dirname(sys.executable), "socketio-delivery")
    done = subprocess.run(
        [exe, "check", f"{server.url}?prefix={prefix()}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RedisEventStore" in done.stdout


async def test_a_lost_meta_hash_starts_a_new_epoch_after_the_retained_events(
    admin: redis.Redis, store: RedisEventStore
) -> None:
    events = [await store.persist("/", i) for i in range(3)]
    admin.delete(_StreamKeys(store.options.prefix, "/", "").meta)  # as an allkeys-* eviction might
    with pytest.raises(OffsetUnavailableError):
        await store.fetch_since("/", events[-1].offset)
    mark = await store.last_offset("/")
    assert mark.split("-")[0] != events[0].offset.split("-")[0]
    assert await store.fetch_since("/", mark) == []
    later = await store.persist("/", "later")
    assert_same_events(await store.fetch_since("/", mark), [later])
    assert [e.data for e in await read_all(store, "/")] == [0, 1, 2, "later"]


async def test_resp3_client(server: RedisServer) -> None:
    server.start()
    client = aioredis.Redis(port=server.port, protocol=3)
    try:
        store = RedisEventStore.from_client(client, prefix=prefix())
        await store.open()
        event = await store.persist("/", {"resp": 3}, rooms=["r"])
        assert_same_events(await store.fetch_since("/", None, rooms=["r"]), [event])
        assert await store.fetch_since("/", event.offset) == []
        assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED
        assert (await store.reserve_key("k", 30)).state is KeyState.PENDING
        await store.close()
    finally:
        await client.aclose()


# -- Redis Cluster ----------------------------------------------------------------------------------
async def test_cluster_client_object_spreads_streams_and_batches_per_stream(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        store = RedisEventStore.from_client(client, prefix=prefix())
        await store.open()
        streams = [f"/ns{i}" for i in range(12)]
        slots = {key_slot(_StreamKeys(store.options.prefix, s, "").events) for s in streams}
        nodes = {
            client.get_node_from_key(_StreamKeys(store.options.prefix, s, "").events).name for s in streams
        }
        assert len(slots) > 1
        assert len(nodes) > 1, "the streams live on several nodes"
        targets = [streams[i % len(streams)] for i in range(480)]
        events = await asyncio.gather(*(store.persist(s, {"i": i}) for i, s in enumerate(targets)))
        assert store.round_trips <= 3, "one batch: one concurrent call per stream"
        for stream in streams:
            mine = sorted(
                (e for e, s in zip(events, targets, strict=True) if s == stream), key=lambda e: e.offset
            )
            assert_same_events(await read_all(store, stream), mine)
        await store.save_session("{pid}", {"a": 1}, 30)
        assert await store.claim_session("{pid}", lease=30) == {"a": 1}
        with pytest.raises(SessionBusyError):
            await store.claim_session("{pid}", lease=30)
        await store.save_session("{pid}", {"a": 2}, 30)
        assert await store.claim_session("{pid}") == {"a": 2}
        await store.close()
        assert await client.ping()
    finally:
        await client.aclose()


def test_cluster_over_a_unix_socket_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        RedisEventStore.from_url("unix:///run/redis.sock?cluster=true")
    assert RedisEventStore.from_url("redis://h:7000/0?cluster=yes").options.cluster is True


async def test_lone_surrogates_and_binary_like_text_round_trip(store: RedisEventStore) -> None:
    odd = {"lone": "\ud800", "nul": "\x00", "ctl": "\r\n|,%{}"}
    event = await store.persist("/\ud800", odd, rooms=["\udfff", "a,b|c"], exclude=["\x00"])
    (got,) = await store.fetch_since("/\ud800", None, rooms=["\udfff"])
    assert_same_events([got], [event])
    assert got.data == odd
    await store.save_session("k\ud800", odd, 30)
    assert await store.claim_session("k\ud800") == odd


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
async def test_restart_under_load_loses_no_reported_event_and_duplicates_none(
    server: RedisServer, store: RedisEventStore, kill: bool
) -> None:
    """Emitters keep persisting while Redis restarts: each persist either reports an offset,
    and that event is in the stream afterwards, or raises StoreUnavailableError; no event
    is in the stream twice (a batch re-sent by the client's retries is appended once)."""
    reported: dict[str, str] = {}
    failed = 0
    stop = asyncio.Event()

    async def emitter(n: int) -> None:
        nonlocal failed
        i = 0
        while not stop.is_set():
            tag = f"{n}-{i}"
            i += 1
            try:
                reported[tag] = (await store.persist("/", tag)).offset
            except StoreUnavailableError:
                failed += 1
                await asyncio.sleep(0.01)

    async def until(count: int) -> None:
        for _ in range(3000):
            if len(reported) >= count or any(t.done() for t in tasks):
                return
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(emitter(n)) for n in range(16)]
    try:
        await until(200)
        await asyncio.to_thread(server.restart, kill=kill)
        await until(len(reported) + 200)  # writing again after the restart
    finally:
        stop.set()
        await asyncio.gather(*tasks)  # raises what made an emitter stop
    stored = await read_all(store, "/")
    tags = [e.data for e in stored]
    assert len(tags) == len(set(tags)), "an event was appended twice"
    offsets = {e.data: e.offset for e in stored}
    lost = [tag for tag, offset in reported.items() if offsets.get(tag) != offset]
    assert not lost, f"{len(lost)} reported events are missing or moved: {lost[:5]}"


# -- Sentinel ------------------------------------------------------------------------------------------
async def test_sentinel_client_object(redis_server_factory: Callable[..., RedisServer]) -> None:
    primary = redis_server_factory(persistent=False)
    sentinel = RedisSentinel(primary)
    sentinel.start()
    try:
        client = Sentinel([sentinel.address]).master_for(RedisSentinel.service)
        store = RedisEventStore.from_client(client, prefix=prefix())
        await store.open()
        events = list(await asyncio.gather(*(store.persist("/", i, rooms=["r"]) for i in range(20))))
        events.sort(key=lambda e: e.offset)
        assert_same_events(await read_all(store, "/", rooms=["r"]), events)
        await store.save_session("pid", {"a": 1}, 30)
        assert await store.claim_session("pid") == {"a": 1}
        await store.close()
        await client.aclose()
    finally:
        sentinel.close()
        primary.close()


async def test_a_burst_of_calls_waits_for_a_pooled_connection(redis_url: str) -> None:
    """Hundreds of clients connecting at once: calls queue for the pool, none fails."""
    store = open_store(f"{redis_url}&max_connections=4")
    await store.open()
    try:
        await asyncio.gather(*(store.save_session(f"s{i}", {"i": i}, 60) for i in range(300)))
        assert await store.claim_session("s299") == {"i": 299}
    finally:
        await store.close()


# -- TLS and the reply parser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A TLS-only redis-server (``--port 0 --tls-port N``) with a throwaway self-signed certificate."""
    return redis_server_factory(persistent=False, tls=True)


async def test_rediss_url_with_a_ca_file(tls_server: RedisServer) -> None:
    """``rediss://`` end to end: the CA comes from ``ssl_ca_certs``, host names are checked."""
    tls_server.start()
    url = f"rediss://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={tls_server.ca_file}&prefix={prefix()}"
    store = open_store(url)
    assert isinstance(store, RedisEventStore)
    await store.open()
    try:
        connection = await store._client.connection_pool.get_connection()
        try:
            assert isinstance(connection, aioredis.SSLConnection)
            assert connection.check_hostname is True  # redis-py's default, kept
        finally:
            await store._client.connection_pool.release(connection)
        events = [await store.persist("/", {"i": i}, rooms=["r"] if i % 2 else ["q"]) for i in range(4)]
        assert_same_events(await store.fetch_since("/", None), events)
        assert_same_events(
            await store.fetch_since("/", events[0].offset, rooms=["r"]), [events[1], events[3]]
        )
        await store.save_session("pid", {"sid": "s1"}, 30)
        assert await store.claim_session("pid", lease=30) == {"sid": "s1"}
        with pytest.raises(SessionBusyError):
            await store.claim_session("pid")
        await store.save_session("pid", {"sid": "s2"}, 30)
        assert await store.claim_session("pid") == {"sid": "s2"}
    finally:
        await store.close()


async def test_rediss_without_the_ca_is_refused(tls_server: RedisServer) -> None:
    """The certificate is verified: a self-signed server without its CA is not trusted
    (unless ``ssl_cert_reqs=none`` turns verification off)."""
    tls_server.start()
    url = f"rediss://127.0.0.1:{tls_server.port}/0?prefix={prefix()}&retries=0"
    with pytest.raises(StoreUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        await open_store(url).open()
    unverified = open_store(f"{url}&ssl_cert_reqs=none")  # verification off: test setups only
    await unverified.open()
    try:
        await unverified.persist("/", 1)
    finally:
        await unverified.close()


async def test_connections_use_hiredis_when_it_is_installed(
    server: RedisServer, tls_server: RedisServer
) -> None:
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        pytest.skip("hiredis is not installed (it is in the dev lock): redis-py parses in Python")
    for url in (server.url, tls_server.url):
        store = open_store(f"{url}{'&' if '?' in url else '?'}prefix={prefix()}")
        await store.open()
        try:
            pool = store._client.connection_pool
            connection = await pool.get_connection()
            try:
                assert "Hiredis" in type(connection._parser).__name__, type(connection._parser)
            finally:
                await pool.release(connection)
            await store.persist("/", 1)  # and it works through that parser
        finally:
            await store.close()
