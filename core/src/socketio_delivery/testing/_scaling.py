"""Conformance test of the cost of a room-filtered read: it must not grow with the stream.

``fetch_since(stream, offset, rooms=...)`` costs O(events addressed to those rooms + events to
everyone + page), not O(stream) (see :meth:`socketio_delivery.store.EventStore.fetch_since`).
The test times the same read (10 matching events) in a small stream and in one
:attr:`RoomScalingTests.room_scaling_ratio` times larger, both filled with other rooms' events,
in the same test, and allows a generous factor between them: a store that walks the stream
shows about the ratio itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from ..store import EventStore
from ._base import ConformanceBase, store_test

__all__ = ["RoomScalingTests"]

#: Events addressed to the reader's room, at the end of each stream.
MATCHING = 10


class RoomScalingTests(ConformanceBase):
    #: Events of other rooms in the large stream (the small one holds this / ratio).
    room_scaling_events: ClassVar[int] = 100_000
    #: How much larger the large stream is than the small one.
    room_scaling_ratio: ClassVar[int] = 100
    #: Most the read may slow down from the small stream to the large one.
    room_scaling_factor: ClassVar[float] = 20.0
    #: A store whose room-filtered reads walk the stream declares it here (with the reason):
    #: the test then reports itself skipped with that reason; it never passes silently.
    room_reads_scan: ClassVar[str | None] = None

    @staticmethod
    async def _fill(store: EventStore, stream: str, others: int) -> None:
        for start in range(0, others, 1000):
            count = min(1000, others - start)
            await asyncio.gather(
                *(store.persist(stream, i, rooms=[f"other-{i % 1000}"]) for i in range(start, start + count))
            )
        for i in range(MATCHING):
            await store.persist(stream, {"mine": i}, rooms=["mine"])

    @staticmethod
    async def _best_read(store: EventStore, stream: str, rounds: int = 7) -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            page = await store.fetch_since(stream, None, rooms=["mine", "nobody"])
            best = min(best, time.perf_counter() - started)
            assert [e.data for e in page] == [{"mine": i} for i in range(MATCHING)]
        return best

    @store_test
    async def test_room_filtered_read_does_not_grow_with_the_stream(self, store: EventStore) -> None:
        """O(matching events + page), not O(stream): 100x the other rooms' events, not ~100x the time."""
        if self.room_reads_scan:
            pytest.skip(f"declared: room-filtered reads walk the stream ({self.room_reads_scan})")
        small, large = self.unique("rooms-small"), self.unique("rooms-large")
        await self._fill(store, small, self.room_scaling_events // self.room_scaling_ratio)
        await self._fill(store, large, self.room_scaling_events)
        await self._best_read(store, small, rounds=1)  # warm up (caches, scripts, connections)
        await self._best_read(store, large, rounds=1)
        fast, slow = [], []
        for _ in range(3):  # interleaved, so a busy moment of the machine hits both
            fast.append(await self._best_read(store, small, rounds=5))
            slow.append(await self._best_read(store, large, rounds=3))
            if min(slow) < self.room_scaling_factor * min(fast) / 2:
                break  # clearly within bounds: no need to measure more
        ratio = min(slow) / max(min(fast), 1e-6)
        assert ratio < self.room_scaling_factor, (
            f"a room-filtered read of {MATCHING} events took {ratio:.1f}x longer in a stream "
            f"{self.room_scaling_ratio}x larger ({min(fast) * 1000:.2f} ms -> {min(slow) * 1000:.2f} ms): "
            "it walks the stream instead of an index of the rooms (store.py: fetch_since)"
        )
