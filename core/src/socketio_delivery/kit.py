"""The adapter kit: what every store repeats, written once.

The contract stays the :class:`~socketio_delivery.store.EventStore` protocol; this
module is an optional convenience that makes a store short. Our SQLite, Redis and
MongoDB adapters are built on it, and so can yours:

* :class:`OffsetCodec`: ``"<epoch>-<hex counter>"`` offsets, parsed once and
  strictly (anchored pattern, counters below 2**63, epoch and position checks);
* :class:`AdapterOptions`: the options every batching store has (``max_batch``,
  ``retention_interval``, ``trim_chunk``), validated, filled from URLs by
  :func:`~socketio_delivery.config.build_options`;
* :class:`DriverErrors` and :func:`wrap_driver_errors`: driver exceptions become
  :class:`~socketio_delivery.errors.StoreError` /
  :class:`~socketio_delivery.errors.StoreUnavailableError` at the edge, cause chained;
* :class:`Persist`, :func:`prepare_persist` and :class:`GroupCommitWriter`: queue
  concurrent ``persist`` calls and write them in batches (group commit);
* :class:`MaintenanceLoop`: background retention that logs every failure and
  keeps running;
* :func:`encode_json`: compact JSON text of a payload, ``InvalidArgumentError`` if
  it is not JSON.

Stability: the names in ``__all__`` follow semantic versioning with the core
package; see ``docs/writing-an-adapter.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import secrets
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Generic, Protocol, TypeVar

from .config import StoreOptions
from .errors import (
    ConfigurationError,
    DeliveryError,
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)
from .store import Event, KeyState, Reservation, new_id
from .validate import check_key, check_limit, check_offset, check_rooms, check_stream, check_ttl

__all__ = [
    "KEEP",
    "MAX_COUNTER",
    "AdapterOptions",
    "Change",
    "ConnectionThread",
    "DriverErrors",
    "GroupCommitWriter",
    "MaintenanceLoop",
    "OffsetCodec",
    "Persist",
    "Record",
    "RecordStore",
    "RoomFilter",
    "decode_json",
    "encode_json",
    "check_fetch",
    "prepare_persist",
    "prepare_session",
    "wrap_driver_errors",
]

log = logging.getLogger("socketio_delivery.kit")

#: The largest counter an offset may carry (a signed 64-bit integer, what SQLite,
#: MongoDB and most databases store). A larger one is malformed: no store counts that far.
MAX_COUNTER = 2**63 - 1

# -- JSON ---------------------------------------------------------------------------------

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: ``_ENCODER``'s C encoder, built once (``encode`` builds it on every call). Without
#: circular-reference markers: it keeps no state, so any thread may use it; a circular
#: value ends in ``RecursionError``, which :func:`encode_json` reports as not JSON.
_C_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
)
#: ``json.loads`` without its whitespace checks, for text :func:`encode_json` wrote.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SCALARS = (str, int, float, bool, type(None))


def encode_json(value: Any, what: str = "value") -> str:
    """Compact JSON text of ``value`` (non-ASCII kept); :class:`InvalidArgumentError` if not JSON.

    ::

        encode_json({"a": [1, "é"]})        # '{"a":[1,"é"]}'
        encode_json({1j}, "event data")     # InvalidArgumentError: event data must be a JSON value
    """
    try:
        if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
            return _ENCODER.encode(value)
        return "".join(_C_ENCODER(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


_NOTHING: Any = object()


def decode_json(text: str, original: Any = _NOTHING) -> Any:
    """The value of JSON ``text`` that :func:`encode_json` wrote (``original``: scalars reused).

    What ``persist`` returns in its :class:`~socketio_delivery.store.Event`: the payload
    as ``fetch_since`` will return it (tuples become lists), not the caller's object.
    """
    if original is not _NOTHING and type(original) in _SCALARS:
        return original
    return _SCAN(text, 0)[0]


# -- offsets -------------------------------------------------------------------------------


class OffsetCodec:
    """Offsets ``"<epoch>-<counter>"``: an 8-hex-digit epoch and fixed-width hex counters.

    Fixed width makes offsets of one epoch compare as plain strings. ``groups`` gives
    the width of each counter (``(16,)``: one 64-bit counter; Redis uses ``(16, 16)``
    for its ``ms-seq`` ids). Positions are tuples of ints, one per group, compared as
    tuples. Parsing is anchored (``fullmatch``): trailing junk, upper case, signs or
    spaces are :class:`InvalidOffsetError`, and so is any counter above
    :data:`MAX_COUNTER`::

        codec = OffsetCodec("acme")
        epoch = codec.new_epoch()                       # e.g. '9f86d081'
        codec.format(epoch, 5)                          # '9f86d081-0000000000000005'
        codec.position("9f86d081-0000000000000005", epoch)   # (5,)
        codec.check(offset, (5,), first=(2,), last=(9,))     # OffsetUnavailableError if outside
    """

    def __init__(self, store: str, groups: tuple[int, ...] = (16,)) -> None:
        if not groups or any(not 1 <= width <= 16 for width in groups):
            raise ValueError(f"counter widths are 1 to 16 hex digits, got {groups!r}")
        self.store = store
        self.groups = groups
        counters = "-".join(f"([0-9a-f]{{{width}}})" for width in groups)
        self._pattern = re.compile(f"([0-9a-f]{{8}})-{counters}", re.ASCII)

    @staticmethod
    def new_epoch() -> str:
        """A fresh random epoch: 8 hex digits."""
        return secrets.token_hex(4)

    def format(self, epoch: str, *counters: int) -> str:
        """The offset of ``counters`` (one per group) in ``epoch``."""
        parts = (f"{n:0{width}x}" for n, width in zip(counters, self.groups, strict=True))
        return f"{epoch}-" + "-".join(parts)

    def start(self, epoch: str) -> str:
        """The start-of-stream offset of ``epoch`` (every counter 0)."""
        return self.format(epoch, *([0] * len(self.groups)))

    def parse(self, offset: object) -> tuple[str, tuple[int, ...]]:
        """``(epoch, counters)`` of a well-formed offset; :class:`InvalidOffsetError` otherwise."""
        text = check_offset(offset)
        match = self._pattern.fullmatch(text)
        if match is None:
            raise InvalidOffsetError(f"{text[:40]!r} is not an offset of the {self.store} store")
        counters = tuple(int(group, 16) for group in match.groups()[1:])
        if any(n > MAX_COUNTER for n in counters):
            raise InvalidOffsetError(f"{text!r}: a counter over 2**63 - 1 is not an offset of any store")
        return match.group(1), counters

    def position(self, offset: object, epoch: str) -> tuple[int, ...]:
        """The counters of ``offset``, which must be of ``epoch`` (else :class:`OffsetUnavailableError`)."""
        got, counters = self.parse(offset)
        if got != epoch:
            raise OffsetUnavailableError(
                f"offset {offset!r} is from another epoch (the data was wiped, or it is another store)",
                offset=str(offset),
            )
        return counters

    @staticmethod
    def check(
        offset: str, at: int | tuple[int, ...], first: int | tuple[int, ...], last: int | tuple[int, ...]
    ) -> None:
        """Refuse to resume from ``at`` unless ``first <= at <= last`` (ints for one counter).

        ``first``: the position of the newest trimmed event (0 if none); ``last``: the
        newest event's. Below ``first`` events were trimmed; above ``last`` the offset
        is ahead of the stream (``fetch_since`` from it would skip every event persisted
        up to it). Both raise :class:`OffsetUnavailableError`::

            OffsetCodec.check(offset, seq, trimmed_upto, last_seq)
        """
        at, first, last = (n if isinstance(n, tuple) else (n,) for n in (at, first, last))
        if at < first:
            raise OffsetUnavailableError(
                f"events after offset {offset!r} were removed by retention", offset=offset
            )
        if at > last:
            raise OffsetUnavailableError(
                f"offset {offset!r} is ahead of the newest event of the stream", offset=offset
            )


# -- options -------------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{name} must be an int >= {low}, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be > 0 seconds or None, got {value!r}")


@dataclass(frozen=True)
class AdapterOptions(StoreOptions):
    """Options of a store built on the kit; subclass it with your own fields and defaults.

    ``max_batch``: most writes one group commit holds. ``retention_interval``: seconds
    between background retention runs (``None``: only on ``trim()``). ``trim_chunk``:
    most events one retention step removes. Plus ``max_age`` and ``max_events`` from
    :class:`~socketio_delivery.config.StoreOptions`.
    Fill it with :func:`~socketio_delivery.config.build_options`, which refuses an unknown
    option with a message naming the valid ones::

        @dataclass(frozen=True)
        class AcmeOptions(AdapterOptions):
            retention_interval: float | None = 10.0   # another default
            journal: str = "wal"                      # an option of your own

        build_options(AcmeOptions, parse_url("acme:///e.db?max_batch=50"), {"trim_chunk": 500})
    """

    max_batch: int = 1000
    retention_interval: float | None = 30.0
    trim_chunk: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("max_batch", self.max_batch, 1)
        _check_int("trim_chunk", self.trim_chunk, 1)
        _check_seconds("retention_interval", self.retention_interval)


# -- driver errors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverErrors:
    """How one driver's exceptions map to :class:`StoreError` / :class:`StoreUnavailableError`.

    ``errors``: the driver's exception types to wrap (others pass through: bugs stay
    visible). ``unavailable``: the types meaning "cannot reach the backend", or a
    function deciding it from the exception. A timeout (``asyncio.TimeoutError`` /
    ``TimeoutError``) is always "unavailable"; :class:`DeliveryError` passes unchanged::

        SQLITE = DriverErrors("SQLite", (sqlite3.Error,), unavailable=(sqlite3.OperationalError,))
        raise SQLITE.error(exc, "fetch_since")      # StoreError with exc as __cause__
    """

    backend: str
    errors: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = ()

    def handles(self, exc: BaseException) -> bool:
        """Whether :meth:`error` would wrap ``exc`` (a driver error or a timeout)."""
        return isinstance(exc, (*self.errors, TimeoutError, asyncio.TimeoutError))

    def error(self, exc: BaseException, doing: str) -> DeliveryError:
        """The error to raise for ``exc`` while ``doing``, with ``exc`` chained as its cause."""
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            down = True
        elif callable(self.unavailable) and not isinstance(self.unavailable, tuple):
            down = self.unavailable(exc)
        else:
            down = isinstance(exc, self.unavailable)
        cls = StoreUnavailableError if down else StoreError
        error = cls(f"{self.backend} {doing} failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


@contextlib.contextmanager
def wrap_driver_errors(driver: DriverErrors, doing: str) -> Iterator[None]:
    """Re-raise ``driver``'s exceptions inside the block as store errors (``raise ... from``).

    Works around sync and async code alike (it wraps what the block raises)::

        with wrap_driver_errors(SQLITE, "fetch_since"):
            rows = await conn.execute_fetchall(sql, params)
    """
    try:
        yield
    except DeliveryError:
        raise
    except BaseException as exc:
        if not driver.handles(exc):
            raise
        raise driver.error(exc, doing) from exc


# -- group commit ----------------------------------------------------------------------------


@dataclass(slots=True)
class Persist:
    """One queued ``persist`` call: checked arguments, the payload and its JSON text.

    ``data`` is what the returned event holds (the payload as ``fetch_since`` returns
    it); ``future`` gets the :class:`~socketio_delivery.store.Event` once written.
    """

    stream: str
    data: Any
    text: str
    rooms: tuple[str, ...]
    exclude: tuple[str, ...]
    future: asyncio.Future[Any] = field(repr=False)


def _room_tuple(rooms: Collection[str], name: str) -> tuple[str, ...]:
    """``check_rooms``, with a fast path for tuples and lists of ``str``."""
    if rooms == ():
        return ()
    if (type(rooms) is tuple or type(rooms) is list) and all(type(room) is str for room in rooms):
        return tuple(rooms)
    return check_rooms(rooms, name)


def prepare_persist(stream: str, data: Any, rooms: Collection[str], exclude: Collection[str]) -> Persist:
    """Check ``persist``'s arguments and encode the payload; the future is made on the running loop.

    ::

        async def persist(self, stream, data, *, rooms=(), exclude=()):
            return await self._writer.submit(prepare_persist(stream, data, rooms, exclude))
    """
    check_stream(stream)
    event_rooms = _room_tuple(rooms, "rooms")
    event_exclude = _room_tuple(exclude, "exclude")
    text = encode_json(data, "event data")
    future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    return Persist(stream, decode_json(text, data), text, event_rooms, event_exclude, future)


#: The type of ``fetch_since``'s ``rooms``: the rooms wanted, or ``None`` for every event.
RoomFilter = Collection[str] | None


def check_fetch(stream: str, rooms: RoomFilter, limit: int) -> list[str] | None:
    """Check ``fetch_since``'s arguments but the offset; the wanted rooms, once each (``None``: all).

    ::

        wanted = check_fetch(stream, rooms, limit)
    """
    check_stream(stream)
    check_limit(limit)
    return None if rooms is None else list(dict.fromkeys(check_rooms(rooms)))


def prepare_session(
    key: str, record: Any, ttl: float, lease: float | None
) -> tuple[str, float, float | None]:
    """Check ``save_session``'s arguments: ``(record as JSON text, ttl, lease)`` in seconds.

    ::

        text, ttl, lease = prepare_session(key, record, ttl, lease)
    """
    check_key(key)
    seconds = check_ttl(ttl)
    lease_seconds = None if lease is None else check_ttl(lease, "lease")
    if not isinstance(record, Mapping):
        raise InvalidArgumentError("a session record must be a mapping")
    return encode_json(dict(record), "session record"), seconds, lease_seconds


class _HasFuture(Protocol):
    @property
    def future(self) -> asyncio.Future[Any]: ...


OpT = TypeVar("OpT", bound=_HasFuture)
T = TypeVar("T")


class GroupCommitWriter(Generic[OpT]):
    """One task writing queued operations in batches: concurrent calls share round trips.

    ``write_batch(ops)`` writes up to ``max_batch`` queued ops at once and sets each
    op's ``future`` (a result, or an exception for that op). If it raises instead,
    every op of the batch not yet answered fails with ``driver.error(exc)`` and the
    writer goes on; if the task is cancelled, every waiting op fails with
    :class:`StoreUnavailableError`. Ops are any objects with a ``future``
    (:class:`Persist`, or your own)::

        self._writer = GroupCommitWriter(self._write_batch, max_batch=1000, driver=SQLITE)
        self._writer.start(f"{self!r} writer")      # in open()
        event = await self._writer.submit(op)       # in persist()
        await self._writer.stop()                   # in close(): writes what is queued first
    """

    def __init__(
        self,
        write_batch: Callable[[list[OpT]], Awaitable[None]],
        *,
        max_batch: int,
        driver: DriverErrors,
        doing: str = "write",
    ) -> None:
        self.write_batch = write_batch
        self.max_batch = max_batch
        self.driver = driver
        self.doing = doing
        self._queue: deque[OpT] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = True

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`, while the task lives."""
        return not self._stopping and self._task is not None and not self._task.done()

    def start(self, name: str = "writer") -> None:
        """Start the task on the running loop (again after :meth:`stop`, maybe on another loop).

        Nothing happens while it runs already.
        """
        if self.running:
            return
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=name)

    def submit(self, op: OpT) -> asyncio.Future[Any]:
        """Queue ``op``; await the returned future (``op.future``) for its answer."""
        if not self.running or self._wakeup is None:
            raise StoreUnavailableError("the store is not open (await store.open() first)")
        self._queue.append(op)
        self._wakeup.set()
        return op.future

    async def stop(self) -> None:
        """Write what is queued, then end the task. Idempotent."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        queue = self._queue
        assert self._wakeup is not None
        while True:
            if not queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), self.max_batch))]
            try:
                await self.write_batch(batch)
            except Exception as exc:  # a bug or an odd reply: fail this batch, keep writing
                if not isinstance(exc, DeliveryError) and not self.driver.handles(exc):
                    log.exception("%s: %s batch failed", self.driver.backend, self.doing)
                self._fail(batch, self.driver.error(exc, self.doing))
            except BaseException as exc:  # cancelled (loop shutdown): nobody waits forever
                error = StoreUnavailableError(f"{self.driver.backend} writer stopped")
                error.__cause__ = exc
                self._fail([*batch, *queue], error)
                queue.clear()
                raise

    @staticmethod
    def _fail(ops: Collection[OpT], error: BaseException) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error)


# -- maintenance -------------------------------------------------------------------------------


class MaintenanceLoop:
    """A background task calling ``run()`` every ``interval`` seconds, or sooner after :meth:`due`.

    Every exception ``run`` raises is logged (a :class:`StoreError` as a warning, any
    other with its traceback) and the loop goes on: retention never ends silently.
    ``interval=None`` starts nothing::

        self._retention = MaintenanceLoop(self.trim, interval=options.retention_interval, logger=log)
        self._retention.start(f"{self!r} retention")    # in open()
        self._retention.due()                            # a writer saw a stream over max_events
        await self._retention.stop()                     # in close()
    """

    def __init__(
        self,
        run: Callable[[], Awaitable[Any]],
        *,
        interval: float | None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.run = run
        self.interval = interval
        self.log = logger or log
        self._due: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = True

    def start(self, name: str = "retention") -> None:
        """Start the task on the running loop (nothing when ``interval`` is ``None``, or running)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._due = asyncio.Event()
        if self.interval is not None:
            self._task = asyncio.create_task(self._loop(self.interval), name=name)

    def due(self) -> None:
        """Run soon, without waiting for the interval."""
        if self._due is not None:
            self._due.set()

    async def stop(self) -> None:
        """Cancel the task and wait for it. Idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self, interval: float) -> None:
        assert self._due is not None
        while not self._stopping:  # a cancel swallowed inside a driver call must not keep it alive
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._due.wait(), interval)
            self._due.clear()
            if self._stopping:
                return
            await self.run_once()

    async def run_once(self) -> None:
        """Call ``run()`` once, logging (never raising) what it raises."""
        try:
            await self.run()
        except StoreError as exc:
            if not self._stopping:
                self.log.warning("retention failed: %s", exc)
        except Exception:
            self.log.exception("retention failed")


# -- sessions and idempotency keys on one atomic primitive ---------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """A session or an idempotency key as :class:`RecordStore` keeps it.

    ``value``: JSON text (the session record, the key's result; ``None``: a pending key).
    ``expires``: when it goes (seconds since the Unix epoch). ``leased``: until when a
    session is leased (0: not leased).
    """

    value: str | None
    expires: float
    leased: float = 0.0


#: What a :meth:`RecordStore.update_record` change returns to leave the record as it is.
KEEP: Any = object()

R = TypeVar("R")
Change = Callable[[Record | None, float], tuple[Any, R]]


class RecordStore:
    """Sessions and idempotency keys of the contract, on one primitive your store writes.

    Implement :meth:`update_record`: atomically (one transaction, one lock, one script)
    read the record ``(kind, key)``, call ``change(record, now)`` and write what it returns.
    This class does the rest (leases, busy sessions, pending and done keys, expiry) the
    same way for every store built on it::

        class AcmeEventStore(kit.RecordStore):
            async def update_record(self, kind, key, change):
                def run(db):
                    row = db.execute("SELECT value, expires, leased FROM kv WHERE ...").fetchone()
                    new, answer = change(None if row is None else kit.Record(*row), time.time())
                    ...  # new is None: delete; kit.KEEP: leave; else write new
                    return answer
                return await self._transaction(run)
    """

    def generate_id(self) -> str:
        """A fresh session id (``pid``) or key: :func:`~socketio_delivery.store.new_id`."""
        return new_id()

    async def update_record(self, kind: str, key: str, change: Change[R]) -> R:
        """Atomically apply ``change`` to the record ``(kind, key)``; return its answer.

        ``change(record or None, now)`` returns ``(new, answer)``: ``new`` is a
        :class:`Record` to write, ``None`` to delete, :data:`KEEP` to leave it. It may
        raise (a busy session): then nothing is written. Expired records may be passed
        in; ``change`` treats them as absent.
        """
        raise NotImplementedError

    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        text, seconds, lease_seconds = prepare_session(key, record, ttl, lease)

        def save(_: Record | None, now: float) -> tuple[Record, None]:
            return Record(text, now + seconds, now + lease_seconds if lease_seconds else 0.0), None

        await self.update_record("session", key, save)

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        check_key(key)
        seconds = None if lease is None else check_ttl(lease, "lease")

        def claim(found: Record | None, now: float) -> tuple[Any, str | None]:
            if found is None or found.expires <= now:
                return None, None
            if found.leased > now:
                raise SessionBusyError("the session is being recovered by another connection")
            kept = None if seconds is None else Record(found.value, found.expires, now + seconds)
            return kept, found.value

        text = await self.update_record("session", key, claim)
        return None if text is None else json.loads(text)

    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")

        def reserve(found: Record | None, now: float) -> tuple[Any, Reservation]:
            if found is None or found.expires <= now:
                return Record(None, now + seconds), Reservation(KeyState.ACQUIRED)
            if found.value is None:
                return KEEP, Reservation(KeyState.PENDING)
            return KEEP, Reservation(KeyState.DONE, json.loads(found.value))

        return await self.update_record("key", key, reserve)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        text = encode_json(result, "result")
        await self.update_record("key", key, lambda _, now: (Record(text, now + seconds), None))

    async def release_key(self, key: str) -> None:
        check_key(key)

        def release(found: Record | None, now: float) -> tuple[Any, None]:
            return (None if found is not None and found.value is None else KEEP), None

        await self.update_record("key", key, release)


# -- a blocking DB-API connection on a thread of its own ----------------------------------------

C = TypeVar("C")
_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class ConnectionThread(Generic[C]):
    """A blocking connection (``sqlite3``, any DB-API driver) used only by a thread of its own.

    Calls run one at a time, in order; a whole batch of statements is one trip to the
    thread. Driver exceptions come out as they are: wrap them with :func:`wrap_driver_errors`.
    Calls on a closed connection raise :class:`StoreUnavailableError`::

        db = ConnectionThread[sqlite3.Connection]()
        await db.open(lambda: sqlite3.connect("e.db", isolation_level=None, check_same_thread=False))
        with wrap_driver_errors(SQLITE, "persist"):
            seq = await db.transaction(lambda conn: conn.execute("INSERT ...").lastrowid)
        await db.close()
    """

    def __init__(self) -> None:
        #: How many calls went to the thread (a group commit is one).
        self.trips = 0
        self._conn: C | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self, connect: Callable[[], C], name: str = "store connection") -> None:
        """Start the thread and make the connection there with ``connect()``; nothing if open."""
        if self._conn is not None:
            return
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=self._work, args=(jobs,), name=name, daemon=True).start()
        try:
            conn = await self._call(jobs, connect)
        except BaseException:
            jobs.put(None)
            raise
        self._conn, self._jobs = conn, jobs

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in the thread."""
        conn = self._conn
        if conn is None:
            raise StoreUnavailableError("the store is not open (await store.open() first)")
        self.trips += 1
        return await self._call(self._jobs, fn, conn, *args)

    async def transaction(self, fn: Callable[..., T], *args: Any, begin: str = "BEGIN IMMEDIATE") -> T:
        """``fn(connection, *args)`` between ``begin`` and ``COMMIT`` (``ROLLBACK`` if it raises)."""
        return await self.run(_in_transaction, begin, fn, *args)

    async def close(self, last: Callable[[C], Any] | None = None) -> None:
        """Run ``last(connection)`` (errors ignored), close the connection, end the thread."""
        conn, jobs, self._conn = self._conn, self._jobs, None
        if conn is None:
            return
        try:
            await self._call(jobs, _finish, conn, last)
        finally:
            jobs.put(None)

    @staticmethod
    async def _call(jobs: queue.SimpleQueue[_Job | None], fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        jobs.put((future, fn, args))
        return await future

    @staticmethod
    def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody waits
                future.get_loop().call_soon_threadsafe(_answer, future, result, error)


def _in_transaction(conn: Any, begin: str, fn: Callable[..., T], *args: Any) -> T:
    conn.execute(begin)
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    return result


def _finish(conn: Any, last: Callable[[Any], Any] | None) -> None:
    if last is not None:
        with contextlib.suppress(Exception):  # best effort (PRAGMA optimize, ...)
            last(conn)
    conn.close()
