"""The in-memory store: the reference implementation of the contract.

Fast and safe under concurrent tasks of one event loop (no operation awaits
between reading and writing its data). Not durable and not shared between
processes. URL: ``memory://`` (every URL opens a new, empty store).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import StoreOptions, build_options, parse_url
from .errors import InvalidArgumentError, OffsetUnavailableError, SessionBusyError
from .kit import OffsetCodec, RoomFilter, check_max_bytes
from .store import DEFAULT_PAGE_SIZE, Capability, Event, KeyState, Reservation, new_id
from .validate import check_key, check_limit, check_rooms, check_stream, check_ttl

__all__ = ["MemoryEventStore", "MemoryOptions"]

#: ``<epoch>-<12 hex digits>``: offsets are never stored, so the width is this store's own.
_CODEC = OffsetCodec("memory", (12,))
_SWEEP_EVERY = 1024


@dataclass(frozen=True)
class MemoryOptions(StoreOptions):
    """``max_bytes``: most bytes of event payload (its JSON text) kept per stream; retention
    drops the oldest events first and always keeps the newest one (``None``: no limit)."""

    max_events: int | None = 100_000
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_max_bytes(self.max_bytes)


@dataclass
class _Stream:
    seqs: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # bytes of each event's JSON payload
    held_bytes: int = 0  # of the retained events (kept only with max_bytes)
    start: int = 0  # index of the oldest retained event in seqs/events
    last_seq: int = 0
    trimmed_upto: int = 0  # seq of the newest trimmed event


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


def _json_copy(value: Any, what: str) -> Any:
    return json.loads(_json_text(value, what))


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
        text = _json_text(data, "event data")
        copied = json.loads(text)
        s = self._streams.setdefault(stream, _Stream())
        s.last_seq += 1
        event = Event(self._offset(s.last_seq), copied, event_rooms, event_exclude, time.time())
        s.seqs.append(s.last_seq)
        s.events.append(event)
        s.sizes.append(len(text))  # json.dumps is ASCII: characters are bytes
        s.held_bytes += len(text)
        self._apply_retention(s, event.timestamp)
        self._tick()
        return event

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        check_stream(stream)
        check_limit(limit)
        wanted = None if rooms is None else frozenset(check_rooms(rooms))
        seq = 0 if offset is None else self._seq_of(offset)
        s = self._streams.get(stream)
        if s is None:
            if seq != 0:
                raise OffsetUnavailableError(f"offset {offset!r} is not held by this store", offset=offset)
            return []
        self._apply_retention(s, time.time())
        if offset is not None:
            _CODEC.check(offset, (seq,), first=(s.trimmed_upto,), last=(s.last_seq,))
        out: list[Event] = []
        i = bisect.bisect_right(s.seqs, seq, lo=s.start)
        events = s.events
        while i < len(events) and len(out) < limit:
            event = events[i]
            if wanted is None or not event.rooms or not wanted.isdisjoint(event.rooms):
                out.append(event)
            i += 1
        return out

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
        max_events, max_age = self.options.max_events, self.options.max_age
        if max_events is not None and len(s.seqs) - drop_to > max_events:
            drop_to = len(s.seqs) - max_events
        if max_age is not None:
            cutoff = now - max_age
            while drop_to < len(s.events) and s.events[drop_to].timestamp < cutoff:
                drop_to += 1
        if self.options.max_bytes is not None:
            drop_to = self._over_bytes(s, drop_to, self.options.max_bytes)
        dropped = drop_to - s.start
        if dropped:
            s.held_bytes -= sum(s.sizes[s.start : drop_to])
            s.trimmed_upto = s.seqs[drop_to - 1]
            s.start = drop_to
            if s.start > 1024 and s.start * 2 > len(s.seqs):
                del s.seqs[: s.start]
                del s.events[: s.start]
                del s.sizes[: s.start]
                s.start = 0
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
