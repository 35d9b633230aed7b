"""Helpers the conformance suite uses, exported for adapters' own tests.

::

    events = await read_all(store, "/chat")          # every retained event, paged
    reader = StreamReader(store, "/chat")
    await reader.poll()                               # next page after what it saw
    await reader.check_no_late_arrivals()             # nothing appeared behind it
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from hypothesis import strategies as st

from ..store import MAX_PAGE_SIZE, Event, EventStore, read_on_from

__all__ = [
    "StreamReader",
    "assert_json_equal",
    "assert_same_event",
    "assert_same_events",
    "json_values",
    "read_all",
]


async def read_all(
    store: EventStore,
    stream: str,
    offset: str | None = None,
    *,
    rooms: Collection[str] | None = None,
    limit: int = MAX_PAGE_SIZE,
    max_pages: int = 10_000,
) -> list[Event]:
    """Every event of ``stream`` after ``offset``, reading page by page until an empty page.

    Reads on from :attr:`~socketio_delivery.store.Page.examined` when a page has it.

    Checks on the way that each page holds at most ``limit`` events and that
    offsets strictly increase.
    """
    out: list[Event] = []
    for _ in range(max_pages):
        page = await store.fetch_since(stream, offset, rooms=rooms, limit=limit)
        assert len(page) <= limit, f"fetch_since returned {len(page)} events for limit={limit}"
        if not page:
            return out
        for event in page:
            assert offset is None or event.offset > offset, (
                f"offset {event.offset!r} does not come after {offset!r}"
            )
            offset = event.offset
        examined = getattr(page, "examined", None)
        assert examined is None or examined >= page[-1].offset, (
            f"Page.examined {examined!r} is before the page's last event {page[-1].offset!r}"
        )
        offset = read_on_from(page, offset)
        out.extend(page)
    raise AssertionError(f"{stream!r} did not end after {max_pages} pages")


class StreamReader:
    """A reader that polls a stream from its high-water mark and remembers all it saw.

    :meth:`check_no_late_arrivals` re-reads the whole stream and asserts that what
    precedes the high-water mark is exactly what the reader saw: an event that
    became visible behind the reader (a late arrival) fails it.
    """

    def __init__(self, store: EventStore, stream: str, *, limit: int = 50) -> None:
        self.store = store
        self.stream = stream
        self.limit = limit
        self.seen: list[Event] = []
        self.high_water: str | None = None

    async def poll(self) -> int:
        """Fetch one page after the high-water mark; return how many events came."""
        page = await self.store.fetch_since(self.stream, self.high_water, limit=self.limit)
        assert len(page) <= self.limit
        for event in page:
            assert self.high_water is None or event.offset > self.high_water, (
                f"offset {event.offset!r} is not after the reader's high-water mark {self.high_water!r}"
            )
            self.high_water = event.offset
        self.seen.extend(page)
        return len(page)

    async def drain(self) -> None:
        """Poll until a page comes back empty."""
        while await self.poll():
            pass

    async def check_no_late_arrivals(self) -> list[Event]:
        """Re-read the stream from the start; everything up to the high-water mark must be ``seen``.

        Returns the full read.
        """
        full = await read_all(self.store, self.stream)
        if self.high_water is None:
            return full
        offsets = [e.offset for e in full]
        assert self.high_water in offsets, f"the high-water mark {self.high_water!r} is gone"
        before = offsets[: offsets.index(self.high_water) + 1]
        seen = [e.offset for e in self.seen]
        if before != seen:
            late = sorted(set(before) - set(seen))
            raise AssertionError(
                f"late arrival: {len(late)} event(s) became visible before the reader's "
                f"high-water mark {self.high_water!r} after it had read past them: {late[:5]}"
            )
        return full


def assert_json_equal(got: Any, expected: Any, path: str = "$") -> None:
    """``got == expected`` for JSON values, also comparing types (``True`` is not ``1``).

    A tuple in ``expected`` matches a list in ``got``.
    """
    if isinstance(expected, (list, tuple)):
        assert isinstance(got, list), f"{path}: expected a list, got {got!r}"
        assert len(got) == len(expected), f"{path}: expected {len(expected)} items, got {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_json_equal(g, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        assert set(got) == set(expected), f"{path}: keys {sorted(got)!r} != {sorted(expected)!r}"
        for key in expected:
            assert_json_equal(got[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, float):
        assert type(got) is float, f"{path}: expected float {expected!r}, got {got!r}"
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (
            f"{path}: {got!r} != {expected!r}"
        )
    else:
        same = type(got) is type(expected) and got == expected
        assert same, f"{path}: {got!r} != {expected!r}"


def assert_same_event(got: Event, expected: Event) -> None:
    """Same offset, data, rooms and exclude (as sets), timestamps within 10 ms."""
    assert got.offset == expected.offset, f"offset {got.offset!r} != {expected.offset!r}"
    assert_json_equal(got.data, expected.data)
    assert set(got.rooms) == set(expected.rooms), f"rooms {got.rooms!r} != {expected.rooms!r}"
    assert set(got.exclude) == set(expected.exclude), f"exclude {got.exclude!r} != {expected.exclude!r}"
    assert abs(got.timestamp - expected.timestamp) < 0.01, (
        f"timestamp {got.timestamp!r} != {expected.timestamp!r}"
    )


def assert_same_events(got: Sequence[Event], expected: Sequence[Event]) -> None:
    assert [e.offset for e in got] == [e.offset for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert_same_event(g, e)


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)

#: A hypothesis strategy for JSON values (what stores must return unchanged).
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
