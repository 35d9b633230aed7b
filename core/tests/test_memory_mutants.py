"""The conformance suite catches broken stores: each broken variant of the memory store fails
the test named after the guarantee it breaks (and the real memory store passes it)."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pytest
from socketio_delivery import (
    Event,
    InvalidOffsetError,
    KeyState,
    OffsetUnavailableError,
    Reservation,
    register,
)
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.registry import unregister
from socketio_delivery.testing import EventStoreConformance
from socketio_delivery.validate import check_offset, check_stream


class GeneratesThenInserts(MemoryEventStore):
    """Takes an offset, yields to the loop, then inserts: the classic late-arrival race."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._log: dict[str, list[Event]] = {}
        self._counter = itertools.count(1)

    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        check_stream(stream)
        seq = next(self._counter)
        if seq % 2:
            await asyncio.sleep(0.002)
        event = Event(self._offset(seq), data, tuple(rooms), tuple(exclude), time.time())
        log = self._log.setdefault(stream, [])
        log.insert(next((i for i, e in enumerate(log) if e.offset > event.offset), len(log)), event)
        return event

    async def fetch_since(self, stream: str, offset: str | None, **kw: Any) -> list[Event]:
        after = "" if offset is None else offset
        return [e for e in self._log.get(stream, []) if e.offset > after][: kw.get("limit", 500)]


class ClaimsInTwoSteps(MemoryEventStore):
    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        item = self._sessions.get(key)
        await asyncio.sleep(0)
        self._sessions.pop(key, None)
        return None if item is None else item[1]


class ReservesInTwoSteps(MemoryEventStore):
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        item = self._keys.get(key)
        await asyncio.sleep(0)
        if item is not None:
            return Reservation(item[0])
        self._keys[key] = (KeyState.PENDING, time.monotonic() + lease, None)
        return Reservation(KeyState.ACQUIRED)


class HasNoEpoch(MemoryEventStore):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.epoch = "00000000"


class FetchesInclusive(MemoryEventStore):
    async def fetch_since(self, stream: str, offset: str | None, **kw: Any) -> list[Event]:
        events = await super().fetch_since(stream, offset, **kw)
        same = [e for e in await super().fetch_since(stream, None, limit=10_000) if e.offset == offset]
        return same + events


class ForgetsWhatWasTrimmed(MemoryEventStore):
    async def fetch_since(self, stream: str, offset: str | None, **kw: Any) -> list[Event]:
        for s in self._streams.values():
            s.trimmed_upto = 0
        return await super().fetch_since(stream, offset, **kw)


class FiltersRoomsWrongly(MemoryEventStore):
    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: Collection[str] | None = None, limit: int = 500
    ) -> list[Event]:
        events = await super().fetch_since(stream, offset, limit=limit)
        wanted = set(rooms or ())
        return events if rooms is None else [e for e in events if set(e.rooms) <= wanted]


class IgnoresSessionTTL(MemoryEventStore):
    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        item = self._sessions.pop(key, None)
        return None if item is None else item[1]


class DeletesLeasedClaims(MemoryEventStore):
    """Treats a leased claim as a plain one: a process that dies mid-recovery loses the session."""

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        return await super().claim_session(key)


class IgnoresSaveLease(MemoryEventStore):
    """Saves a leased record as a free one: a connected client's session can be taken over."""

    async def save_session(self, key: str, record: Any, ttl: float, *, lease: float | None = None) -> None:
        await super().save_session(key, record, ttl)


class AcceptsOffsetsAhead(MemoryEventStore):
    """Answers "nothing new" for an offset past the newest event (a client then skips events)."""

    async def fetch_since(self, stream: str, offset: str | None, **kw: Any) -> list[Event]:
        s = self._streams.get(stream)
        if offset is not None and self._seq_of(offset) > (s.last_seq if s else 0):
            return []
        return await super().fetch_since(stream, offset, **kw)


