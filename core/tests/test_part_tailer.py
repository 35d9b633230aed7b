"""Unit tests of :mod:`socketio_delivery.tailer`: live delivery of a stream, handover, gaps, poison."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import pytest
from socketio_delivery.errors import (
    EpochChangedError,
    OffsetUnavailableError,
    StoreError,
    UndeliveredError,
)
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Event
from socketio_delivery.tailer import EPOCH_CHANGED, EVENTS_TRIMMED, Tailer

S = "/"


class Recorder:
    """A ``deliver`` that records ``(offset, also_skip)`` and fails for the offsets in ``poison``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.poison: set[str] = set()

    async def __call__(self, event: Event, also_skip: list[str]) -> None:
        if event.offset in self.poison:
            raise ValueError("cannot encode")
        self.calls.append((event.offset, list(also_skip)))

    @property
    def offsets(self) -> list[str]:
        return [offset for offset, _ in self.calls]


class GapOnce(MemoryEventStore):
    """Raises ``error`` on the next read from an offset (not from the oldest), once."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None
        self.reads_from_oldest = 0

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        if offset is None:
            self.reads_from_oldest += 1
        elif self.error is not None:
            error, self.error = self.error, None
            raise error
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)


class FailingReads(MemoryEventStore):
    """Every read raises ``error`` while ``failures`` > 0."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def persist(store: MemoryEventStore, n: int, rooms: tuple[str, ...] = ()) -> list[str]:
    return [(await store.persist(S, {"e": "ev", "a": [i]}, rooms=rooms)).offset for i in range(n)]


def tailer_of(store: MemoryEventStore, deliver: Recorder, **kwargs: Any) -> Tailer:
    kwargs.setdefault("poll_interval", None)
    kwargs.setdefault("page_size", DEFAULT_PAGE_SIZE)
    return Tailer(store, S, deliver, **kwargs)


async def test_it_starts_at_the_end_of_the_stream_and_delivers_in_order() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    await persist(store, 2)  # before start: not live any more
    tailer = tailer_of(store, deliver)
    await tailer.start()
    try:
        offsets = await persist(store, 3)
        tailer.wake()
        await until(lambda: tailer.position == offsets[-1])
        assert deliver.offsets == offsets
    finally:
        await tailer.stop()


async def test_drain_delivers_one_page_at_a_time() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver, page_size=2)
    tailer.position = await store.last_offset(S)
    offsets = await persist(store, 3)
    assert await tailer.drain() is True
    assert deliver.offsets == offsets[:2]
    assert await tailer.drain() is True
    assert await tailer.drain() is False
    assert deliver.offsets == offsets
    assert tailer.position == offsets[-1]


async def test_an_event_that_fails_to_deliver_is_skipped_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = await store.last_offset(S)
    offsets = await persist(store, 3)
    deliver.poison.add(offsets[1])
    await tailer.drain()
    await tailer.drain()
    assert deliver.offsets == [offsets[0], offsets[2]]
    assert tailer.failures == 1
    assert tailer.position == offsets[2]
    assert [r.message for r in caplog.records].count(
        f"stream '/': event {offsets[1]} could not be delivered, skipped (ValueError: cannot encode)"
    ) == 1
    with pytest.raises(UndeliveredError, match="cannot encode") as info:
        await tailer.delivered(offsets[1], 1)
    assert info.value.offset == offsets[1]
    assert await tailer.delivered(offsets[2], 1) is True


async def test_emit_waiting_for_a_failed_event_raises_undelivered() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    await tailer.start()
    try:
        good, bad = await persist(store, 2)
        deliver.poison.add(bad)
        waiting_bad = asyncio.create_task(tailer.delivered(bad, 2))
        waiting_good = asyncio.create_task(tailer.delivered(good, 2))
        await asyncio.sleep(0)
        tailer.wake()
        with pytest.raises(UndeliveredError):
            await waiting_bad
        assert await waiting_good is True
    finally:
        await tailer.stop()


async def test_waiters_are_answered_as_live_delivery_passes_their_offsets() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver, page_size=1)
    tailer.position = await store.last_offset(S)
    first, second = await persist(store, 2)
    waiting = [asyncio.create_task(tailer.delivered(o, 2)) for o in (second, first)]
    await asyncio.sleep(0)
    await tailer.drain()
    await asyncio.sleep(0.01)
    assert [w.done() for w in waiting] == [False, True]
    await tailer.drain()
    assert await asyncio.gather(*waiting) == [True, True]


