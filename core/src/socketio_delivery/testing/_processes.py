"""Conformance tests for concurrency (no late arrivals), several processes, and durability."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from ..errors import SessionBusyError
from ..store import Capability, EventStore, KeyState
from ._base import ConformanceBase, UrlFactory, store_test, url_test
from ._support import StreamReader, assert_json_equal, assert_same_events, read_all
from ._workers import run_workers

__all__ = ["ConcurrencyTests"]

WRITERS = 8
EVENTS_PER_WRITER = 40
PROCESSES = 3
TASKS_PER_PROCESS = 4
EVENTS_PER_TASK = 25


async def _read_while(reader: StreamReader, writing: asyncio.Future[Any]) -> None:
    """Poll ``reader`` until ``writing`` is done, re-reading the stream now and then.

    On failure the writers are cancelled (and awaited) before the error propagates.
    """
    polls = 0
    try:
        while not writing.done():
            await reader.poll()
            polls += 1
            if polls % 4 == 0:
                await reader.check_no_late_arrivals()
            await asyncio.sleep(0.001)
    except BaseException:
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        raise


async def _finish(reader: StreamReader, persisted: list[str]) -> None:
    await reader.drain()
    full = await reader.check_no_late_arrivals()
    assert [e.offset for e in reader.seen] == [e.offset for e in full]
    assert sorted(persisted) == [e.offset for e in full], "the stream holds exactly what was persisted"
    assert len(set(persisted)) == len(persisted)


class ConcurrencyTests(ConformanceBase):
    @store_test
    async def test_no_late_arrivals_under_concurrent_writer_tasks(self, store: EventStore) -> None:
        persisted: list[str] = []

        async def writer(w: int) -> None:
            for i in range(EVENTS_PER_WRITER):
                persisted.append((await store.persist("s", {"w": w, "i": i})).offset)
                if i % 3 == 0:
                    await asyncio.sleep(0)

        reader = StreamReader(store, "s", limit=25)
        writing = asyncio.ensure_future(asyncio.gather(*(writer(w) for w in range(WRITERS))))
        await _read_while(reader, writing)
        await writing
        await _finish(reader, persisted)
        assert len(persisted) == WRITERS * EVENTS_PER_WRITER

    @url_test
    async def test_no_late_arrivals_across_processes(self, make_store_url: UrlFactory) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.MULTI_PROCESS)
            job = {"op": "persist", "stream": "s", "tasks": TASKS_PER_PROCESS, "count": EVENTS_PER_TASK}
            jobs = [{**job, "tag": n} for n in range(PROCESSES)]
            reader = StreamReader(store, "s", limit=40)
            writing = asyncio.ensure_future(self._workers(url, jobs))
            local: list[str] = []

            async def write_here() -> None:  # this process writes too
                for i in range(EVENTS_PER_TASK):
                    local.append((await store.persist("s", {"w": "parent", "i": i})).offset)
                    await asyncio.sleep(0.002)

            await asyncio.gather(_read_while(reader, writing), write_here())
            persisted = [offset for offsets in await writing for offset in offsets] + local
            await _finish(reader, persisted)
            assert len(persisted) == PROCESSES * TASKS_PER_PROCESS * EVENTS_PER_TASK + EVENTS_PER_TASK

    @url_test
    async def test_concurrent_claims_across_processes_have_exactly_one_winner(
        self, make_store_url: UrlFactory
    ) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.MULTI_PROCESS)
            keys = [f"race-{i}" for i in range(20)]
            for key in keys:
                await store.save_session(key, {"key": key}, 60)
            results = await self._workers(url, [{"op": "claim", "keys": keys}] * PROCESSES)
            wins = Counter(r["key"] for per_worker in results for r in per_worker if r is not None)
            assert wins == Counter(keys), f"claims that succeeded per key: {dict(wins)}"
            assert await store.claim_session(keys[0]) is None

    @url_test
    async def test_concurrent_leased_claims_across_processes_have_exactly_one_winner(
        self, make_store_url: UrlFactory
    ) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.MULTI_PROCESS)
            keys = [f"lease-race-{i}" for i in range(20)]
            for key in keys:
                await store.save_session(key, {"key": key}, 60)
            results = await self._workers(url, [{"op": "claim", "keys": keys, "lease": 60}] * PROCESSES)
            for n, key in enumerate(keys):
                got = [per_worker[n] for per_worker in results]
                assert sorted(map(str, got)) == sorted(
                    map(str, [{"key": key}] + ["busy"] * (PROCESSES - 1))
                ), key
            with pytest.raises(SessionBusyError):
                await store.claim_session(keys[0])  # the lease holds in this process too
            await store.save_session(keys[0], {"key": "back"}, 60)
            assert await store.claim_session(keys[0]) == {"key": "back"}

    @url_test
    async def test_concurrent_reserves_across_processes_have_exactly_one_winner(
        self, make_store_url: UrlFactory
    ) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.MULTI_PROCESS)
            keys = [f"race-{i}" for i in range(20)]
            results = await self._workers(url, [{"op": "reserve", "keys": keys, "lease": 60}] * PROCESSES)
            for n, key in enumerate(keys):
                states = [per_worker[n] for per_worker in results]
                assert states.count(KeyState.ACQUIRED.value) == 1, f"{key!r}: {states}"
                assert (await store.reserve_key(key, 60)).state is KeyState.PENDING

    @url_test
    async def test_two_stores_on_one_url_share_events_sessions_and_keys(
        self, make_store_url: UrlFactory
    ) -> None:
        url = make_store_url()
        async with self.opened(url) as one, self.opened(url) as two:
            self.require(one, Capability.MULTI_PROCESS)
            events = [await one.persist("s", 1), await two.persist("s", 2), await one.persist("s", 3)]
            assert events[0].offset < events[1].offset < events[2].offset
            assert_same_events(await read_all(two, "s"), events)
            assert_same_events(await one.fetch_since("s", events[0].offset), events[1:])
            assert await two.last_offset("s") == events[-1].offset
            await one.save_session("k", {"v": 1}, 30)
            assert await two.claim_session("k") == {"v": 1}
            assert await one.claim_session("k") is None
            await one.save_session("held", {"v": 2}, 30, lease=30)  # a connected client's record
            with pytest.raises(SessionBusyError):
                await two.claim_session("held")
            await one.save_session("held", {"v": 3}, 30)  # it disconnected
            assert await two.claim_session("held") == {"v": 3}
            assert (await two.reserve_key("op", 30)).state is KeyState.ACQUIRED
            assert (await one.reserve_key("op", 30)).state is KeyState.PENDING

    # -- durability ------------------------------------------------------------------------------
    @url_test
    async def test_events_and_epoch_survive_reopening(self, make_store_url: UrlFactory) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.DURABLE)
            events = [await store.persist("s", {"i": i}, rooms=["r"] if i % 2 else ()) for i in range(5)]
            empty_mark = await store.last_offset("later")
        async with self.opened(url) as store:
            assert_same_events(await read_all(store, "s"), events)
            assert_same_events(await store.fetch_since("s", events[1].offset), events[2:])
            assert await store.fetch_since("s", events[-1].offset) == []
            assert await store.last_offset("s") == events[-1].offset
            newer = await store.persist("s", "after restart")
            assert newer.offset > events[-1].offset
            assert_same_events(await store.fetch_since("s", events[-1].offset), [newer])
            later = await store.persist("later", 1)
            assert_same_events(await store.fetch_since("later", empty_mark), [later])

    @url_test
    async def test_sessions_and_keys_survive_reopening(self, make_store_url: UrlFactory) -> None:
        url = make_store_url()
        async with self.opened(url) as store:
            self.require(store, Capability.DURABLE)
            await store.save_session("pid", {"sid": "x", "rooms": ["a"]}, 60)
            await store.reserve_key("pending", 60)
            await store.reserve_key("done", 60)
            await store.complete_key("done", {"answer": 42}, 60)
        async with self.opened(url) as store:
            session = await store.claim_session("pid")
            assert session is not None
            assert_json_equal(session, {"sid": "x", "rooms": ["a"]})
            assert (await store.reserve_key("pending", 60)).state is KeyState.PENDING
            done = await store.reserve_key("done", 60)
            assert done.state is KeyState.DONE
            assert_json_equal(done.result, {"answer": 42})

    async def _workers(self, url: str, jobs: list[dict[str, Any]]) -> list[Any]:
        return await run_workers(
            url, self.store_options, jobs, imports=self.worker_imports, timeout=self.test_timeout
        )
