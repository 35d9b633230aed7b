"""The in-memory store: the reference implementation of the contract.

Fast and safe under concurrent tasks of one event loop (no operation awaits
between reading and writing its data). Not durable and not shared between
processes. URL: ``memory://`` (every URL opens a new, empty store).

Events are held compactly, in columns (see :class:`_Stream`): each event's data once, as
its JSON text (decoded by ``fetch_since``), and a per-room index of sequence numbers in
``array('q')``, so a room-filtered read costs O(events of those rooms + events to everyone).
"""

from __future__ import annotations

import bisect
import heapq
import json
import time
from array import array
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .config import StoreOptions, build_options, parse_url
from .errors import InvalidArgumentError, OffsetUnavailableError, SessionBusyError
from .kit import OffsetCodec, RoomFilter, check_max_bytes, decode_json, encode_json
from .store import DEFAULT_PAGE_SIZE, Capability, Event, KeyState, Reservation, new_id
from .validate import check_key, check_limit, check_rooms, check_stream, check_ttl

__all__ = ["MemoryEventStore", "MemoryOptions"]

#: ``<epoch>-<12 hex digits>``: offsets are never stored, so the width is this store's own.
_CODEC = OffsetCodec("memory", (12,))
_SWEEP_EVERY = 1024
#: Dropped entries at the front of a column are deleted once there are this many (and
#: they are over half of it): trimming is amortised O(1) per event.
_COMPACT_AT = 1024
_NONE: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemoryOptions(StoreOptions):
    """``max_bytes``: most bytes of event payload (its JSON text) kept per stream; retention
    drops the oldest events first and always keeps the newest one (``None``: no limit)."""

    max_events: int | None = 100_000
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_max_bytes(self.max_bytes)


class _Index:
    """Sequence numbers of the events of one room (or of those to everyone), ascending.

    ``seqs[start:]`` are retained; trimming only moves ``start`` (and compacts now and then).
    ``single`` is the ``(name,)`` tuple every event addressed to this room alone shares.
    """

    __slots__ = ("name", "seqs", "single", "start")

    def __init__(self, name: str) -> None:
        self.name = name
        self.single = (name,)
        self.seqs = array("q")
        self.start = 0

    def after(self, seq: int, limit: int) -> array[int]:
        """At most ``limit`` sequence numbers above ``seq``: O(log n + limit)."""
        i = bisect.bisect_right(self.seqs, seq, lo=self.start)
        return self.seqs[i : i + limit]

    def drop_first(self) -> bool:
        """Forget the oldest retained entry; ``True`` when none is left."""
        self.start += 1
        if self.start >= len(self.seqs):
            return True
        if self.start > _COMPACT_AT and self.start * 2 > len(self.seqs):
            del self.seqs[: self.start]
            self.start = 0
        return False


