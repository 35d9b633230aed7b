"""Live delivery: the emit path, and one :class:`~socketio_delivery.tailer.Tailer` per namespace.

``await sio.emit(...)`` (and ``delivery.publish``) comes here: the event is checked (it
must be sendable and within ``max_event_bytes``; nothing is stored otherwise), persisted,
and then waited for until this process's tailer has delivered it to its own clients. The
tailers read each namespace's stream in offset order and send every event with its
offset as the last argument, encoded once for all recipients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from ._compat import server as compat
from .errors import DeliveryTimeoutError
from .sessions import SessionBook
from .settings import Settings
from .store import Capability, Event, EventStore
from .tailer import Tailer
from .wire import RESYNC_EVENT, check_sendable, packet_of, persist_emit, with_offset

__all__ = ["LiveDelivery"]

#: encoded packets kept for delivery at most (emits persisted, not yet delivered)
_ENCODED_KEPT = 10_000


class LiveDelivery:
    """Persists emits and runs the tailers that deliver them to this process's clients."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: EventStore,
        book: SessionBook,
        settings: Settings,
        *,
        open_store: Callable[[], Awaitable[None]],
    ) -> None:
        self.sio = sio
        self.store = store
        self.book = book
        self.settings = settings
        self.tailers: dict[str, Tailer] = {}
        #: stores other processes write to are polled; emits of this process wake the tailer
        self._poll = settings.poll_interval if Capability.MULTI_PROCESS in store.capabilities else None
        self._open = open_store
        self._lock = asyncio.Lock()
        #: offset -> the packet as encoded by the emit that persisted it (this process's emits)
        self._encoded: dict[str, str] = {}

    def position_of(self, namespace: str) -> str | None:
        """How far live delivery of ``namespace`` got (``None``: not started)."""
        tailer = self.tailers.get(namespace)
        return tailer.position if tailer else None

    async def tailer(self, namespace: str) -> Tailer:
        """The namespace's tailer, started on first use (the store is opened first)."""
        tailer = self.tailers.get(namespace)
        if tailer is not None:
            return tailer
        await self._open()
        async with self._lock:
            tailer = self.tailers.get(namespace)
            if tailer is None:
                tailer = Tailer(
                    self.store,
                    namespace,
                    self._deliverer(namespace),
                    poll_interval=self._poll,
                    page_size=self.settings.page_size,
                    on_gap=lambda reason: self._continuity_broke(namespace, reason),
                )
                await tailer.start()
                self.tailers[namespace] = tailer
        return tailer

    async def stop(self) -> None:
        for tailer in list(self.tailers.values()):
            await tailer.stop()
        self.tailers.clear()

    async def persist(
        self, event: str, args: list[Any], namespace: str, room: Any, skip_sid: Any, *, explicit: bool
    ) -> str:
        """Check, persist and deliver one emit; its offset once this process delivered it."""
        encoded = check_sendable(self.sio.packet_class, namespace, event, args, self.settings.max_event_bytes)
        tailer = await self.tailer(namespace)
        persisted = await persist_emit(
            self.store, namespace, event, args, to=room, skip_sid=skip_sid, explicit=explicit
        )
        if encoded is not None and not explicit:  # delivery sends it as encoded here, once
            if len(self._encoded) >= _ENCODED_KEPT:
                self._encoded.clear()  # not delivered (a gap, a stop): never needed
            self._encoded[persisted.offset] = with_offset(encoded, persisted.offset)
        tailer.wake()
        wait = self.settings.delivery_timeout
        if not await tailer.delivered(persisted.offset, wait):
            raise DeliveryTimeoutError(
                f"event {persisted.offset} is persisted (it will be replayed) but this process "
                f"had not delivered it after {wait:g} s (delivery_timeout)",
                offset=persisted.offset,
            )
        return persisted.offset

    def _deliverer(self, namespace: str) -> Callable[[Event, list[str]], Awaitable[None]]:
        sent, encoded = self.book.sent_to(namespace), self._encoded

        async def deliver(event: Event, held: list[str]) -> None:
            rooms = event.rooms
            room = None if not rooms else rooms[0] if len(rooms) == 1 else list(rooms)
            skip = {*event.exclude, *held} if held else set(event.exclude)
            packet = encoded.pop(event.offset, None) if encoded else None
            # an emit of this process comes encoded already; only others' are decoded and encoded
            name, *args = packet_of(event) if packet is None else ("",)
            for sid in await compat.local_emit(self.sio, name, args, namespace, room, skip, packet):
                sent[sid] = event.offset

        return deliver

    async def _continuity_broke(self, namespace: str, reason: str) -> None:
        """The stream restarted under this process: tell every connected client to resync."""
        for state in self.book.continuity_broke(namespace, ""):
            eio_sid = self.sio.manager.eio_sid_from_sid(state.sid, namespace)
            if eio_sid is not None:
                await compat.send_event(self.sio, eio_sid, namespace, [RESYNC_EVENT, {"reason": reason}])
