"""The store contract: :class:`EventStore` and the records it exchanges.

This module is the one place where the contract is written down. Every store
(ours and third-party ones) implements :class:`EventStore` and proves it with the
conformance suite in :mod:`socketio_delivery.testing`.

A store holds three kinds of data:

**Event streams.** Events live in named streams (the delivery layer uses one
stream per Socket.IO namespace). :meth:`EventStore.persist` appends an event and
returns it with its *offset*: an opaque string, at most :data:`MAX_OFFSET_LENGTH`
characters, that orders the event within its stream.

* Offsets are unique within a stream and strictly increasing in the order
  :meth:`~EventStore.fetch_since` returns events. Within one epoch of a stream,
  offsets of the same store also compare in that order as plain strings.
* **No late arrivals.** Once any reader has seen an event with offset *N*, no
  event with an offset before *N* may become visible later, whatever the number
  of concurrent writers (tasks, or processes for stores with
  :attr:`Capability.MULTI_PROCESS`). "Generate an id, then insert it" breaks this
  when two writers interleave, so stores must make the offset and the insert one
  atomic step (server-assigned ids, a lock, a single writer, ...).
* When ``persist`` returns, the event is visible to ``fetch_since`` and as
  durable as the store is (see :attr:`Capability.DURABLE`). Concurrent ``persist``
  calls should share round trips (group commit); they may complete in any order.
* Every offset carries the stream's *epoch*: a random tag chosen when the
  stream's storage was created. An offset from another epoch (data wiped, another
  deployment) raises :class:`~socketio_delivery.errors.OffsetUnavailableError`,
  as does an offset after which events were trimmed by retention. "Nothing new"
  is an empty list, never an error.
* **Offsets are checked whole.** An offset is parsed with an anchored pattern:
  leading or trailing junk (``"<offset>\n"``, ``"<offset>x"``, ``" <offset>"``)
  raises :class:`~socketio_delivery.errors.InvalidOffsetError`, never resumes
  from the part that matched. Counters in offsets are at most ``2**63 - 1`` (a
  signed 64-bit integer); an offset carrying a larger one (2**63, 2**64, ...)
  raises ``InvalidOffsetError`` or ``OffsetUnavailableError`` (the kit's codec:
  ``InvalidOffsetError``), never ``OverflowError`` or any other exception.
* **An offset ahead of the stream is unavailable.** A well-formed offset of the
  current epoch past the newest event of the stream (one this store never
  returned for it: a forged offset, or one from before a failover that lost
  writes) raises ``OffsetUnavailableError``. Accepting it (returning ``[]``)
  would make the client skip every event persisted up to that offset.
  :class:`socketio_delivery.kit.OffsetCodec` does all of this in one place.
* **Reads cost what they return.** A room-filtered ``fetch_since`` costs
  O(events addressed to those rooms or to everyone + the page), never O(stream):
  a reader of one room in a stream of 1,000,000 events to 10,000 rooms pays for
  its own events, not for the others. Stores keep an index per room (a table
  index on ``(stream, room, seq)``, a sorted array per room, ...) plus one of the
  events to everyone, and merge the k + 1 ranges of a reader with k rooms. A page
  never makes the next one examine the same entries again: a store that examines
  entries it does not return (a bounded scan) returns a :class:`Page` whose
  :attr:`Page.examined` says how far it looked. The conformance suite times a
  read in a small and in a 100x larger stream
  (``test_room_filtered_read_does_not_grow_with_the_stream``).
* Retention drops the oldest events of a stream: those older than ``max_age``
  seconds and those beyond the newest ``max_events``. It runs by itself and on
  demand with :meth:`~EventStore.trim`.

**Sessions** (connection state recovery). A disconnected client's state is saved
as a small JSON object under a key with a time to live;
:meth:`~EventStore.claim_session` returns it and takes it away from every other
claim in one atomic step, so two claims of one key never both succeed. A claim
either removes the record, or (with a *lease*) hides it for a few seconds: a
process that dies between claiming a session and saving it back (kill -9, lost
network) then loses nothing, because the record becomes claimable again when the
lease runs out. A claim of a leased record raises
:class:`~socketio_delivery.errors.SessionBusyError`, which tells "someone is
recovering this session right now, try again soon" apart from "no such session".
:meth:`~EventStore.save_session` may set such a lease too (``lease=``): the
process serving a connected client keeps its record saved under a lease that it
renews, so nobody else can recover a session that is still connected (a ``pid``
recovers its session once), while the sessions of a process killed with kill -9
become claimable when their lease runs out.

**Idempotency keys** (processed-once client emits). :meth:`~EventStore.reserve_key`
atomically inserts a *pending* record with a lease if the key is absent, and
otherwise reports the existing record; :meth:`~EventStore.complete_key` stores
the result, :meth:`~EventStore.release_key` gives a pending key up.

Payloads (event ``data``, session records, idempotency results) are JSON
values: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``,
``bool`` and ``None``. A store returns them equal to what it was given (tuples
may come back as lists). Room names are strings.

Errors: bad arguments raise :class:`~socketio_delivery.errors.InvalidArgumentError`
(malformed offsets :class:`~socketio_delivery.errors.InvalidOffsetError`);
backend failures raise :class:`~socketio_delivery.errors.StoreError` with the
driver's exception chained.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_KEY_LENGTH",
    "MAX_OFFSET_LENGTH",
    "MAX_PAGE_SIZE",
    "MAX_STREAM_LENGTH",
    "Capability",
    "Event",
    "EventStore",
    "KeyState",
    "Page",
    "Reservation",
    "new_id",
    "read_on_from",
]

#: The longest offset a store may produce; longer input is malformed by definition.
MAX_OFFSET_LENGTH = 128
#: The longest stream name.
MAX_STREAM_LENGTH = 256
#: The longest session or idempotency key.
MAX_KEY_LENGTH = 256
#: ``fetch_since`` default and upper bound for ``limit``: no read is unbounded.
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 10_000

JSON = Any  # a JSON value; see the module docstring


class Capability(str, enum.Enum):
    """What a store can do beyond the contract every store meets."""

    #: Events, sessions and keys survive a restart of the process (and of the store).
    DURABLE = "durable"
    #: Several processes may open the same URL and share the data, with every
    #: guarantee (ordering, no late arrivals, claim-once) holding across them.
    MULTI_PROCESS = "multi_process"


@dataclass(frozen=True, slots=True)
class Event:
    """One persisted event.

    ``rooms`` are the rooms it was addressed to (empty: everyone in the stream);
    ``exclude`` the session ids that must not receive it; ``timestamp`` is the
    store's clock (seconds since the Unix epoch) at persist time.
    """

    offset: str
    data: JSON
    rooms: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    timestamp: float = 0.0


class Page(list[Event]):
    """What ``fetch_since`` may return instead of a plain list: the events, and how far it looked.

    ``examined`` is the offset of the last stream entry the store examined for this page
    (that entry or any before it may not be in the page: other rooms' events). Reading on
    from it instead of from the last event's offset skips nothing and examines nothing
    twice. ``None`` (and a plain ``list``, what most stores return) means the page ends at
    its last event. Optional for stores: callers use :func:`read_on_from`, which accepts both.
    """

    __slots__ = ("examined",)

    def __init__(self, events: Iterable[Event] = (), examined: str | None = None) -> None:
        super().__init__(events)
        self.examined = examined


def read_on_from(page: list[Event], offset: str | None) -> str | None:
    """The offset to pass to the next ``fetch_since`` after ``page`` (read from ``offset``).

    ::

        page = await store.fetch_since(stream, offset, rooms=rooms)
        offset = read_on_from(page, offset)  # Page.examined, else the last event's offset
    """
    examined = getattr(page, "examined", None)
    if isinstance(examined, str) and (not page or examined > page[-1].offset):
        return examined
    return page[-1].offset if page else offset


class KeyState(str, enum.Enum):
    """Outcome of :meth:`EventStore.reserve_key`."""

    #: The key was absent; the caller now holds it (pending) and must complete or release it.
    ACQUIRED = "acquired"
    #: Another caller holds the key and has not finished (its lease has not run out).
    PENDING = "pending"
    #: The key was completed; :attr:`Reservation.result` is what it produced.
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Reservation:
    state: KeyState
    result: JSON = None


def new_id() -> str:
    """A fresh unguessable identifier: 128 random bits, URL-safe text."""
    return secrets.token_urlsafe(16)


@runtime_checkable
class EventStore(Protocol):
    """The contract every store implements. See the module docstring for the guarantees."""

    #: What this store supports beyond the base contract.
    capabilities: frozenset[Capability]

    # -- lifecycle -------------------------------------------------------------
    async def open(self) -> None:
        """Connect and prepare storage (tables, indexes). Idempotent.

        Raises :class:`~socketio_delivery.errors.StoreUnavailableError` when the
        backend cannot be reached.
        """

    async def close(self) -> None:
        """Flush pending writes and release connections. Idempotent."""

    # -- ids -------------------------------------------------------------------
    def generate_id(self) -> str:
        """A unique, unguessable id (>= 128 random bits) for sessions (``pid``) and keys.

        Never an offset: offsets are assigned by :meth:`persist`, atomically with
        the write, which is what rules out late arrivals.
        """

    # -- event streams ---------------------------------------------------------
    async def persist(
        self,
        stream: str,
        data: JSON,
        *,
        rooms: Collection[str] = (),
        exclude: Collection[str] = (),
    ) -> Event:
        """Append one event to ``stream`` and return it with its offset.

        When this returns the event is visible to :meth:`fetch_since` and is as
        durable as the store. Its offset is greater than every offset already
        visible in the stream (no late arrivals).
        """

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        """Events of ``stream`` strictly after ``offset``, oldest first, at most ``limit``.

        ``offset=None`` starts at the oldest retained event. With ``rooms``, only
        events addressed to everyone (no rooms) or to at least one of ``rooms``
        are returned. ``limit`` is 1..:data:`MAX_PAGE_SIZE`. To read on, call again
        with the offset of the last event returned (or :attr:`Page.examined`:
        :func:`read_on_from`); an empty list means nothing (more) is there.

        Cost: O(page) without ``rooms``; with k rooms O(events of those rooms and
        to everyone after ``offset``, up to the page) (an index per room, k + 1
        ranges merged), never O(events of the stream). A store may return a
        :class:`Page` (a ``list``) whose ``examined`` tells how far it looked, so
        that no stretch of the stream is examined twice.

        Raises :class:`~socketio_delivery.errors.InvalidOffsetError` for an offset
        that is not well formed (matched whole; counters above ``2**63 - 1``) and
        :class:`~socketio_delivery.errors.OffsetUnavailableError` when events after
        ``offset`` were trimmed, ``offset`` is from another epoch, or it is ahead of
        the newest event of ``stream``.
        """

    async def last_offset(self, stream: str) -> str:
        """The position after which the next persisted event will be fetched.

        That is the offset of the newest event of ``stream``, or a start-of-stream
        offset of the current epoch when the stream holds none. Passing it to
        :meth:`fetch_since` returns exactly the events persisted after this call
        (until retention trims past it).
        """

    async def trim(self, stream: str | None = None) -> int:
        """Apply retention now to ``stream`` (or every stream); return how many events went."""

    # -- sessions (connection state recovery) -----------------------------------
    async def save_session(
        self, key: str, record: Mapping[str, JSON], ttl: float, *, lease: float | None = None
    ) -> None:
        """Store ``record`` under ``key`` for ``ttl`` seconds, replacing any earlier record.

        Any lease on ``key`` ends. Without ``lease`` the record is claimable at once.
        With ``lease`` (seconds, > 0) it is stored already leased, exactly as if it
        had then been claimed with that lease: every claim raises
        :class:`~socketio_delivery.errors.SessionBusyError` until the lease runs out
        (then the record is claimable, while its TTL lasts) or ``key`` is saved
        again. A process that serves a connected client saves its record this way
        and renews the lease by saving again before it runs out; if the process
        dies, the client's session becomes claimable when the lease runs out::

            await store.save_session(pid, record, ttl=120, lease=10)  # every few seconds
            await store.save_session(pid, record, ttl=120)  # on disconnect: claimable now
        """

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, JSON] | None:
        """Return the record under ``key`` and take it, atomically; ``None`` if absent or expired.

        Without ``lease`` the record is deleted. With ``lease`` (seconds, > 0) it is
        kept but leased: until the lease runs out every claim of ``key`` raises
        :class:`~socketio_delivery.errors.SessionBusyError`, and afterwards the same
        record is claimable again (its own TTL still applies). :meth:`save_session`
        of ``key`` replaces the record and the lease (with its own ``lease``, if any).

        Of several concurrent claims of one key (from any process), at most one
        gets the record; the others get ``None`` (deleted) or raise
        ``SessionBusyError`` (leased).
        """

    # -- idempotency keys (processed-once client emits) -------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        """Atomically mark ``key`` pending for ``lease`` seconds if absent.

        Returns ``ACQUIRED`` when the caller now holds the key, ``PENDING`` when
        another holder has it and its lease runs, ``DONE`` with the stored result
        when it was completed. A pending key whose lease ran out counts as absent.
        """

    async def complete_key(self, key: str, result: JSON, ttl: float) -> None:
        """Record ``result`` for ``key`` (held by the caller) and keep it ``ttl`` seconds."""

    async def release_key(self, key: str) -> None:
        """Give up a pending ``key`` so a retry may run; a completed key is left alone."""
