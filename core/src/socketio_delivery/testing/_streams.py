"""Conformance tests for event streams: persist, fetch_since, paging, rooms, payloads, errors."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ..errors import InvalidArgumentError, InvalidOffsetError, OffsetUnavailableError
from ..store import MAX_OFFSET_LENGTH, MAX_PAGE_SIZE, MAX_STREAM_LENGTH, Event, EventStore
from ._base import ConformanceBase, UrlFactory, store_test, url_test
from ._runner import EventLoop
from ._support import assert_json_equal, assert_same_event, assert_same_events, json_values, read_all

__all__ = ["StreamTests", "OffsetTests"]

ROOMS = ("a", "b", "c", "d")
_room_sets = st.lists(st.sampled_from(ROOMS), unique=True, max_size=3)

MALFORMED_OFFSETS: list[Any] = [
    123,
    1.5,
    b"bytes",
    ["list"],
    {"$gt": ""},
    "",
    "x" * (MAX_OFFSET_LENGTH + 1),
    "9" * 10_000,
    "garbage",
    "not an offset!",
    "' OR '1'='1",
    "\x00",
]


#: Counters no store reaches: 2**63, 2**64 - 1, 2**64, and far beyond (hex and decimal alike).
HUGE_COUNTERS = ("8000000000000000", "ffffffffffffffff", "10000000000000000", "9" * 40)
#: Added before or after a real offset: what only an unanchored pattern (``re.match``,
#: ``re.search``, ``$`` before a newline) would accept.
JUNK = ("\n", " ", "!", "\x00", "/x", "?", "#0")


def _with_huge_counters(offset: str) -> list[str]:
    """``offset`` with each run of hex digits in turn replaced by each of :data:`HUGE_COUNTERS`."""
    out: list[str] = []
    for match in re.finditer(r"[0-9a-fA-F]+", offset):
        for huge in HUGE_COUNTERS:
            candidate = offset[: match.start()] + huge + offset[match.end() :]
            if len(candidate) <= MAX_OFFSET_LENGTH:
                out.append(candidate)
    return out


def _matches(event_rooms: tuple[str, ...] | list[str], wanted: list[str] | None) -> bool:
    return wanted is None or not event_rooms or bool(set(event_rooms) & set(wanted))


class StreamTests(ConformanceBase):
    # -- persist -----------------------------------------------------------------------
    @store_test
    async def test_persist_returns_the_event_with_its_offset(self, store: EventStore) -> None:
        before = time.time()
        event = await store.persist("/chat", {"text": "hi"}, rooms=["r1", "r2"], exclude=["sid1"])
        assert isinstance(event, Event)
        assert isinstance(event.offset, str)
        assert 0 < len(event.offset) <= MAX_OFFSET_LENGTH
        assert_json_equal(event.data, {"text": "hi"})
        assert isinstance(event.rooms, tuple)
        assert set(event.rooms) == {"r1", "r2"}
        assert isinstance(event.exclude, tuple)
        assert set(event.exclude) == {"sid1"}
        assert abs(event.timestamp - before) < 600, "timestamp is seconds since the Unix epoch"
        (fetched,) = await store.fetch_since("/chat", None)
        assert_same_event(fetched, event)

    @store_test
    async def test_persist_offsets_strictly_increase_in_string_order(self, store: EventStore) -> None:
        events = [await store.persist("s", i) for i in range(40)]
        offsets = [e.offset for e in events]
        assert all(a < b for a, b in itertools.pairwise(offsets)), offsets
        assert_same_events(await read_all(store, "s"), events)

    @store_test
    async def test_concurrent_persists_get_distinct_string_ordered_offsets(self, store: EventStore) -> None:
        events = await asyncio.gather(*(store.persist("s", i) for i in range(60)))
        assert len({e.offset for e in events}) == 60
        full = await read_all(store, "s")
        assert [e.offset for e in full] == sorted(e.offset for e in events)

    # -- fetch_since ---------------------------------------------------------------------
    @store_test
    async def test_fetch_since_returns_events_strictly_after_the_offset(self, store: EventStore) -> None:
        events = [await store.persist("s", {"i": i}) for i in range(12)]
        for i, event in enumerate(events):
            assert_same_events(await store.fetch_since("s", event.offset), events[i + 1 :])

    @store_test
    async def test_fetch_since_none_starts_at_the_oldest_event(self, store: EventStore) -> None:
        events = [await store.persist("s", i) for i in range(5)]
        assert_same_events(await store.fetch_since("s", None), events)
        assert_same_events(await store.fetch_since("s", None, limit=2), events[:2])

    @store_test
    async def test_fetch_since_of_an_unknown_stream_is_empty(self, store: EventStore) -> None:
        assert await store.fetch_since("never-written", None) == []

    @store_test
    async def test_fetch_since_the_newest_offset_is_nothing_new(self, store: EventStore) -> None:
        events = [await store.persist("s", i) for i in range(3)]
        assert await store.fetch_since("s", events[-1].offset) == []

    @store_test
    async def test_fetch_since_respects_limit(self, store: EventStore) -> None:
        events = [await store.persist("s", i) for i in range(7)]
        for limit in (1, 3, 7, MAX_PAGE_SIZE):
            assert_same_events(await store.fetch_since("s", None, limit=limit), events[:limit])

    def test_paging_with_any_limit_reconstructs_the_persisted_sequence(
        self, make_store_url: UrlFactory
    ) -> None:
        with EventLoop() as loop:
            store_cm = self.opened(make_store_url())
            store = loop.run(store_cm.__aenter__())
            try:

                @self.hypothesis_settings()
                @given(
                    batches=st.lists(st.integers(min_value=1, max_value=8), min_size=0, max_size=6),
                    limit=st.integers(min_value=1, max_value=12),
                    start=st.integers(min_value=0, max_value=50),
                )
                def check(batches: list[int], limit: int, start: int) -> None:
                    loop.run(self._check_paging(store, batches, limit, start), timeout=self.test_timeout)

                check()
            finally:
                loop.run(store_cm.__aexit__(None, None, None))

    async def _check_paging(self, store: EventStore, batches: list[int], limit: int, start: int) -> None:
        stream = self.unique("page")
        persisted: list[Event] = []
        for n, size in enumerate(batches):  # each batch persisted concurrently
            persisted += await asyncio.gather(
                *(store.persist(stream, {"batch": n, "i": i}) for i in range(size))
            )
        persisted.sort(key=lambda e: e.offset)
        assert_same_events(await read_all(store, stream, limit=limit), persisted)
        if persisted:
            i = start % len(persisted)
            rest = await read_all(store, stream, persisted[i].offset, limit=limit)
            assert_same_events(rest, persisted[i + 1 :])

    # -- rooms / exclude ------------------------------------------------------------------
    @store_test
    async def test_rooms_filter_keeps_events_for_everyone_and_for_any_wanted_room(
        self, store: EventStore
    ) -> None:
        everyone = await store.persist("s", 0)
        to_a = await store.persist("s", 1, rooms=["a"])
        to_b = await store.persist("s", 2, rooms=["b"])
        to_ab = await store.persist("s", 3, rooms=["a", "b"])
        assert_same_events(await store.fetch_since("s", None, rooms=["a"]), [everyone, to_a, to_ab])
        assert_same_events(await store.fetch_since("s", None, rooms=["b", "zz"]), [everyone, to_b, to_ab])
        assert_same_events(await store.fetch_since("s", None, rooms=["zz"]), [everyone])
        assert_same_events(await store.fetch_since("s", None, rooms=[]), [everyone])
        assert_same_events(await store.fetch_since("s", None, rooms=None), [everyone, to_a, to_b, to_ab])
        assert_same_events(
            await store.fetch_since("s", None, rooms={"a", "b"}), [everyone, to_a, to_b, to_ab]
        )

    def test_rooms_filter_with_paging_matches_the_definition(self, make_store_url: UrlFactory) -> None:
        with EventLoop() as loop:
            store_cm = self.opened(make_store_url())
            store = loop.run(store_cm.__aenter__())
            try:

                @self.hypothesis_settings()
                @given(
                    event_rooms=st.lists(_room_sets, max_size=15),
                    wanted=st.none() | _room_sets,
                    limit=st.integers(min_value=1, max_value=6),
                )
                def check(event_rooms: list[list[str]], wanted: list[str] | None, limit: int) -> None:
                    loop.run(self._check_rooms(store, event_rooms, wanted, limit), timeout=self.test_timeout)

                check()
            finally:
                loop.run(store_cm.__aexit__(None, None, None))

    async def _check_rooms(
        self, store: EventStore, event_rooms: list[list[str]], wanted: list[str] | None, limit: int
    ) -> None:
        stream = self.unique("rooms")
        persisted = [await store.persist(stream, i, rooms=r) for i, r in enumerate(event_rooms)]
        expected = [e for e in persisted if _matches(e.rooms, wanted)]
        got = await read_all(store, stream, rooms=wanted, limit=limit)
        assert_same_events(got, expected)

    @store_test
    async def test_exclude_round_trips(self, store: EventStore) -> None:
        event = await store.persist("s", "x", rooms=("room",), exclude=("sid-1", "sid-2"))
        plain = await store.persist("s", "y")
        got = await store.fetch_since("s", None)
        assert_same_events(got, [event, plain])
        assert set(got[0].exclude) == {"sid-1", "sid-2"}
        assert got[1].exclude == ()
        assert got[1].rooms == ()

    # -- payloads -----------------------------------------------------------------------------
    @store_test
    async def test_json_payloads_round_trip(self, store: EventStore) -> None:
        payloads: list[Any] = [
            None,
            True,
            False,
            0,
            -(2**53),
            2**63 - 1,
            0.1,
            -2.5e-300,
            1e308,
            "",
            "héllo wörld 漢字 🎉 \n\t\"'\\",
            [],
            {},
            [1, "two", 3.0, None, [False, {"deep": [[[]]]}]],
            {"nested": {"list": [1, 2, {"x": None}], "float": 1.5, "unicode": "ñ"}},
            (1, 2),  # tuples come back as lists
        ]
        for payload in payloads:
            event = await store.persist("s", payload)
            assert_json_equal(event.data, payload)
        fetched = await store.fetch_since("s", None)
        assert len(fetched) == len(payloads)
        for got, payload in zip(fetched, payloads, strict=True):
            assert_json_equal(got.data, payload)

    @store_test
    async def test_payload_keys_special_to_backends_round_trip(self, store: EventStore) -> None:
        payload = {"$gt": 1, "a.b": {"$set": "x"}, "": "empty", "_id": 7, "ключ": [None], "%_*?[]": "y"}
        await store.persist("s", payload)
        (got,) = await store.fetch_since("s", None)
        assert_json_equal(got.data, payload)

    def test_any_json_payload_round_trips(self, make_store_url: UrlFactory) -> None:
        with EventLoop() as loop:
            store_cm = self.opened(make_store_url())
            store = loop.run(store_cm.__aenter__())
            try:

                @self.hypothesis_settings()
                @given(payload=json_values)
                def check(payload: Any) -> None:
                    loop.run(self._check_payload(store, payload), timeout=self.test_timeout)

                check()
            finally:
                loop.run(store_cm.__aexit__(None, None, None))

    async def _check_payload(self, store: EventStore, payload: Any) -> None:
        stream = self.unique("json")
        await store.persist(stream, payload)
        (got,) = await store.fetch_since(stream, None)
        assert_json_equal(got.data, payload)

    @store_test
    async def test_non_json_data_is_an_invalid_argument(self, store: EventStore) -> None:
        for bad in ({1, 2}, b"bytes", object(), {"k": object()}, [1, {2, 3}], 1j):
            with pytest.raises(InvalidArgumentError):
                await store.persist("s", bad)
        assert await store.fetch_since("s", None) == []

    # -- last_offset ------------------------------------------------------------------------


class OffsetTests(ConformanceBase):
    """Offsets: last_offset, independence of streams, malformed and unavailable offsets."""

    @store_test
    async def test_last_offset_then_fetch_since_returns_exactly_later_events(self, store: EventStore) -> None:
        for i in range(4):
            await store.persist("s", i)
        mark = await store.last_offset("s")
        assert isinstance(mark, str)
        assert 0 < len(mark) <= MAX_OFFSET_LENGTH
        assert await store.fetch_since("s", mark) == []
        later = [await store.persist("s", i) for i in range(4, 7)]
        assert_same_events(await store.fetch_since("s", mark), later)
        assert await store.last_offset("s") == later[-1].offset

    @store_test
    async def test_last_offset_of_an_empty_stream_then_fetch_since_returns_later_events(
        self, store: EventStore
    ) -> None:
        mark = await store.last_offset("empty")
        assert await store.fetch_since("empty", mark) == []
        later = [await store.persist("empty", i) for i in range(3)]
        assert_same_events(await store.fetch_since("empty", mark), later)
        assert all(mark < e.offset for e in later)

    # -- streams -----------------------------------------------------------------------------
    @store_test
    async def test_streams_are_independent(self, store: EventStore) -> None:
        names = [
            "/",
            "/chat",
            "/chat*",
            "/chat%",
            "/chat_",
            "/chat?",
            "a:b",
            "{x}",
            "[ab]",
            "ñ/漢字",
            "s" * 256,
        ]
        events = {
            name: [await store.persist(name, {"stream": name, "i": i}) for i in range(2)] for name in names
        }
        for name in names:
            assert_same_events(await read_all(store, name), events[name])
            assert await store.last_offset(name) == events[name][-1].offset

    # -- errors -------------------------------------------------------------------------------
    @store_test
    async def test_malformed_offsets_raise_invalid_offset(self, store: EventStore) -> None:
        await store.persist("s", 1)
        for bad in MALFORMED_OFFSETS:
            with pytest.raises(InvalidOffsetError):
                await store.fetch_since("s", bad)
            with pytest.raises(InvalidOffsetError):
                await store.fetch_since("unknown-stream", bad)
        assert len(await store.fetch_since("s", None)) == 1

    @store_test
    async def test_offsets_with_junk_around_them_raise_invalid_offset(self, store: EventStore) -> None:
        """Offsets are matched whole: trailing or leading junk is malformed, not ignored."""
        first = await store.persist("s", 1)
        await store.persist("s", 2)
        for junk in JUNK:
            for bad in (first.offset + junk, junk + first.offset):
                with pytest.raises(InvalidOffsetError):
                    await store.fetch_since("s", bad)

    @store_test
    async def test_counters_past_63_bits_raise_an_offset_error(self, store: EventStore) -> None:
        """2**63, 2**64 and larger counters: InvalidOffsetError or OffsetUnavailableError, nothing else."""
        event = await store.persist("s", 1)
        empty_mark = await store.last_offset("empty")
        for offset, stream in ((event.offset, "s"), (empty_mark, "empty")):
            for bad in _with_huge_counters(offset):
                try:
                    await store.fetch_since(stream, bad)
                except (InvalidOffsetError, OffsetUnavailableError):
                    continue
                except Exception as exc:
                    pytest.fail(
                        f"fetch_since({stream!r}, {bad!r}) raised {type(exc).__name__}: {exc}; "
                        "expected InvalidOffsetError or OffsetUnavailableError"
                    )
                pytest.fail(f"fetch_since({stream!r}, {bad!r}) accepted a counter no store reaches")
        assert len(await store.fetch_since("s", None)) == 1

    @store_test
    async def test_offset_ahead_of_the_stream_is_unavailable(self, store: EventStore) -> None:
        """An offset past the newest event is refused: resuming there would skip what comes next."""
        await store.persist("short", "only")
        mark = await store.last_offset("short")
        events = [await store.persist("long", i) for i in range(5)]
        for ahead in (events[-1].offset, events[2].offset):
            with pytest.raises(OffsetUnavailableError):
                await store.fetch_since("short", ahead)
        later = await store.persist("short", "later")
        assert [e.offset for e in await store.fetch_since("short", mark)] == [later.offset]

    @store_test
    async def test_bad_stream_limit_or_rooms_raise_invalid_argument(self, store: EventStore) -> None:
        bad_streams: list[Any] = ["", None, 123, b"s", "x" * (MAX_STREAM_LENGTH + 1)]
        for stream in bad_streams:
            with pytest.raises(InvalidArgumentError):
                await store.persist(stream, 1)
            with pytest.raises(InvalidArgumentError):
                await store.fetch_since(stream, None)
            with pytest.raises(InvalidArgumentError):
                await store.last_offset(stream)
            if stream is not None:
                with pytest.raises(InvalidArgumentError):
                    await store.trim(stream)
        bad_limits: list[Any] = [0, -1, MAX_PAGE_SIZE + 1, 1.5, True, "10", None]
        for limit in bad_limits:
            with pytest.raises(InvalidArgumentError):
                await store.fetch_since("s", None, limit=limit)
        bad_rooms: list[Any] = ["room", b"room", [1], ["ok", None], 5]
        for rooms in bad_rooms:
            with pytest.raises(InvalidArgumentError):
                await store.persist("s", 1, rooms=rooms)
            with pytest.raises(InvalidArgumentError):
                await store.persist("s", 1, exclude=rooms)
            with pytest.raises(InvalidArgumentError):
                await store.fetch_since("s", None, rooms=rooms)
        assert await store.fetch_since("s", None) == []

    @url_test
    async def test_offset_from_another_store_is_unavailable(self, make_store_url: UrlFactory) -> None:
        async with self.opened(make_store_url()) as first:
            event = await first.persist("s", 1)
            empty_mark = await first.last_offset("never")
        async with self.opened(make_store_url()) as other:
            with pytest.raises(OffsetUnavailableError):
                await other.fetch_since("s", event.offset)  # stream absent there
            await other.persist("s", 2)
            await other.persist("never", 2)
            with pytest.raises(OffsetUnavailableError):
                await other.fetch_since("s", event.offset)
            with pytest.raises(OffsetUnavailableError):
                await other.fetch_since("never", empty_mark)