async def test_delivered_times_out_when_live_delivery_does_not_get_there() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = await store.last_offset(S)
    (offset,) = await persist(store, 1)  # never drained
    assert await tailer.delivered(offset, 0.02) is False


async def test_only_the_latest_failures_are_remembered() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = await store.last_offset(S)
    offsets = await persist(store, 257)
    deliver.poison.update(offsets)
    await tailer.drain()
    assert tailer.failures == 257
    assert await tailer.delivered(offsets[0], 1) is True  # forgotten
    with pytest.raises(UndeliveredError):
        await tailer.delivered(offsets[-1], 1)


async def test_a_held_socket_is_skipped_until_released() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = await store.last_offset(S)
    tailer.hold("sid1")
    await persist(store, 1)
    await tailer.drain()
    tailer.release("sid1")
    tailer.release("unknown")  # no error
    await persist(store, 1)
    await tailer.drain()
    assert [skip for _, skip in deliver.calls] == [["sid1"], []]


async def test_handover_releases_the_hold_while_no_delivery_is_in_progress() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = target = await store.last_offset(S)
    tailer.hold("sid1")
    seen: list[bool] = []

    async def connect() -> None:
        seen.append(tailer.lock.locked())

    assert await tailer.handover("sid1", target, target, connect) is True
    assert seen == [True]
    assert tailer.held == {}


async def test_handover_refuses_when_live_delivery_moved_on() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    target = tailer.position = await store.last_offset(S)
    tailer.hold("sid1")
    await persist(store, 1)
    await tailer.drain()
    connected: list[int] = []

    async def connect() -> None:
        connected.append(1)

    assert await tailer.handover("sid1", target, target, connect) is False
    assert connected == []
    assert tailer.held == {"sid1": None}
    assert await tailer.handover("sid1", tailer.position, tailer.position, connect) is True


async def test_handover_keeps_a_floor_when_the_client_is_ahead() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver, page_size=1)
    target = tailer.position = await store.last_offset(S)
    offsets = await persist(store, 3)
    tailer.hold("sid1")

    async def connect() -> None:
        return None

    # the client got offsets[1] from a node that was ahead of this one
    assert await tailer.handover("sid1", target, offsets[1], connect) is True
    assert tailer.held == {"sid1": offsets[1]}
    for _ in offsets:
        await tailer.drain()
    assert deliver.calls == [(offsets[0], ["sid1"]), (offsets[1], ["sid1"]), (offsets[2], [])]
    assert tailer.held == {}


async def test_a_gap_calls_on_gap_then_reads_from_the_oldest_event() -> None:
    store, deliver = GapOnce(), Recorder()
    gaps: list[tuple[str, bool]] = []
    tailer: Tailer

    async def on_gap(reason: str) -> None:
        gaps.append((reason, tailer.lock.locked()))

    tailer = tailer_of(store, deliver, on_gap=on_gap)
    await tailer.start()
    try:
        offsets = await persist(store, 2)
        store.error = EpochChangedError("wiped")
        tailer.wake()
        await until(lambda: tailer.position == offsets[-1])
        assert gaps == [(EPOCH_CHANGED, True)]
        assert store.reads_from_oldest == 1
        assert deliver.offsets == offsets
        assert await tailer.delivered(offsets[-1], 1) is True
    finally:
        await tailer.stop()


async def test_a_trimmed_gap_is_told_apart_from_an_epoch_change() -> None:
    store, deliver = GapOnce(), Recorder()
    gaps: list[str] = []

    async def on_gap(reason: str) -> None:
        gaps.append(reason)

    tailer = tailer_of(store, deliver, on_gap=on_gap)
    await tailer.start()
    try:
        (offset,) = await persist(store, 1)
        store.error = OffsetUnavailableError("trimmed")
        tailer.wake()
        await until(lambda: tailer.position == offset)
        assert gaps == [EVENTS_TRIMMED]
    finally:
        await tailer.stop()


