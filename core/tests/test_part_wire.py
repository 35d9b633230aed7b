"""Unit tests of :mod:`socketio_delivery.wire`: how an emit is stored and how it goes back on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from socketio.packet import Packet
from socketio_delivery import client as delivery_client
from socketio_delivery.errors import InvalidArgumentError
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.store import Event
from socketio_delivery.wire import (
    RESERVED_EVENTS,
    RESYNC_EVENT,
    check_sendable,
    emit_args,
    packet_of,
    persist_emit,
)


async def test_persist_emit_addresses_rooms_and_skips_and_stores_the_record() -> None:
    store = MemoryEventStore()
    one = await persist_emit(store, "/", "chat", ["hi", 2], to="room", skip_sid="s1")
    many = await persist_emit(store, "/", "chat", [], to=["a", "b"], skip_sid=("s1", "s2"))
    everyone = await persist_emit(store, "/", "chat", [None])
    assert (one.rooms, one.exclude, one.data) == (("room",), ("s1",), {"e": "chat", "a": ["hi", 2]})
    assert (many.rooms, many.exclude) == (("a", "b"), ("s1", "s2"))
    assert (everyone.rooms, everyone.exclude) == ((), ())
    assert [e.offset for e in await store.fetch_since("/", None)] == [
        one.offset,
        many.offset,
        everyone.offset,
    ]


async def test_an_explicit_emit_is_marked_and_delivered_as_id_and_data() -> None:
    store = MemoryEventStore()
    event = await persist_emit(store, "/", "news", [{"n": 1}], explicit=True)
    assert event.data == {"e": "news", "a": [{"n": 1}], "x": 1}
    assert packet_of(event) == ["news", {"id": event.offset, "data": {"n": 1}}, event.offset]


def test_an_explicit_event_without_arguments_has_null_data() -> None:
    event = Event("o1", {"e": "news", "a": [], "x": 1})
    assert packet_of(event) == ["news", {"id": "o1", "data": None}, "o1"]


async def test_binary_arguments_are_stored_as_text_and_delivered_as_bytes() -> None:
    store = MemoryEventStore()
    args: list[Any] = [b"\x00\xff", {"file": bytearray(b"png"), "name": "a"}, [1, b"x"]]
    event = await persist_emit(store, "/", "upload", args)
    assert event.data["b"] == [[0], [1, "file"], [2, 1]]
    assert all(isinstance(v, str) for v in (event.data["a"][0], event.data["a"][1]["file"]))
    stored = (await store.fetch_since("/", None))[0]
    assert packet_of(stored) == [
        "upload",
        b"\x00\xff",
        {"file": b"png", "name": "a"},
        [1, b"x"],
        stored.offset,
    ]


async def test_a_non_json_emit_without_bytes_is_refused_by_the_store() -> None:
    store = MemoryEventStore()
    with pytest.raises(InvalidArgumentError, match="JSON"):
        await persist_emit(store, "/", "bad", [{1, 2}])
    assert await store.fetch_since("/", None) == []


def test_packet_of_appends_the_offset_to_the_arguments() -> None:
    assert packet_of(Event("o7", {"e": "ev", "a": [1, "two"]})) == ["ev", 1, "two", "o7"]
    assert packet_of(Event("o8", {"e": "ev", "a": []})) == ["ev", "o8"]


def test_emit_args_reads_data_as_python_socketio_does() -> None:
    assert emit_args((1, 2)) == [1, 2]
    assert emit_args(()) == []
    assert emit_args(None) == []
    assert emit_args([1, 2]) == [[1, 2]]
    assert emit_args("x") == ["x"]
    assert emit_args(0) == [0]


@pytest.mark.parametrize("event", [*sorted(RESERVED_EVENTS), "", 5, None])
def test_check_sendable_refuses_reserved_and_non_string_names(event: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="not reserved"):
        check_sendable(Packet, "/", event, [], 1000)


def test_check_sendable_refuses_deep_and_big_and_unserializable() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        check_sendable(Packet, "/", "deep", [deep], 10**9)
    with pytest.raises(InvalidArgumentError, match="max_event_bytes"):
        check_sendable(Packet, "/", "big", ["x" * 200], 100)
    with pytest.raises(InvalidArgumentError, match="cannot be sent") as info:
        check_sendable(Packet, "/", "odd", [object()], 10**9)
    assert isinstance(info.value.__cause__, TypeError)


def test_check_sendable_counts_binary_attachments_in_the_size() -> None:
    check_sendable(Packet, "/", "bin", [b"x" * 50], 100)
    with pytest.raises(InvalidArgumentError, match="max_event_bytes"):
        check_sendable(Packet, "/", "bin", [b"x" * 200], 100)


def test_check_sendable_accepts_an_event_exactly_at_the_limit() -> None:
    size = len(Packet(2, namespace="/chat", data=["ev", "abc"]).encode())
    check_sendable(Packet, "/chat", "ev", ["abc"], size)
    with pytest.raises(InvalidArgumentError):
        check_sendable(Packet, "/chat", "ev", ["abc"], size - 1)


def test_the_client_uses_the_same_resync_event_name() -> None:
    assert RESYNC_EVENT == "delivery:resync"
    assert RESYNC_EVENT in RESERVED_EVENTS
    assert delivery_client.RESYNC_EVENT is RESYNC_EVENT


@pytest.mark.parametrize("namespace", ["/", "/chat"])
@pytest.mark.parametrize(
    "args", [[], [1], [{"a": [1, 2.5, None, True]}, "x"], ["ünïcode \u2028", {"k": '"quoted"'}]]
)
def test_an_encoded_emit_with_its_offset_is_what_delivery_would_encode(
    namespace: str, args: list[Any]
) -> None:
    from socketio.packet import EVENT, Packet
    from socketio_delivery.wire import with_offset

    encoded = check_sendable(Packet, namespace, "ev", args, 10_000)
    assert encoded is not None
    offset = "0a1b2c3d-00000000002a"
    assert (
        with_offset(encoded, offset)
        == Packet(EVENT, namespace=namespace, data=["ev", *args, offset]).encode()
    )


def test_a_binary_emit_is_not_pre_encoded() -> None:
    assert check_sendable(Packet, "/", "ev", [b"\x00"], 10_000) is None