class MatchesUnanchored(MemoryEventStore):
    """Parses offsets with ``re.match``: trailing junk is ignored instead of refused."""

    def _seq_of(self, offset: object) -> int:
        text = check_offset(offset)
        match = re.match(r"([0-9a-f]{8})-([0-9a-f]{12})", text)
        if match is None:
            raise InvalidOffsetError(f"{text!r} is not an offset")
        if match.group(1) != self.epoch:
            raise OffsetUnavailableError("another epoch", offset=text)
        return int(match.group(2), 16)


class OverflowsOnHugeCounters(MemoryEventStore):
    """Reads counters into a signed 64-bit integer as SQLite does: OverflowError past 2**63."""

    def _seq_of(self, offset: object) -> int:
        text = check_offset(offset)
        match = re.fullmatch(r"([0-9a-f]{8})-([0-9a-f]{1,40})", text)
        if match is None:
            raise InvalidOffsetError(f"{text!r} is not an offset")
        seq = int(match.group(2), 16)
        if seq >= 2**63:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return seq


class ScansForRooms(MemoryEventStore):
    """Filters rooms with a loop over every event after the offset, as the memory store did."""

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: Collection[str] | None = None, limit: int = 500
    ) -> list[Event]:
        first = await super().fetch_since(stream, offset, limit=1)  # the checks
        s = self._streams.get(stream)
        if rooms is None or s is None or not first:
            return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)
        wanted = set(rooms)
        seqs = []
        for i in range(s.start + (self._seq_of(first[0].offset) - s.base - s.start), len(s.rooms)):
            if not s.rooms[i] or not wanted.isdisjoint(s.rooms[i]):
                seqs.append(s.base + i)
                if len(seqs) == limit:
                    break
        return [s.event(seq, self.epoch) for seq in seqs]


CASES: list[tuple[type[MemoryEventStore], str]] = [
    (GeneratesThenInserts, "test_no_late_arrivals_under_concurrent_writer_tasks"),
    (ClaimsInTwoSteps, "test_concurrent_claims_have_exactly_one_winner"),
    (DeletesLeasedClaims, "test_leased_claim_hides_the_record_until_the_lease_runs_out"),
    (IgnoresSaveLease, "test_leased_save_hides_the_record_until_the_lease_runs_out"),
    (ReservesInTwoSteps, "test_concurrent_reserves_have_exactly_one_winner"),
    (HasNoEpoch, "test_offset_from_another_store_is_unavailable"),
    (FetchesInclusive, "test_fetch_since_returns_events_strictly_after_the_offset"),
    (ForgetsWhatWasTrimmed, "test_offset_trimmed_by_max_events_is_unavailable"),
    (FiltersRoomsWrongly, "test_rooms_filter_keeps_events_for_everyone_and_for_any_wanted_room"),
    (IgnoresSessionTTL, "test_session_expires_after_its_ttl"),
    (AcceptsOffsetsAhead, "test_offset_ahead_of_the_stream_is_unavailable"),
    (MatchesUnanchored, "test_offsets_with_junk_around_them_raise_invalid_offset"),
    (OverflowsOnHugeCounters, "test_counters_past_63_bits_raise_an_offset_error"),
    (ScansForRooms, "test_room_filtered_read_does_not_grow_with_the_stream"),
]

_schemes = (f"broken{n}" for n in itertools.count())


@pytest.fixture
def scheme_for() -> Iterator[Callable[[type[MemoryEventStore]], str]]:
    made: list[str] = []

    def make(cls: type[MemoryEventStore]) -> str:
        scheme = next(_schemes)
        register(scheme, cls.from_url)
        made.append(scheme)
        return scheme

    yield make
    for scheme in made:
        unregister(scheme)


@pytest.mark.parametrize(("broken", "test_name"), CASES, ids=[c[0].__name__ for c in CASES])
def test_suite_fails_a_store_that_breaks_the_guarantee(
    broken: type[MemoryEventStore],
    test_name: str,
    scheme_for: Callable[[type[MemoryEventStore]], str],
) -> None:
    suite = EventStoreConformance()
    scheme = scheme_for(broken)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        getattr(suite, test_name)(lambda: f"{scheme}://")
    getattr(suite, test_name)(lambda: "memory://")  # the reference store passes the same test
