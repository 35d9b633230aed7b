"""Client -> server, processed once: idempotency keys recorded in the store.

A client emit whose first argument is a mapping carrying an idempotency key (by default
``{"idempotencyKey": "..."}``) runs its handler once per client identity, namespace,
event and key:

* the first delivery reserves the key (a lease), runs the handler and records its ack
  (the handler's return value) for ``ttl`` seconds;
* a retry of a finished event gets the recorded ack without running the handler;
* a retry that arrives while the first run is still going waits for its result;
* a handler that raises releases the key, so the client's retry runs it again.

Keys are scoped by client identity (hashed together with namespace and event), so one
client can neither collide with nor read another's results.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import DeliveryError, InvalidArgumentError
from .store import EventStore, KeyState

__all__ = ["MAX_IDEMPOTENCY_KEY_LENGTH", "IdempotencyGuard"]

log = logging.getLogger("socketio_delivery")

MAX_IDEMPOTENCY_KEY_LENGTH = 128

#: what a refused emit acks with (the handler does not run)
INVALID_KEY = {"error": "invalid idempotency key"}


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
    ) -> None:
        self.store = store
        self.field = field
        self.ttl = ttl
        self.lease = lease
        self.not_handled = not_handled

    def key_of(self, args: tuple[Any, ...]) -> Any:
        """The raw idempotency key of a handler's arguments (``None`` when it has none)."""
        if args and isinstance(args[0], dict):
            return args[0].get(self.field)
        return None

    async def run(
        self, identity: str, namespace: str, event: str, key: Any, handler: Callable[[], Awaitable[Any]]
    ) -> Any:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            log.warning(
                "refused %r from %s: idempotency key must be a string of 1..%d characters",
                event,
                identity[:8],
                MAX_IDEMPOTENCY_KEY_LENGTH,
            )
            return INVALID_KEY
        scoped = "idem:" + hashlib.sha256(f"{identity}\0{namespace}\0{event}\0{key}".encode()).hexdigest()
        try:
            return await self._run(scoped, handler)
        except DeliveryError as exc:
            # Store down: no ack, so the client retries later; the handler did not run twice.
            log.error("processed-once emit %r not handled, store failed: %s", event, exc)
            return self.not_handled

    async def _run(self, key: str, handler: Callable[[], Awaitable[Any]]) -> Any:
        delay = 0.02
        while True:
            reservation = await self.store.reserve_key(key, self.lease)
            if reservation.state is KeyState.DONE:
                return _decode(reservation.result)
            if reservation.state is KeyState.ACQUIRED:
                break
            await asyncio.sleep(delay)  # another delivery of the same emit is running
            delay = min(delay * 2, 0.5)
        try:
            result = await handler()
        except BaseException:
            await self.store.release_key(key)
            raise
        if result is self.not_handled:
            await self.store.release_key(key)
            return result
        try:
            await self.store.complete_key(key, _encode(result), self.ttl)
        except InvalidArgumentError as exc:
            log.error("the ack of a processed-once emit is not JSON, so it is not recorded: %s", exc)
            await self.store.release_key(key)
        return result


def _encode(result: Any) -> Any:
    return {"t": True, "v": list(result)} if isinstance(result, tuple) else {"v": result}


def _decode(stored: Any) -> Any:
    if isinstance(stored, dict) and stored.get("t"):
        return tuple(stored.get("v") or ())
    return stored.get("v") if isinstance(stored, dict) else stored
