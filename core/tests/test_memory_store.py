"""Memory-store specifics beyond the conformance suite: options, URLs, bounded memory."""

from __future__ import annotations

import asyncio

import pytest
from socketio_delivery import ConfigurationError, OffsetUnavailableError, open_store
from socketio_delivery.memory import MemoryEventStore, MemoryOptions
from socketio_delivery.testing import opened_store, read_all, run


def test_memory_url_query_string_sets_retention_options() -> None:
    store = open_store("memory://?max_events=7&max_age=none")
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_events=7, max_age=None)


def test_keyword_options_override_the_url() -> None:
    store = open_store("memory://?max_events=7", max_events=3)
    assert isinstance(store, MemoryEventStore)
    assert store.options.max_events == 3


def test_unknown_memory_option_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="max_age, max_bytes, max_events"):
        open_store("memory://", pool_size=3)


def test_memory_store_declares_no_durability_or_sharing() -> None:
    assert open_store("memory://").capabilities == frozenset()


def test_every_memory_url_opens_a_new_empty_store() -> None:
    async def body() -> None:
        async with opened_store("memory://") as one, opened_store("memory://") as two:
            event = await one.persist("s", 1)
            assert await two.fetch_since("s", None) == []
            with pytest.raises(OffsetUnavailableError):
                await two.fetch_since("s", event.offset)

    run(body())


def test_trimmed_events_are_released_from_memory() -> None:
    async def body() -> None:
        async with opened_store("memory://", max_events=10) as store:
            assert isinstance(store, MemoryEventStore)
            for i in range(5000):
                await store.persist("s", i)
            held = store._streams["s"]
            assert len(held.texts) <= 2 * 1024 + 10
            assert len(held.everyone.seqs) <= 2 * 1024 + 10
            assert [e.data for e in await read_all(store, "s")] == list(range(4990, 5000))

    run(body())


def test_expired_sessions_and_keys_are_swept() -> None:
    async def body() -> None:
        async with opened_store("memory://") as store:
            assert isinstance(store, MemoryEventStore)
            for i in range(600):
                await store.save_session(f"s{i}", {}, 0.001)
                await store.reserve_key(f"k{i}", 0.001)
            for i in range(1100):
                await store.reserve_key(f"later{i}", 60)
            assert len(store._sessions) < 600
            assert len(store._keys) < 1700

    run(body())


def test_max_bytes_keeps_the_newest_events_within_the_bound() -> None:
    async def main() -> None:
        store = open_store("memory://?max_bytes=250&max_events=none&max_age=none")
        events = [await store.persist("s", "x" * 98) for _ in range(10)]  # 100 bytes of JSON each
        await store.trim("s")
        assert [e.offset for e in await store.fetch_since("s", None)] == [e.offset for e in events[8:]]
        with pytest.raises(OffsetUnavailableError):
            await store.fetch_since("s", events[0].offset)
        big = await store.persist("s", "y" * 1000)  # over the bound alone: the newest is kept
        await store.trim()
        assert [e.offset for e in await store.fetch_since("s", None)] == [big.offset]

    asyncio.run(main())


def test_max_bytes_must_be_a_positive_int() -> None:
    for bad in ("0", "-5", "lots"):
        with pytest.raises(ConfigurationError):
            open_store(f"memory://?max_bytes={bad}")


def test_room_index_follows_retention_and_releases_rooms() -> None:
    async def body() -> None:
        async with opened_store("memory://", max_events=50) as store:
            assert isinstance(store, MemoryEventStore)
            for i in range(5000):
                rooms = () if i % 7 == 0 else (f"u{i}", f"g{i % 3}") if i % 2 else (f"u{i}",)
                await store.persist("s", i, rooms=rooms)
            held = store._streams["s"]
            assert len(held.rooms_index) <= 50 + 3
            assert len(held.texts) <= 2 * 1024 + 60
            everyone = [i for i in range(4950, 5000) if i % 7 == 0]
            g1 = [i for i in range(4950, 5000) if i % 7 and i % 2 and i % 3 == 1]
            got = [e.data for e in await read_all(store, "s", rooms=["g1", "nobody"])]
            assert got == sorted(everyone + g1)
            page = await store.fetch_since("s", None, rooms=["g1", "g1", "u4999"], limit=3)
            assert [e.data for e in page] == sorted(everyone + g1 + [4999])[:3]

    run(body())


def test_a_page_may_say_how_far_it_looked_and_plain_lists_still_work() -> None:
    from socketio_delivery.store import Event, Page, read_on_from

    one, two = Event("e-01", 1), Event("e-02", 2)
    assert read_on_from([one, two], None) == "e-02"
    assert read_on_from([], "e-00") == "e-00"
    assert read_on_from(Page([one], examined="e-09"), None) == "e-09"
    assert read_on_from(Page([one, two]), "e-00") == "e-02"
    assert read_on_from(Page([two], examined="e-01"), None) == "e-02"  # never backwards
    assert Page([one]) == [one]
    assert isinstance(Page(), list)
