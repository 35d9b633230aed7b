"""Client -> server, processed once: idempotency keys recorded in the store.

A client emit whose first argument is a mapping carrying an idempotency key (by default
``{"idempotencyKey": "..."}``) runs its handler once per client identity, namespace,
event and key:

* the first delivery reserves the key (a lease), runs the handler and records its ack
  (the handler's return value) for ``ttl`` seconds;
* a retry of a finished event gets the recorded ack without running the handler;
* a retry that arrives while the first run is still going waits for its result;
* a handler that raises releases the key, so the client's retry runs it again.

Acks are recorded as JSON; ``bytes`` in them are kept the way binary events are
(:mod:`.binary`), so a binary ack comes back the same. An ack whose record would be over
``max_result_bytes`` is not sent: the client gets (and every retry gets again)
``{"error": "ack too large", ...}`` and the handler does not run again.

Keys are scoped by client identity (hashed together with namespace and event), so one
client can neither collide with nor read another's results.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .binary import join_binary, split_binary
from .errors import DeliveryError, InvalidArgumentError
from .store import EventStore, KeyState, Reservation

__all__ = ["DEFAULT_MAX_RESULT_BYTES", "MAX_IDEMPOTENCY_KEY_LENGTH", "IdempotencyGuard"]

log = logging.getLogger("socketio_delivery")

MAX_IDEMPOTENCY_KEY_LENGTH = 128

#: the largest recorded ack, as JSON, by default
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024

#: ``identity_of(sid, namespace)``: who sent an emit, for scoping its key
IdentityOf = Callable[[str, str], Awaitable[str]]
Trigger = Callable[..., Awaitable[Any]]


def invalid_key() -> dict[str, str]:
    """What a refused emit acks with (the handler does not run); a new dict each time."""
    return {"error": "invalid idempotency key"}


class IdempotencyGuard:
    """Runs handlers once per key; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        *,
        field: str = "idempotencyKey",
        ttl: float = 3600.0,
        lease: float = 60.0,
        not_handled: Any = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.store = store
        self.field = field
        self.ttl = ttl
        self.lease = lease
        self.not_handled = not_handled
        self.max_result_bytes = max_result_bytes

    @classmethod
    def configured(cls, store: EventStore, settings: Any, not_handled: Any) -> IdempotencyGuard | None:
        """The guard ``settings`` (a :class:`~socketio_delivery.settings.Settings`) ask for, if any."""
        if not settings.idempotency_key:
            return None
        return cls(
            store,
            field=settings.idempotency_key,
            ttl=settings.idempotency_ttl,
            not_handled=not_handled,
            max_result_bytes=settings.max_result_bytes,
        )

    async def dispatch(
        self, trigger: Trigger, event: str, namespace: str, args: tuple[Any, ...], identity_of: IdentityOf
    ) -> Any:
        """Run ``trigger(event, namespace, sid, *data)`` once per key when the emit carries one."""
        key = self.key_of(args[1:]) if len(args) >= 2 else None
        if key is None:
            return await trigger(event, namespace, *args)
        identity = await identity_of(args[0], namespace)
        return await self.run(identity, namespace, event, key, lambda: trigger(event, namespace, *args))

    def key_of(self, args: tuple[Any, ...]) -> Any:
        """The raw idempotency key of a handler's arguments (``None`` when it has none)."""
        if args and isinstance(args[0], dict):
            return args[0].get(self.field)
        return None

    async def run(
        self, identity: str, namespace: str, event: str, key: Any, handler: Callable[[], Awaitable[Any]]
    ) -> Any:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            log.warning(  # never the identity: by default it is the client's pid
                "refused %r: idempotency key must be a string of 1..%d characters",
                event,
                MAX_IDEMPOTENCY_KEY_LENGTH,
            )
            return invalid_key()
        scoped = "idem:" + hashlib.sha256(f"{identity}\0{namespace}\0{event}\0{key}".encode()).hexdigest()
        try:
            done = await self._acquire(scoped)
        except DeliveryError as exc:
            # Store down: no ack, so the client retries later; the handler did not run.
            log.error("processed-once emit %r not handled, store failed: %s", event, exc)
            return self.not_handled
        if done is not None:
            return _decode(done.result)
        return await self._run(scoped, handler)

    async def _acquire(self, key: str) -> Reservation | None:
        """Hold ``key`` (``None``), or the reservation of a completed run (its result)."""
        delay = 0.02
        while True:
            reservation = await self.store.reserve_key(key, self.lease)
            if reservation.state is KeyState.DONE:
                return reservation
            if reservation.state is KeyState.ACQUIRED:
                return None
            await asyncio.sleep(delay)  # another delivery of the same emit is running
            delay = min(delay * 2, 0.5)

    async def _run(self, key: str, handler: Callable[[], Awaitable[Any]]) -> Any:
        """Run the handler for a held key and record its ack; the handler's own errors propagate."""
        try:
            result = await handler()
        except BaseException:
            await self._release(key)
            raise
        if result is self.not_handled:
            await self._release(key)
            return result
        record, result = self._record(result)
        try:
            await self.store.complete_key(key, record, self.ttl)
        except InvalidArgumentError as exc:
            log.error("the ack of a processed-once emit is not JSON, so it is not recorded: %s", exc)
            await self._release(key)
        except DeliveryError as exc:
            log.error(
                "the ack of a processed-once emit could not be recorded (a retry may run it again): %s", exc
            )
        return result

    async def _release(self, key: str) -> None:
        """Give a held key up so a retry runs; a store error here is logged, never raised."""
        try:
            await self.store.release_key(key)
        except DeliveryError as exc:
            log.error("could not release a processed-once key (a retry waits for its lease): %s", exc)

    def _record(self, result: Any) -> tuple[Any, Any]:
        """The stored form of an ack, and the ack to send (an error when it is too large)."""
        values = list(result) if isinstance(result, tuple) else [result]
        stored, paths = split_binary(values)
        record: dict[str, Any] = {"r": stored, "t": isinstance(result, tuple)}
        if paths:
            record["b"] = paths
        try:
            size = len(json.dumps(record, separators=(",", ":")))
        except (TypeError, ValueError, RecursionError):
            return record, result  # not JSON: the store refuses it, with its own error
        if size <= self.max_result_bytes:
            return record, result
        log.error("an ack of %d bytes is over max_result_bytes (%d): not sent", size, self.max_result_bytes)
        error = {"error": "ack too large", "bytes": size, "max": self.max_result_bytes}
        return {"r": [error], "t": False}, error


def _decode(stored: Any) -> Any:
    if not isinstance(stored, dict):
        return stored
    if "r" not in stored:  # written by 0.1: {"v": ack} or {"t": true, "v": [args]}
        return tuple(stored.get("v") or ()) if stored.get("t") else stored.get("v")
    values = list(stored["r"])
    if stored.get("b"):
        values = join_binary(values, stored["b"])
    return tuple(values) if stored.get("t") else (values[0] if values else None)