class _Stream:
    """The retained events of a stream as columns: event ``seq`` is at position ``seq - base``.

    Sequence numbers are consecutive (one per persist), so no column of them is needed.
    Per event: its data's JSON text, its rooms and excluded sids (tuples; the empty one and
    one-room ones shared), its timestamp and JSON size (arrays), and one entry in the index
    of each of its rooms (or in ``everyone``).
    """

    __slots__ = (
        "base", "everyone", "exclude", "held_bytes", "last_seq", "rooms", "rooms_index",
        "sizes", "start", "texts", "times", "trimmed_upto",
    )  # fmt: skip

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.rooms: list[tuple[str, ...]] = []
        self.exclude: list[tuple[str, ...]] = []
        self.times = array("d")
        self.sizes = array("q")  # bytes of each event's JSON text
        self.rooms_index: dict[str, _Index] = {}
        self.everyone = _Index("")
        self.base = 1  # seq of position 0
        self.start = 0  # position of the oldest retained event
        self.held_bytes = 0  # of the retained events
        self.last_seq = 0
        self.trimmed_upto = 0  # seq of the newest trimmed event

    def append(self, text: str, rooms: tuple[str, ...], exclude: tuple[str, ...], now: float) -> int:
        self.last_seq += 1
        seq = self.last_seq
        indexes = [self.rooms_index.get(r) or self.rooms_index.setdefault(r, _Index(r)) for r in rooms]
        for index in dict.fromkeys(indexes) if indexes else (self.everyone,):
            index.seqs.append(seq)
        self.texts.append(text)
        self.rooms.append(indexes[0].single if len(indexes) == 1 else tuple(i.name for i in indexes))
        self.exclude.append(exclude or _NONE)
        self.times.append(now)
        size = len(text) if text.isascii() else len(text.encode())
        self.sizes.append(size)
        self.held_bytes += size
        return seq

    def event(self, seq: int, epoch: str) -> Event:
        i = seq - self.base
        data = decode_json(self.texts[i])
        return Event(_CODEC.format(epoch, seq), data, self.rooms[i], self.exclude[i], self.times[i])

    def seqs_after(self, seq: int, wanted: list[str] | None, limit: int) -> Iterator[int]:
        """Sequence numbers of the next ``limit`` events above ``seq`` for ``wanted`` rooms.

        ``None``: every event, O(limit). Rooms: a merge of the k + 1 index ranges (the rooms'
        and everyone's), O((k + 1) (log n + limit)): never a walk over other rooms' events.
        """
        seq = max(seq, self.trimmed_upto)
        if wanted is None:
            return iter(range(seq + 1, min(seq + limit, self.last_seq) + 1))
        ranges = [self.everyone.after(seq, limit)]
        ranges += [index.after(seq, limit) for r in wanted if (index := self.rooms_index.get(r))]
        merged = ranges[0] if len(ranges) == 1 else heapq.merge(*ranges)
        return _unique(merged, limit)

    def drop_oldest(self, count: int) -> None:
        """Forget the ``count`` oldest retained events (and their index entries)."""
        for i in range(self.start, self.start + count):
            self.held_bytes -= self.sizes[i]
            rooms = self.rooms[i]
            if not rooms:
                self.everyone.drop_first()
            for room in dict.fromkeys(rooms):
                if self.rooms_index[room].drop_first():
                    del self.rooms_index[room]
        self.start += count
        self.trimmed_upto = self.base + self.start - 1
        if self.start > _COMPACT_AT and self.start * 2 > len(self.texts):
            for column in (self.texts, self.rooms, self.exclude, self.times, self.sizes):
                del column[: self.start]
            self.base += self.start
            self.start = 0


def _unique(seqs: Iterator[int] | array[int], limit: int) -> Iterator[int]:
    last = -1
    for seq in seqs:
        if seq != last:
            yield seq
            last = seq
            limit -= 1
            if not limit:
                return


def _json_copy(value: Any, what: str) -> Any:
    return json.loads(encode_json(value, what))


