"""The Redis store: events in Redis streams, ids assigned by the server, writes group-committed.

::

    from socketio_delivery import open_store

    store = open_store("redis://localhost:6379/0?prefix=chat")
    await store.open()
    event = await store.persist("/chat", {"text": "hi"}, rooms=["lobby"])
    page = await store.fetch_since("/chat", None, rooms=["lobby"])
    await store.close()

or with a client you already have (it stays yours: ``close()`` does not close it)::

    client = redis.asyncio.Redis(host="localhost")
    store = RedisEventStore.from_client(client, prefix="chat")

Each stream is a Redis stream; ``persist`` calls are queued and a single writer task sends
everything queued as one pipeline, one ``EVALSHA`` per stream carrying all of that stream's
events (group commit). The script appends them with ``XADD *``, so the server assigns the
ids, in the order it runs the scripts: no late arrivals, from any number of processes.
An offset is ``<epoch>-<ms>-<seq>`` (the stream's epoch, then the Redis id in fixed-width
hex), so offsets of one epoch compare as plain strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from socketio_delivery.config import build_options, redact
from socketio_delivery.errors import (
    ConfigurationError,
    EpochChangedError,
    InvalidArgumentError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreUnavailableError,
)
from socketio_delivery.kit import (
    AdapterOptions,
    DriverErrors,
    GroupCommitWriter,
    MaintenanceLoop,
    OffsetCodec,
    Persist,
    RoomFilter,
    check_fetch,
    encode_json,
    prepare_persist,
    wrap_driver_errors,
)
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Capability, Event, KeyState, Page, Reservation, new_id
from socketio_delivery.validate import check_key, check_stream, check_ttl

from . import _scripts
from ._scripts import INLINE_LIMIT, Script
from ._url import split_url

__all__ = ["RedisEventStore", "RedisOptions"]

log = logging.getLogger("socketio_delivery_redis")

#: ``<epoch>-<ms>-<seq>``: the stream's epoch, then the Redis id in fixed-width hex.
_CODEC = OffsetCodec("Redis", (16, 16))
_PREFIX = re.compile(r"[^{}\s]{1,64}")
#: What the driver raises: wrapped as StoreError / StoreUnavailableError at the edge.
_DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)
REDIS = DriverErrors("Redis", _DRIVER_ERRORS, unavailable=(RedisConnectionError, RedisTimeoutError, OSError))
#: Default bounds of every command and of connecting (seconds), unless the URL sets
#: ``socket_timeout`` / ``socket_connect_timeout``: past them a call raises
#: StoreUnavailableError. A timed-out command is not retried (``retries`` is for
#: connection errors), so one call is bounded by them.
DEFAULT_SOCKET_TIMEOUT = 5.0
#: Most events one persist batch removes by count (the rest: the next batches, or trim()).
_PERSIST_TRIM_CHUNK = 2000
#: A fetch that has found events stops after examining this many scan steps (a short page).
_STEPS_WITH_RESULTS = 10


@dataclass(frozen=True)
class RedisOptions(AdapterOptions):
    """Options of ``redis://``, ``rediss://`` and ``unix://`` URLs (query string or keywords).

    ``prefix``: first part of every key the store creates (no braces, no spaces), so
    several applications can share one database. ``max_batch``: most events one round
    trip carries. ``scan_count``: most entries one ``fetch_since`` step examines when
    filtering by rooms a stream written before the room index (else the index answers).
    ``trim_chunk``: most events one retention step removes.
    ``retention_interval``: seconds between background retention runs over every
    stream (``None``: only on persist and :meth:`~RedisEventStore.trim`).
    ``retries``: retries of a command after a connection error or timeout (clients
    the store creates; a client you pass keeps its own policy). ``cluster``: the URL
    names a node of a Redis Cluster (the store discovers the others).
    """

    prefix: str = "sio"
    scan_count: int = 1000
    retention_interval: float | None = 60.0
    retries: int = 3
    cluster: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError(
                f"prefix must be 1 to 64 characters without braces or spaces, got {self.prefix!r}"
            )
        if isinstance(self.scan_count, bool) or not isinstance(self.scan_count, int) or self.scan_count < 1:
            raise ConfigurationError(f"scan_count must be an int >= 1, got {self.scan_count!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {self.retries!r}")


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogatepass")


def _list_args(items: tuple[str, ...]) -> list[bytes | int]:
    if len(items) > INLINE_LIMIT:
        return [-1, _b(encode_json(list(items), "rooms"))]
    return [len(items), *(_b(item) for item in items)]


def _redis_id(raw: bytes | str) -> tuple[int, int]:
    ms, _, seq = _s(raw).partition("-")
    return int(ms), int(seq)


class _StreamKeys:
    """The keys of one stream; they share the hash tag ``{<stream>}`` (one cluster slot)."""

    __slots__ = ("events", "meta", "writer")

    def __init__(self, prefix: str, stream: str, writer: str) -> None:
        tag = stream.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        base = f"{prefix}:{{{tag}}}:"
        self.events = _b(base + "events")
        self.meta = _b(base + "meta")
        self.writer = _b(base + "w:" + writer)


#: seconds a call waits for a free pooled connection (URL ``max_connections``, default 50)
_POOL_WAIT = 20.0


class RedisEventStore:
    """An :class:`~socketio_delivery.EventStore` on Redis (>= 6.2; tested on 7.0).

    Made from a URL (:meth:`from_url`, or ``open_store("redis://...")``) or from a
    ``redis.asyncio.Redis`` / ``RedisCluster`` client you already have
    (:meth:`from_client`, or ``RedisEventStore(client, options)``).

    :attr:`round_trips` counts the pipelines the writer sent and :attr:`writes` the
    events they carried, so ``writes / round_trips`` is the batching factor.
    """

    capabilities: frozenset[Capability] = frozenset({Capability.DURABLE, Capability.MULTI_PROCESS})

    def __init__(
        self, client: Any = None, options: RedisOptions | None = None, *, url: str | None = None
    ) -> None:
        if (client is None) == (url is None):
            raise ConfigurationError("RedisEventStore needs a redis.asyncio client or a url (not both)")
        self.url = url
        self.options = options or RedisOptions()
        self.round_trips = 0
        self.writes = 0
        self._given = client
        self._client: Any = None
        self._writer_id = ""
        self._keys: dict[str, _StreamKeys] = {}
        self._open_lock = asyncio.Lock()
        self._writer: GroupCommitWriter[Persist] = GroupCommitWriter(
            self._run_batch, max_batch=self.options.max_batch, driver=REDIS, doing="persist"
        )
        self._retention = MaintenanceLoop(self.trim, interval=self.options.retention_interval, logger=log)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisEventStore:
        """``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS), ``unix:///path.sock``.

        Query parameters are this store's options (:class:`RedisOptions`) or redis-py's
        connection parameters (``socket_timeout``, ``ssl_cert_reqs``, ``db``, ...), which
        are passed on to it: ``redis://cache:6379/2?prefix=chat&max_events=50000``.
        """
        own_url, redis_url = split_url(url, {f.name for f in dataclasses.fields(RedisOptions)})
        store_options = build_options(RedisOptions, own_url, options)
        return cls(url=redis_url, options=store_options)

    @classmethod
    def from_client(cls, client: Any, **options: Any) -> RedisEventStore:
        """A store on a ``redis.asyncio`` client you made (Sentinel ``master_for``, cluster, ...).

        ``options`` are :class:`RedisOptions` fields. The client stays yours: :meth:`close`
        leaves it open. The store sends bytes and reads bytes or text, so the client's
        ``decode_responses`` may be either.
        """
        return cls(client, build_options(RedisOptions, None, options))

    def __repr__(self) -> str:
        where = redact(self.url) if self.url else type(self._given).__name__
        return f"<RedisEventStore {where} prefix={self.options.prefix!r}>"

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        async with self._open_lock:
            if self._client is not None:
                return
            client = self._given
            if client is None:
                client = self._make_client()
            try:
                with wrap_driver_errors(REDIS, f"connecting ({self!r})"):
                    if isinstance(client, RedisCluster):
                        await client.initialize()
                    await client.ping()
            except BaseException:
                if self._given is None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
                raise
            await self._warn_if_not_persistent(client)
            self._client = client
            self._writer_id = secrets.token_hex(8)
            self._keys.clear()
            self._writer.start(f"{self!r} writer")
            self._retention.start(f"{self!r} retention")

    def _make_client(self) -> Any:
        """The client of a URL: bounded commands (socket timeouts), retried connection errors."""
        # A timed-out command is not retried: one call stays bounded by socket_timeout.
        retry = Retry(
            ExponentialWithJitterBackoff(base=0.02, cap=0.5),
            self.options.retries,
            supported_errors=(RedisConnectionError,),
        )
        bounds = {"socket_timeout": DEFAULT_SOCKET_TIMEOUT, "socket_connect_timeout": DEFAULT_SOCKET_TIMEOUT}
        try:  # the URL's own socket_timeout / socket_connect_timeout win over these defaults
            if self.options.cluster:
                return RedisCluster.from_url(self.url or "", retry=retry, **bounds)
            # A blocking pool: a burst of calls (hundreds of clients connecting at
            # once) waits for a connection instead of failing with "Too many connections".
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url or "", retry=retry, timeout=_POOL_WAIT, **bounds
            )
            return aioredis.Redis.from_pool(pool)
        except (ValueError, TypeError, RedisError) as exc:
            raise ConfigurationError(f"cannot use {redact(self.url or '')}: {exc}") from exc

    async def _warn_if_not_persistent(self, client: Any) -> None:
        if isinstance(client, RedisCluster):
            return  # CONFIG answers per node there
        try:
            config = await client.config_get("appendonly")
            config.update(await client.config_get("save"))
            values = {_s(k): _s(v) for k, v in config.items()}
        except (*_DRIVER_ERRORS, AttributeError, TypeError):
            return  # CONFIG is often disabled on managed Redis
        if values.get("appendonly") == "no" and not values.get("save", "").strip():
            log.warning(
                "%r: the Redis server does not persist (appendonly no, no save points): a restart "
                "loses every event, session and key; clients then resynchronise",
                self,
            )

    async def close(self) -> None:
        async with self._open_lock:
            client = self._client
            if client is None:
                return
            await self._retention.stop()
            await self._writer.stop()
            self._client = None
            if self._given is None:
                with wrap_driver_errors(REDIS, "close"):
                    await client.aclose()

    def generate_id(self) -> str:
        return new_id()

    # -- helpers -----------------------------------------------------------------------
    def _ready(self) -> Any:
        if self._client is None or not self._writer.running:
            raise StoreUnavailableError(f"{self!r} is not open (or its event loop ended): await store.open()")
        return self._client

    def _stream_keys(self, stream: str) -> _StreamKeys:
        keys = self._keys.get(stream)
        if keys is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            keys = self._keys[stream] = _StreamKeys(self.options.prefix, stream, self._writer_id)
        return keys

    def _key(self, kind: str, key: str) -> bytes:
        return _b(f"{self.options.prefix}:{kind}:{key}")

    @property
    def _registry(self) -> bytes:
        return _b(f"{self.options.prefix}:streams")

    async def _eval(self, script: Script, keys: Sequence[bytes], args: Sequence[Any], doing: str) -> Any:
        client = self._ready()
        with wrap_driver_errors(REDIS, doing):
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script.source, len(keys), *keys, *args)

    @staticmethod
    def _offset(epoch: str, ms: int, seq: int) -> str:
        return _CODEC.format(epoch, ms, seq)

    @staticmethod
    def _parse_offset(offset: object) -> tuple[str, int, int]:
        epoch, (ms, seq) = _CODEC.parse(offset)
        return epoch, ms, seq

    # -- the writer ----------------------------------------------------------------------
    def _persist_args(self, ops: list[Persist]) -> list[Any]:
        opts = self.options
        maxlen = opts.max_events or 0
        age_ms = 0 if opts.max_age is None else max(1, round(opts.max_age * 1000))
        args: list[Any] = [
            secrets.token_hex(4),  # epoch, if the stream has none yet
            secrets.token_hex(8),  # batch token
            maxlen,
            age_ms,
            # Small, frequent steps on the write path: a trim never holds Redis for long.
            min(opts.trim_chunk, _PERSIST_TRIM_CHUNK),
            min(max(100, maxlen // 10), _PERSIST_TRIM_CHUNK // 2),  # count excess tolerated
            max(1000, age_ms // 10),  # age excess (ms) tolerated before a trim
        ]
        for op in ops:
            args += (_b(op.text), *_list_args(op.rooms), *_list_args(op.exclude))
        return args

    async def _run_batch(self, batch: list[Persist]) -> None:
        groups: dict[str, list[Persist]] = {}
        for op in batch:
            groups.setdefault(op.stream, []).append(op)
        calls = [(ops, self._stream_keys(stream), self._persist_args(ops)) for stream, ops in groups.items()]
        sends = [(keys, args) for _, keys, args in calls]
        # If the whole round trip fails, the kit's writer tells every caller in it.
        if isinstance(self._client, RedisCluster):
            results = await self._send_to_cluster(list(groups), sends)
        else:
            results = await self._send_pipelined(list(groups), sends)
        self.writes += len(batch)
        for (ops, _, _), result in zip(calls, results, strict=True):
            if isinstance(result, BaseException):
                for op in ops:
                    if not op.future.done():
                        op.future.set_exception(REDIS.error(result, "persist"))
                continue
            epoch = _s(result[0])
            for op, raw in zip(ops, result[1:], strict=True):
                ms, seq = _redis_id(raw)
                event = Event(self._offset(epoch, ms, seq), op.data, op.rooms, op.exclude, ms / 1000)
                if not op.future.done():
                    op.future.set_result(event)

    async def _send_pipelined(
        self, streams: list[str], sends: list[tuple[_StreamKeys, list[Any]]]
    ) -> list[Any]:
        """One pipeline: SADD to the registry, then one EVALSHA per stream; per-call results."""
        client = self._client
        pipe = client.pipeline(transaction=False)
        pipe.sadd(self._registry, *(_b(stream) for stream in streams))
        for keys, args in sends:
            pipe.evalsha(_scripts.PERSIST.sha, 3, keys.events, keys.meta, keys.writer, *args)
        self.round_trips += 1
        results: list[Any] = (await pipe.execute(raise_on_error=False))[1:]
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # the server restarted or SCRIPT FLUSH: send the source (same batch token)
            pipe = client.pipeline(transaction=False)
            for i in missing:
                keys, args = sends[i]
                pipe.eval(_scripts.PERSIST.source, 3, keys.events, keys.meta, keys.writer, *args)
            self.round_trips += 1
            for i, result in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = result
        return results

    async def _send_to_cluster(
        self, streams: list[str], sends: list[tuple[_StreamKeys, list[Any]]]
    ) -> list[Any]:
        """Redis Cluster: scripts cannot be pipelined there; one call per stream, concurrently."""
        client = self._client

        async def persist(keys: _StreamKeys, args: list[Any]) -> Any:
            try:
                return await client.evalsha(
                    _scripts.PERSIST.sha, 3, keys.events, keys.meta, keys.writer, *args
                )
            except NoScriptError:
                return await client.eval(
                    _scripts.PERSIST.source, 3, keys.events, keys.meta, keys.writer, *args
                )

        self.round_trips += 1
        registry = client.sadd(self._registry, *(_b(stream) for stream in streams))
        results = await asyncio.gather(
            registry, *(persist(keys, args) for keys, args in sends), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled
        return list(results[1:])

    # -- event streams ----------------------------------------------------------------
    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        op = prepare_persist(stream, data, rooms, exclude)
        self._ready()
        return await self._writer.submit(op)  # type: ignore[no-any-return]

    def _event(self, epoch: str, entry: Sequence[Any]) -> Event:
        raw_id, fields = entry
        ms, seq = _redis_id(raw_id)
        data: Any = None
        rooms: list[str] = []
        exclude: list[str] = []
        for i in range(0, len(fields), 2):
            name = _s(fields[i])
            value = fields[i + 1]
            if name == "d":
                data = json.loads(_s(value))
            elif name == "r":
                rooms.append(_s(value))
            elif name == "x":
                exclude.append(_s(value))
            elif name == "R":
                rooms.extend(json.loads(_s(value)))
            elif name == "X":
                exclude.extend(json.loads(_s(value)))
        return Event(self._offset(epoch, ms, seq), data, tuple(rooms), tuple(exclude), ms / 1000)

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: RoomFilter = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> list[Event]:
        wanted = check_fetch(stream, rooms, limit)
        after = None if offset is None else self._parse_offset(offset)
        self._ready()
        keys = self._stream_keys(stream)
        start = "-" if after is None else f"({after[1]}-{after[2]}"
        filtering = wanted is not None
        room_args = [_b(room) for room in wanted or ()]
        out: list[Event] = []
        steps = 0
        epoch: str | None = None
        while True:
            need = limit - len(out)
            window = max(need, self.options.scan_count) if filtering else need
            args = [start, window, need, "1" if filtering else "0", *room_args]
            raw_epoch, raw_lwm, raw_last, cursor, examined, entries, indexed = await self._eval(
                _scripts.FETCH, (keys.events, keys.meta), args, "fetch_since"
            )
            lwm = None if raw_lwm is None else _redis_id(raw_lwm)
            if steps == 0:
                epoch = None if raw_epoch is None else _s(raw_epoch)
                if after is not None:
                    self._check_position(offset, after, epoch, lwm, raw_last)
                if epoch is None:
                    return []
            elif (
                raw_epoch is None
                or _s(raw_epoch) != epoch
                or (lwm is not None and _redis_id(start[1:]) < lwm)
            ):
                # Trimmed (or wiped) while this call paged: what was found is still right.
                if out:
                    return out
                raise OffsetUnavailableError(
                    f"events after offset {offset!r} were removed by retention while reading", offset=offset
                )
            assert epoch is not None
            out.extend(self._event(epoch, entry) for entry in entries)
            steps += 1
            if int(indexed) or len(out) >= limit or int(examined) < window or cursor is None:
                return out  # the room index answers a whole page in one step
            if out and steps >= _STEPS_WITH_RESULTS:
                # Bounded work per call. The page says how far it looked (read_on_from): the next
                # call starts there, not at the last event, so nothing is examined twice.
                return Page(out, examined=self._offset(epoch, *_redis_id(cursor)))
            start = "(" + _s(cursor)

    @staticmethod
    def _check_position(
        offset: str | None,
        after: tuple[str, int, int],
        epoch: str | None,
        lwm: tuple[int, int] | None,
        raw_last: Any,
    ) -> None:
        if epoch is None:
            raise EpochChangedError(
                f"offset {offset!r} is not held by this store (the stream is unknown or was wiped)",
                offset=offset,
            )
        if after[0] != epoch:
            raise EpochChangedError(
                f"offset {offset!r} is from another epoch (the data was wiped, or it is another store)",
                offset=offset,
            )
        last = (0, 0) if raw_last is None else _redis_id(raw_last)
        _CODEC.check(str(offset), (after[1], after[2]), first=lwm or (0, 0), last=last)

    async def last_offset(self, stream: str) -> str:
        check_stream(stream)
        keys = self._stream_keys(stream)
        epoch, last = await self._eval(
            _scripts.LAST, (keys.events, keys.meta), [secrets.token_hex(4)], "last_offset"
        )
        ms, seq = _redis_id(last)
        return self._offset(_s(epoch), ms, seq)

    # -- retention ----------------------------------------------------------------------
    async def trim(self, stream: str | None = None) -> int:
        if stream is not None:
            check_stream(stream)
            return await self._trim_stream(stream)
        client = self._ready()
        total = 0
        with wrap_driver_errors(REDIS, "listing streams"):
            names = [_s(name) async for name in client.sscan_iter(self._registry, count=500)]
        for name in names:
            total += await self._trim_stream(name)
        return total

    async def _trim_stream(self, stream: str) -> int:
        keys = self._stream_keys(stream)
        opts = self.options
        args = [
            opts.max_events or 0,
            0 if opts.max_age is None else max(1, round(opts.max_age * 1000)),
            opts.trim_chunk,
        ]
        total = 0
        while True:
            gone, more = await self._eval(_scripts.TRIM, (keys.events, keys.meta), args, "trim")
            total += int(gone)
            if not int(more):
                return total

    # -- sessions -------------------------------------------------------------------------
    async def _call(self, doing: str, method: str, *args: Any, **kwargs: Any) -> Any:
        client = self._ready()
        with wrap_driver_errors(REDIS, doing):
            return await getattr(client, method)(*args, **kwargs)

    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        """Store ``record`` for ``ttl`` seconds, claimable at once or leased for ``lease`` seconds.

        One command either way: ``SET ... PX`` without lease, else one script
        (``_scripts.SAVE_LEASED``) that writes the leased form a claim writes::

            await store.save_session(pid, record, 120, lease=10)  # renewed while connected
        """
        check_key(key)
        ms = max(1, round(check_ttl(ttl) * 1000))
        # inf (or any lease past ~30,000 years) is capped: it must stay a finite number of ms.
        lease_ms = None if lease is None else max(1, round(min(check_ttl(lease, "lease"), 1e12) * 1000))
        if not isinstance(record, Mapping):
            raise InvalidArgumentError("a session record must be a mapping")
        text = encode_json(dict(record), "session record")
        if lease_ms is None:
            await self._call("save_session", "set", self._key("session", key), _b(text), px=ms)
            return
        keys = (self._key("session", key),)
        await self._eval(_scripts.SAVE_LEASED, keys, [_b(text), ms, lease_ms], "save_session")

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        """Return the record under ``key`` and take it (one script: see ``_scripts.CLAIM``).

        Without ``lease`` the key is deleted; with ``lease`` it is kept, marked leased
        until the server's clock passes now + lease, and claims raise
        :class:`~socketio_delivery.errors.SessionBusyError` until then::

            record = await store.claim_session(sid_key, lease=5)  # a crash loses nothing
            ...
            await store.save_session(sid_key, new_record, ttl)  # ends the lease
        """
        check_key(key)
        # inf (or any lease past ~30,000 years) is capped: it must stay a finite number of ms.
        ms = 0 if lease is None else max(1, round(min(check_ttl(lease, "lease"), 1e12) * 1000))
        reply = await self._eval(_scripts.CLAIM, (self._key("session", key),), [ms], "claim_session")
        if reply is None:
            return None
        if _s(reply[0]) == "busy":
            left = float(_s(reply[1])) / 1000 if len(reply) > 1 else None
            raise SessionBusyError("the session is being recovered by another connection", retry_after=left)
        record: dict[str, Any] = json.loads(_s(reply[1]))
        return record

    # -- idempotency keys ---------------------------------------------------------------------
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        ms = max(1, round(check_ttl(lease, "lease") * 1000))
        value = await self._eval(
            _scripts.RESERVE, (self._key("key", key),), [secrets.token_hex(8), ms], "reserve_key"
        )
        if value is None:
            return Reservation(KeyState.ACQUIRED)
        text = _s(value)
        if text.startswith("d:"):
            return Reservation(KeyState.DONE, json.loads(text[2:]))
        return Reservation(KeyState.PENDING)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        ms = max(1, round(check_ttl(ttl) * 1000))
        text = encode_json(result, "result")
        await self._call("complete_key", "set", self._key("key", key), _b("d:" + text), px=ms)

    async def release_key(self, key: str) -> None:
        check_key(key)
        await self._eval(_scripts.RELEASE, (self._key("key", key),), [], "release_key")
