"""Unit tests of :mod:`socketio_delivery.sessions`: the session book and its saves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest
import socketio
from socketio_delivery.errors import SessionBusyError, StoreError
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.recovery import SessionState
from socketio_delivery.sessions import SessionBook

NS = "/"


class FakeServer:
    """The one thing the book asks of python-socketio: ``get_session``."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], Any] = {}

    async def get_session(self, sid: str, namespace: str = NS) -> Any:
        return self.sessions[(sid, namespace)]


class CountingStore(MemoryEventStore):
    """Counts session saves (and the most running at once); fails them while ``error`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0
        self.running = 0
        self.most = 0
        self.error: Exception | None = None

    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        if self.error is not None:
            raise self.error
        self.saves += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0)
            await super().save_session(key, record, ttl, lease=lease)
        finally:
            self.running -= 1


def book_of(
    store: MemoryEventStore | None = None, position: str | None = "p5", **kwargs: Any
) -> tuple[SessionBook, FakeServer, MemoryEventStore]:
    server, store = FakeServer(), store or MemoryEventStore()
    book = SessionBook(
        cast(socketio.AsyncServer, server),
        store,
        kwargs.get("recovery_window", 60.0),
        kwargs.get("session_lease", 10.0),
        position_of=lambda namespace: position,
    )
    return book, server, store


def state_of(sid: str = "sid1", namespace: str = NS, **kwargs: Any) -> SessionState:
    return SessionState(sid=sid, pid=f"pid-{sid}", namespace=namespace, first_position="p1", **kwargs)


async def test_entering_a_room_remembers_the_live_position_and_marks_the_socket_changed() -> None:
    book, _, store = book_of(store=CountingStore())
    state = state_of()
    book.add(state)
    book.entered("sid1", NS, "lobby")
    book.entered("sid1", NS, "sid1")  # its own room: not recorded
    book.entered("sid1", NS, None)  # not a room name
    book.entered("other", NS, "lobby")  # not a socket of the book
    assert state.rooms == {"lobby": "p5"}
    await book.flush()
    assert cast(CountingStore, store).saves == 1


async def test_entering_a_room_twice_keeps_the_first_position() -> None:
    positions = iter(["p5", "p9"])
    book = SessionBook(
        cast(socketio.AsyncServer, FakeServer()),
        MemoryEventStore(),
        60,
        10,
        position_of=lambda ns: next(positions),
    )
    state = state_of()
    book.add(state)
    book.entered("sid1", NS, "lobby")
    book.entered("sid1", NS, "lobby")
    assert state.rooms == {"lobby": "p5"}


async def test_a_room_entered_before_live_delivery_starts_counts_from_the_first_position() -> None:
    book, _, _ = book_of(position=None)
    state = state_of()
    book.add(state)
    book.entered("sid1", NS, "lobby")
    assert state.rooms == {"lobby": "p1"}


async def test_leaving_a_room_it_was_in_marks_it_changed_and_others_do_not() -> None:
    book, _, store = book_of(store=CountingStore())
    state = state_of(rooms={"a": "p1"})
    book.add(state)
    book.left("sid1", NS, "not-in")
    book.left("ghost", NS, "a")
    await book.flush()
    assert cast(CountingStore, store).saves == 0
    book.left("sid1", NS, "a")
    await book.flush()
    assert state.rooms == {}
    assert cast(CountingStore, store).saves == 1


async def test_touched_marks_only_sockets_of_the_book() -> None:
    book, _, store = book_of(store=CountingStore())
    book.add(state_of())
    book.touched("ghost", NS)
    await book.flush()
    assert cast(CountingStore, store).saves == 0
    book.touched("sid1", NS)
    await book.flush()
    await book.flush()  # saved once: the dirty set was emptied
    assert cast(CountingStore, store).saves == 1


async def test_a_connected_socket_is_saved_leased_with_its_data_sent_and_position() -> None:
    book, server, store = book_of()
    state = state_of(rooms={"a": "p2"})
    book.add(state)
    server.sessions[("sid1", NS)] = {"user": "ann"}
    book.sent_to(NS)["sid1"] = "p4"
    book.touched("sid1", NS)
    await book.flush()
    with pytest.raises(SessionBusyError):
        await store.claim_session(state.key)
    await store.save_session(state.key, state.record(), 60)  # lease ended: read it back
    record = await store.claim_session(state.key)
    assert record is not None
    assert (record["data"], record["sent"], record["pos"], record["rooms"]) == (
        {"user": "ann"},
        "p4",
        "p5",
        {"a": "p2"},
    )


async def test_flush_everything_renews_every_connected_socket() -> None:
    book, _, store = book_of(store=CountingStore())
    superseded = state_of("old")
    superseded.superseded = True
    for state in (state_of("a"), state_of("b"), superseded):
        book.add(state)
    await book.flush(everything=True)
    assert cast(CountingStore, store).saves == 2


async def test_flush_saves_in_batches() -> None:
    book, _, store = book_of(store=CountingStore())
    for i in range(130):
        book.add(state_of(f"s{i}"))
    await book.flush(everything=True)
    counting = cast(CountingStore, store)
    assert counting.saves == 130
    assert 1 < counting.most <= 64


@pytest.mark.parametrize("reason", ["client disconnect", "server disconnect"])
async def test_explicit_disconnect_forgets_and_unexpected_saves_without_lease(reason: str) -> None:
    book, _, store = book_of()
    ended, dropped = state_of("ended"), state_of("dropped")
    for state in (ended, dropped):
        book.add(state)
        await book.save(state)  # leased: connected here
    book.sent_to(NS)["dropped"] = "p3"
    await book.disconnected(NS, "ended", reason)
    await book.disconnected(NS, "dropped", "transport close")
    assert await store.claim_session(ended.key) is None
    record = await store.claim_session(dropped.key)  # no lease: the reconnect claims it at once
    assert record is not None
    assert record["sent"] == "p3"
    assert book.get(NS, "ended") is None
    assert book.get(NS, "dropped") is None
    assert "dropped" not in book.sent_to(NS)


async def test_while_closing_even_an_explicit_disconnect_is_saved_claimable() -> None:
    book, _, store = book_of()
    state = state_of()
    book.add(state)
    book.closing = True
    await book.disconnected(NS, "sid1", "server disconnect")
    assert await store.claim_session(state.key) is not None


async def test_a_superseded_or_unknown_socket_is_not_saved_at_disconnect() -> None:
    book, _, store = book_of(store=CountingStore())
    state = state_of()
    book.add(state)
    state.superseded = True
    await book.disconnected(NS, "sid1", "transport close")
    await book.disconnected(NS, "ghost", "transport close")
    assert cast(CountingStore, store).saves == 0


async def test_continuity_broke_rebases_rooms() -> None:
    book, _, store = book_of(store=CountingStore())
    a = state_of("a", rooms={"r1": "p2", "r2": "p3"}, sent="p4")
    gone = state_of("gone", rooms={"r1": "p2"})
    gone.superseded = True
    elsewhere = state_of("c", namespace="/chat", rooms={"r1": "p2"})
    for state in (a, gone, elsewhere):
        book.add(state)
    book.sent_to(NS)["a"] = "p4"
    book.sent_to("/chat")["c"] = "p4"
    assert book.continuity_broke(NS, "q0") == [a]
    assert (a.first_position, a.rooms, a.sent) == ("q0", {"r1": "q0", "r2": "q0"}, "")
    assert elsewhere.rooms == {"r1": "p2"}
    assert book.sent_to(NS) == {}
    assert book.sent_to("/chat") == {"c": "p4"}
    await book.flush()
    assert cast(CountingStore, store).saves == 1


async def test_session_data_is_kept_only_when_it_is_json(caplog: pytest.LogCaptureFixture) -> None:
    book, server, _ = book_of()
    server.sessions[("json", NS)] = {"a": [1, 2]}
    server.sessions[("empty", NS)] = {}
    server.sessions[("odd", NS)] = {"a": object()}
    assert await book.session_data("json", NS) == {"a": [1, 2]}
    assert await book.session_data("empty", NS) is None
    assert await book.session_data("gone", NS) is None  # KeyError: no such socket
    assert await book.session_data("odd", NS) is None
    assert "session data of odd is not JSON" in caplog.text


async def test_store_errors_while_saving_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store = CountingStore()
    book, _, _ = book_of(store=store)
    state = state_of()
    book.add(state)
    store.error = StoreError("down")
    await book.save(state)
    await book.put_back(state)
    await book.forget(state.key)
    assert caplog.text.count("down") == 3


async def test_put_back_with_a_lease_is_busy_and_without_is_claimable() -> None:
    book, _, store = book_of()
    state = state_of()
    await book.put_back(state, lease=5)
    with pytest.raises(SessionBusyError):
        await store.claim_session(state.key)
    await book.put_back(state)
    assert await store.claim_session(state.key) == state.record()


async def test_forget_deletes_a_record_this_process_holds_under_a_lease() -> None:
    book, _, store = book_of()
    state = state_of()
    await store.save_session(state.key, state.record(), 60, lease=5)
    await book.forget(state.key)
    assert await store.claim_session(state.key) is None


async def test_drop_forgets_in_memory_only_and_leaves_a_newer_state_alone() -> None:
    book, _, store = book_of(store=CountingStore())
    old, new = state_of(), state_of()
    book.add(old)
    book.sent_to(NS)["sid1"] = "p3"
    book.drop(old)
    assert old.superseded
    assert book.get(NS, "sid1") is None
    assert book.sent_to(NS) == {}
    book.add(new)
    book.drop(old)  # an older attempt: the new state stays
    assert book.get(NS, "sid1") is new
    assert cast(CountingStore, store).saves == 0


async def test_connected_with_finds_the_live_state_of_a_key() -> None:
    book, _, _ = book_of()
    state = state_of()
    book.add(state)
    assert book.connected_with(state.key) is state
    state.superseded = True
    assert book.connected_with(state.key) is None
    assert book.connected_with("sess:none") is None


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_save_loop_saves_changes_promptly_and_stops_when_closing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CountingStore()
    book, _, _ = book_of(store=store, recovery_window=60.0, session_lease=30.0)
    book.add(state_of())
    loop = asyncio.create_task(book.save_loop())
    try:
        book.touched("sid1", NS)
        await until(lambda: store.saves == 1)
        store.error = RuntimeError("not a store error")  # logged; the loop goes on
        book.touched("sid1", NS)
        await until(lambda: "saving sessions failed" in caplog.text)
        store.error = None
        book.touched("sid1", NS)
        await until(lambda: store.saves == 2)
        book.closing = True
        await asyncio.wait_for(loop, 1)
    finally:
        loop.cancel()


async def test_the_save_loop_renews_every_socket_within_its_lease() -> None:
    store = CountingStore()
    book, _, _ = book_of(store=store, recovery_window=60.0, session_lease=0.3)  # renew every 0.1 s
    book.add(state_of())
    loop = asyncio.create_task(book.save_loop())
    try:
        await until(lambda: store.saves >= 2)  # nothing changed: renewed anyway
    finally:
        book.closing = True
        await asyncio.wait_for(loop, 1)