class MemoryEventStore:
    """An :class:`~socketio_delivery.EventStore` held in this process's memory."""

    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, options: MemoryOptions | None = None) -> None:
        self.options = options or MemoryOptions()
        self.epoch = _CODEC.new_epoch()
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, tuple[float, dict[str, Any]]] = {}
        #: session key -> monotonic time its lease runs out
        self._leases: dict[str, float] = {}
        self._keys: dict[str, tuple[KeyState, float, Any]] = {}
        self._ops = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryEventStore:
        return cls(build_options(MemoryOptions, parse_url(url), options))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def generate_id(self) -> str:
        return new_id()

    # -- events -------------------------------------------------------------------
    def _offset(self, seq: int) -> str:
        return _CODEC.format(self.epoch, seq)

    def _seq_of(self, offset: object) -> int:
        (seq,) = _CODEC.position(offset, self.epoch)
        return seq

    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        check_stream(stream)
        event_rooms = check_rooms(rooms)
        event_exclude = check_rooms(exclude, "exclude")
        text = encode_json(data, "event data")
        s = self._streams.get(stream) or self._streams.setdefault(stream, _Stream())
        now = time.time()
        seq = s.append(text, event_rooms, event_exclude, now)
        self._apply_retention(s, now)
        self._tick()
        return Event(self._offset(seq), decode_json(text, data), event_rooms, event_exclude, now)

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        """O(limit) without ``rooms``; with k rooms O((k + 1) (log n + limit)), whatever else is held."""
        check_stream(stream)
        check_limit(limit)
        wanted = None if rooms is None else list(dict.fromkeys(check_rooms(rooms)))
        seq = 0 if offset is None else self._seq_of(offset)
        s = self._streams.get(stream)
        if s is None:
            if seq != 0:
                raise OffsetUnavailableError(f"offset {offset!r} is not held by this store", offset=offset)
            return []
        self._apply_retention(s, time.time())
        if offset is not None:
            _CODEC.check(offset, (seq,), first=(s.trimmed_upto,), last=(s.last_seq,))
        return [s.event(n, self.epoch) for n in s.seqs_after(seq, wanted, limit)]

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)
        s = self._streams.get(stream)
        return self._offset(s.last_seq if s else 0)

    async def trim(self, stream: str | None = None) -> int:
        now = time.time()
        if stream is not None:
            check_stream(stream)
            s = self._streams.get(stream)
            return self._apply_retention(s, now) if s else 0
        return sum(self._apply_retention(s, now) for s in self._streams.values())

    def _apply_retention(self, s: _Stream, now: float) -> int:
        drop_to = s.start
        held = len(s.texts)
        max_events, max_age = self.options.max_events, self.options.max_age
        if max_events is not None and held - drop_to > max_events:
            drop_to = held - max_events
        if max_age is not None:
            cutoff = now - max_age
            while drop_to < held and s.times[drop_to] < cutoff:
                drop_to += 1
        if self.options.max_bytes is not None:
            drop_to = self._over_bytes(s, drop_to, self.options.max_bytes)
        dropped = drop_to - s.start
        if dropped:
            s.drop_oldest(dropped)
        return dropped

    @staticmethod
    def _over_bytes(s: _Stream, drop_to: int, max_bytes: int) -> int:
        """Where to drop to so that the retained payloads hold at most ``max_bytes`` (newest kept)."""
        held = s.held_bytes - sum(s.sizes[s.start : drop_to])
        while held > max_bytes and drop_to < len(s.sizes) - 1:
            held -= s.sizes[drop_to]
            drop_to += 1
        return drop_to

    # -- sessions -------------------------------------------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        check_key(key)
        expires = time.monotonic() + check_ttl(ttl)
        until = None if lease is None else time.monotonic() + check_ttl(lease, "lease")
        if not isinstance(record, Mapping):
            raise InvalidArgumentError("a session record must be a mapping")
        self._sessions[key] = (expires, _json_copy(dict(record), "session record"))
        if until is None:
            self._leases.pop(key, None)
        else:
            self._leases[key] = until
        self._tick()

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        check_key(key)
        until = None if lease is None else time.monotonic() + check_ttl(lease, "lease")
        now = time.monotonic()
        item = self._sessions.get(key)
        if item is None or item[0] <= now:
            self._sessions.pop(key, None)
            self._leases.pop(key, None)
            return None
        leased = self._leases.get(key, 0.0)
        if leased > now:
            raise SessionBusyError(
                "the session is being recovered by another connection", retry_after=leased - now
            )
        if until is None:
            del self._sessions[key]
            self._leases.pop(key, None)
        else:
            self._leases[key] = until
        record: dict[str, Any] = _json_copy(item[1], "session record")
        return record

    # -- idempotency keys -------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        expires = time.monotonic() + check_ttl(lease, "lease")
        item = self._keys.get(key)
        if item is not None and item[1] > time.monotonic():
            state, _, result = item
            return Reservation(state, result if state is KeyState.DONE else None)
        self._keys[key] = (KeyState.PENDING, expires, None)
        self._tick()
        return Reservation(KeyState.ACQUIRED)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        expires = time.monotonic() + check_ttl(ttl)
        self._keys[key] = (KeyState.DONE, expires, _json_copy(result, "result"))

    async def release_key(self, key: str) -> None:
        check_key(key)
        item = self._keys.get(key)
        if item is not None and item[0] is KeyState.PENDING:
            del self._keys[key]

    def _tick(self) -> None:
        """Drop expired sessions and keys now and then, so memory stays bounded."""
        self._ops += 1
        if self._ops % _SWEEP_EVERY:
            return
        now = time.monotonic()
        for k in [k for k, v in self._sessions.items() if v[0] <= now]:
            del self._sessions[k]
            self._leases.pop(k, None)
        for k in [k for k, v in self._keys.items() if v[1] <= now]:
            del self._keys[k]