async def test_a_gap_on_an_empty_stream_resumes_at_its_end_and_releases_waiters() -> None:
    store, deliver = GapOnce(), Recorder()
    tailer = tailer_of(store, deliver)
    tailer.position = "ffffffff-000000000009"  # from an epoch this store never had
    tailer._from_oldest = True  # what a gap sets
    assert await tailer.drain() is False
    assert tailer.position == await store.last_offset(S)
    assert tailer._from_oldest is False


async def test_a_failing_on_gap_is_logged_and_delivery_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    store, deliver = GapOnce(), Recorder()

    async def on_gap(reason: str) -> None:
        raise RuntimeError("cannot tell")

    tailer = tailer_of(store, deliver, on_gap=on_gap)
    await tailer.start()
    try:
        (offset,) = await persist(store, 1)
        store.error = EpochChangedError("wiped")
        tailer.wake()
        await until(lambda: tailer.position == offset)
        assert "telling clients about the gap failed" in caplog.text
    finally:
        await tailer.stop()


@pytest.mark.parametrize("error", [StoreError("down"), RuntimeError("odd")])
async def test_read_errors_are_retried(error: Exception) -> None:
    store, deliver = FailingReads(0, error), Recorder()
    tailer = tailer_of(store, deliver)
    await tailer.start()
    try:
        store.failures = 2
        (offset,) = await persist(store, 1)
        tailer.wake()
        await until(lambda: tailer.position == offset)
        assert deliver.offsets == [offset]
    finally:
        await tailer.stop()


async def test_it_polls_when_other_processes_write() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver, poll_interval=0.01)
    await tailer.start()
    try:
        (offset,) = await persist(store, 1)  # no wake: another process wrote it
        await until(lambda: tailer.position == offset)
    finally:
        await tailer.stop()


async def test_without_polling_it_waits_to_be_woken() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    await tailer.start()
    try:
        await until(lambda: len(tailer._wake._waiters) == 1)  # waiting to be woken
        (offset,) = await persist(store, 1)
        await asyncio.sleep(0.05)
        assert deliver.offsets == []
        tailer.wake()
        await until(lambda: tailer.position == offset)
    finally:
        await tailer.stop()


async def test_stop_ends_the_task_and_answers_every_waiter() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    tailer = tailer_of(store, deliver)
    await tailer.start()
    (offset,) = await persist(store, 1)
    waiting = asyncio.create_task(tailer.delivered(offset, 5))
    await asyncio.sleep(0)
    await tailer.stop()
    await asyncio.wait_for(waiting, 1)  # answered at once (today: as delivered, see the report)
    assert tailer._task is None
    await tailer.stop()  # twice is fine


async def test_a_slow_delivery_does_not_interleave_with_a_handover() -> None:
    store = MemoryEventStore()
    gate, order = asyncio.Event(), []

    async def slow(event: Event, also_skip: list[str]) -> None:
        order.append("deliver start")
        await gate.wait()
        order.append("deliver end")

    tailer = Tailer(store, S, slow, poll_interval=None, page_size=10)
    tailer.position = await store.last_offset(S)
    await persist(store, 1)
    drain = asyncio.create_task(tailer.drain())
    await asyncio.sleep(0.01)

    async def connect() -> None:
        order.append("connect")

    handover: Awaitable[bool] = tailer.handover("sid1", tailer.position, "", connect)
    task = asyncio.ensure_future(handover)
    await asyncio.sleep(0.01)
    gate.set()
    await drain
    assert await task is False  # the position moved while it waited: replay further first
    assert order == ["deliver start", "deliver end"]


@pytest.mark.xfail(
    strict=True,
    reason="bug: delivered() compares an offset of the new epoch with the position in the old one "
    "(offsets of two epochs do not compare), so an emit persisted right after the store was wiped "
    "can be reported delivered before the tailer saw the gap or sent it",
)
async def test_an_emit_into_a_new_epoch_is_not_reported_delivered_before_it_is_sent() -> None:
    store, deliver = MemoryEventStore(), Recorder()
    store.epoch = "ffffffff"
    tailer = tailer_of(store, deliver)
    tailer.position = await store.last_offset(S)
    await persist(store, 1)
    await tailer.drain()
    store.epoch, store._streams = "00000000", {}  # the data was wiped: a new epoch
    (offset,) = await persist(store, 1)
    assert await tailer.delivered(offset, 0.05) is False
    assert offset not in deliver.offsets
