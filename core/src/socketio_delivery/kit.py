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
import re
import secrets
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
    StoreError,
    StoreUnavailableError,
)
from .store import Event
from .validate import check_key, check_limit, check_offset, check_rooms, check_stream, check_ttl

__all__ = [
    "MAX_COUNTER",
    "AdapterOptions",
    "DriverErrors",
    "GroupCommitWriter",
    "MaintenanceLoop",
    "OffsetCodec",
    "Persist",
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
    def check(offset: str, at: tuple[int, ...], *, first: tuple[int, ...], last: tuple[int, ...]) -> None:
        """Refuse to resume from ``at`` unless ``first <= at <= last``.

        ``first``: the position of the newest trimmed event (0 if none); ``last``: the
        newest event's. Below ``first`` events were trimmed; above ``last`` the offset
        is ahead of the stream (``fetch_since`` from it would skip every event persisted
        up to it). Both raise :class:`OffsetUnavailableError`.
        """
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
        """Start the task on the running loop (again after :meth:`stop`, maybe on another loop)."""
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
        """Start the task on the running loop (nothing when ``interval`` is ``None``)."""
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
