"""The client's outgoing queue: in order, one event in flight, resent until acknowledged.

Used by :class:`socketio_delivery.client.DeliveryClient`; kept apart so the retry rules live in
one small place. The rules are those of the Socket.IO JavaScript client's ``retries`` +
``ackTimeout`` options:

- emits leave in the order they were made, per namespace; the next one is sent only when the
  previous one is acknowledged or has failed for good;
- an attempt ends with the ack, with ``ack_timeout`` seconds without an ack, or with the
  connection dropping; an event is sent at most ``1 + retries`` times; an ack from any earlier
  attempt of the same event also counts;
- while the namespace is disconnected nothing is sent and nothing is counted: the queue waits for
  the reconnection and resumes with the event that was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import DeliveryError

__all__ = [
    "ClientClosedError",
    "EmitError",
    "EmitTimeoutError",
    "Outbox",
    "PendingEmit",
    "with_idempotency_key",
]

logger = logging.getLogger("socketio_delivery.client")

#: Sends one attempt: (event, data, ack callback) -> None. Raises when the namespace is not connected.
SendAttempt = Callable[[str, Any, Callable[..., None]], Awaitable[None]]


class EmitError(DeliveryError):
    """An emit of :class:`~socketio_delivery.client.DeliveryClient` was not acknowledged."""

    def __init__(self, message: str, *, event: str, attempts: int) -> None:
        super().__init__(message)
        self.event = event
        self.attempts = attempts


class EmitTimeoutError(EmitError, TimeoutError):
    """The server did not acknowledge the event within ``1 + retries`` attempts."""


class ClientClosedError(EmitError, ConnectionError):
    """The client disconnected for good (``disconnect()``, reconnection gave up) before the ack."""


def with_idempotency_key(data: Any, key: str | None) -> Any:
    """``data`` with ``key`` set to a fresh random value in its dict (first) argument.

    A dict, or a tuple whose first item is a dict, gets a copy with the key unless it has one
    already; anything else (and ``key=None``) is returned as is::

        with_idempotency_key({"a": 1}, "idempotencyKey")  # {"a": 1, "idempotencyKey": "3f2c..."}
    """
    if key is None:
        return data
    if isinstance(data, dict):
        return data if key in data else {**data, key: str(uuid.uuid4())}
    if isinstance(data, tuple) and data and isinstance(data[0], dict) and key not in data[0]:
        return ({**data[0], key: str(uuid.uuid4())}, *data[1:])
    return data


@dataclass(eq=False)
class PendingEmit:
    """One queued emit."""

    event: str
    data: Any
    ack_timeout: float
    retries: int
    future: asyncio.Future[tuple[Any, ...]]
    attempts: int = 0
    #: resolved with the ack arguments by any attempt's ack callback
    ack: asyncio.Future[tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.ack = self.future.get_loop().create_future()

    def on_ack(self, *args: Any) -> None:
        if not self.ack.done():
            self.ack.set_result(args)


class Outbox:
    """The queue of one namespace. ``connected`` / ``generation`` are driven by the client."""

    def __init__(self, namespace: str, send: SendAttempt) -> None:
        self.namespace = namespace
        self._send = send
        self._queue: deque[PendingEmit] = deque()
        self._changed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        #: True while the namespace is connected and may send
        self.connected = False
        #: incremented on every disconnect: an attempt made in an older generation is lost
        self.generation = 0

    def __len__(self) -> int:
        return len(self._queue)

    # ---- driven by the client -------------------------------------------------------------

    def up(self) -> None:
        """The namespace is connected: send (again) the event at the head of the queue."""
        self.connected = True
        self._pulse()

    def down(self) -> None:
        """The namespace disconnected: the attempt in flight (if any) is over."""
        if self.connected:
            self.generation += 1
        self.connected = False
        self._pulse()

    def close(self, reason: str) -> None:
        """Fail every queued emit with :class:`ClientClosedError`."""
        self.down()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(
                    ClientClosedError(
                        f"event {item.event!r} on {self.namespace!r} was not acknowledged: {reason} "
                        f"(after {item.attempts} attempt(s))",
                        event=item.event,
                        attempts=item.attempts,
                    )
                )
        self._pulse()

    async def put(self, event: str, data: Any, *, ack_timeout: float, retries: int) -> tuple[Any, ...]:
        """Queue an emit and wait for its ack arguments."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingEmit(event, data, ack_timeout, retries, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"socketio-delivery outbox {self.namespace}")
        return await future

    # ---- the worker -----------------------------------------------------------------------

    def _pulse(self) -> None:
        self._changed.set()
        self._changed.clear()

    async def _run(self) -> None:
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # the caller gave up (cancelled)
                self._queue.popleft()
                continue
            if item.ack.done():
                self._queue.popleft()
                item.future.set_result(item.ack.result())
                continue
            if not self.connected:
                await self._changed.wait()
                continue
            await self._attempt(item)

    async def _wait_change(self, *futures: asyncio.Future[Any], timeout: float) -> None:
        """Wait until one of ``futures`` is done, the state changes, or ``timeout`` passes."""
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait([*futures, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _attempt(self, item: PendingEmit) -> None:
        loop = asyncio.get_running_loop()
        generation = self.generation
        try:
            await self._send(item.event, item.data, item.on_ack)
        except Exception as exc:  # not connected after all: not an attempt, wait for the next change
            logger.debug(
                "emit %r on %s not sent (%s); waiting for the connection", item.event, self.namespace, exc
            )
            if self.connected and generation == self.generation:
                await self._wait_change(item.future, timeout=item.ack_timeout)
            return
        item.attempts += 1
        deadline = loop.time() + item.ack_timeout
        while not item.ack.done() and not item.future.done() and generation == self.generation:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self._wait_change(item.ack, item.future, timeout=remaining)
        if item.ack.done() or item.future.done():
            return  # _run resolves or drops it
        lost = (
            "the connection dropped" if generation != self.generation else f"no ack in {item.ack_timeout} s"
        )
        if item.attempts > item.retries:
            self._queue.popleft()
            item.future.set_exception(
                EmitTimeoutError(
                    f"event {item.event!r} on {self.namespace!r} was not acknowledged after "
                    f"{item.attempts} attempt(s) (last: {lost}; ack_timeout={item.ack_timeout} s, "
                    f"retries={item.retries})",
                    event=item.event,
                    attempts=item.attempts,
                )
            )
        else:
            logger.info(
                "emit %r on %s: %s, attempt %d will follow",
                item.event,
                self.namespace,
                lost,
                item.attempts + 1,
            )
