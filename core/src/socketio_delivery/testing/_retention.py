"""Conformance tests for retention: max_events, max_age, trim(), unavailable offsets."""

from __future__ import annotations

import asyncio

import pytest

from ..errors import OffsetUnavailableError
from ._base import ConformanceBase, UrlFactory, url_test
from ._support import assert_same_events, read_all

__all__ = ["RetentionTests"]

#: Seconds events live in the max_age tests, and how long those tests sleep.
SHORT_AGE = 1.0
AGE_SLEEP = 1.3


class RetentionTests(ConformanceBase):
    @url_test
    async def test_offset_trimmed_by_max_events_is_unavailable(self, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url(), max_events=5, max_age=None) as store:
            events = [await store.persist("s", i) for i in range(10)]
            await store.trim("s")
            assert_same_events(await read_all(store, "s"), events[5:])
            for lost in events[:4]:  # events right after these are gone
                with pytest.raises(OffsetUnavailableError):
                    await store.fetch_since("s", lost.offset)
            try:  # nothing after the newest trimmed event is missing: either answer is honest
                assert_same_events(await store.fetch_since("s", events[4].offset), events[5:])
            except OffsetUnavailableError:
                pass
            for i in range(5, 10):
                assert_same_events(await store.fetch_since("s", events[i].offset), events[i + 1 :])
            assert await store.fetch_since("s", events[-1].offset) == []

    @url_test
    async def test_max_events_keeps_the_newest_events(self, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url(), max_events=3, max_age=None) as store:
            for i in range(200):
                await store.persist("s", i)
            await store.trim("s")
            assert [e.data for e in await read_all(store, "s")] == [197, 198, 199]

    @url_test
    async def test_offset_trimmed_by_max_age_is_unavailable(self, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url(), max_age=SHORT_AGE, max_events=None) as store:
            old = [await store.persist("s", i) for i in range(3)]
            await asyncio.sleep(AGE_SLEEP)
            fresh = await store.persist("s", 3)
            await store.trim("s")
            assert_same_events(await read_all(store, "s"), [fresh])
            for lost in old[:2]:
                with pytest.raises(OffsetUnavailableError):
                    await store.fetch_since("s", lost.offset)
            assert await store.fetch_since("s", fresh.offset) == []

    @url_test
    async def test_nothing_new_after_everything_expired_is_empty_not_an_error(
        self, make_store_url: UrlFactory
    ) -> None:
        async with self.opened(make_store_url(), max_age=SHORT_AGE, max_events=None) as store:
            events = [await store.persist("s", i) for i in range(3)]
            mark = await store.last_offset("s")
            await asyncio.sleep(AGE_SLEEP)
            await store.trim()
            assert await read_all(store, "s") == []
            assert await store.fetch_since("s", events[-1].offset) == []
            assert await store.fetch_since("s", mark) == []
            with pytest.raises(OffsetUnavailableError):
                await store.fetch_since("s", events[0].offset)
            later = await store.persist("s", 99)
            assert later.offset > events[-1].offset
            assert_same_events(await store.fetch_since("s", mark), [later])

    @url_test
    async def test_trim_returns_how_many_events_went(self, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url(), max_age=SHORT_AGE, max_events=None) as store:
            for stream in ("s1", "s2"):
                for i in range(4):
                    await store.persist(stream, i)
            assert await store.trim("s1") == 0, "nothing is old enough yet"
            assert await store.trim() == 0
            await asyncio.sleep(AGE_SLEEP)
            keep = await store.persist("s3", "kept")
            # Retention may also run by itself, so trim() counts at most what was old.
            first = await store.trim("s1")
            assert 0 <= first <= 4
            assert await read_all(store, "s1") == []
            assert len(await read_all(store, "s2")) in range(5)
            rest = await store.trim()
            assert 0 <= rest <= 4
            assert await store.trim() == 0
            assert await store.trim("never-written") == 0
            assert await read_all(store, "s2") == []
            assert_same_events(await read_all(store, "s3"), [keep])
