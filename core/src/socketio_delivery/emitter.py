""":class:`Emitter`: emits from processes without a Socket.IO server.

An emit is persisted as :mod:`.wire` describes. Every ``Delivery`` process reads the stream
in offset order and sends it to its own clients, so an event persisted here reaches every
node's clients, live and in replays, exactly like an ``await sio.emit(...)`` on one of them.

A worker, a cron job or an admin script that shares the store with the servers emits with::

    from socketio_delivery import Emitter

    emitter = Emitter("redis://redis:6379/0")
    await emitter.emit("score", {"home": 1}, room="match-42")        # like sio.emit
    await emitter.publish("chat", {"text": "hi"}, room="general")    # like delivery.publish
    await emitter.close()

This replaces python-socketio's write-only ``AsyncRedisManager``, whose messages would reach
connected clients only (no offset, no replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from socketio.packet import Packet

from .config import default_store
from .errors import ConfigurationError
from .registry import open_store
from .store import Capability, EventStore
from .wire import DEFAULT_MAX_EVENT_BYTES, Target, check_sendable, emit_args, persist_emit

__all__ = ["Emitter"]


class Emitter:
    """Persist emits into a store that ``Delivery`` servers in other processes read.

    :param store: a store URL, a config mapping or a store object, as for ``Delivery``
        (``None``: ``SOCKETIO_DELIVERY_STORE_URL``, else ``sqlite:///events.db``); the store
        must be shared between processes (:attr:`Capability.MULTI_PROCESS`: SQLite on a local
        file, Redis, MongoDB), since the servers are elsewhere.
    :param max_event_bytes: the largest event (encoded) accepted, as for ``Delivery``.

    The servers deliver an event within their ``poll_interval`` (50 ms by default). Each
    method returns the event's offset once it is durable; it raises
    :class:`~socketio_delivery.StoreError` when the store is down (nothing was sent).
    """

    def __init__(
        self,
        store: str | Mapping[str, Any] | EventStore | None = None,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self._owns_store = not isinstance(store, EventStore)
        self.store: EventStore = open_store(default_store(store))
        if Capability.MULTI_PROCESS not in self.store.capabilities:
            raise ConfigurationError(
                f"{type(self.store).__name__} is not shared between processes: servers elsewhere "
                "would never see these events (use sio.emit in the server process instead)"
            )
        self._opened = False

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        to: Target = None,
        room: Target = None,
        skip_sid: Target = None,
        namespace: str = "/",
    ) -> str:
        """Like ``sio.emit``: ``data`` a tuple for several arguments; returns the offset."""
        return await self._persist(event, emit_args(data), namespace, to or room, skip_sid, explicit=False)

    async def publish(
        self,
        event: str,
        data: Any,
        *,
        to: Target = None,
        room: Target = None,
        skip_sid: Target = None,
        namespace: str = "/",
    ) -> str:
        """Like ``delivery.publish``: delivered as ``{"id": offset, "data": data}``; returns the offset."""
        return await self._persist(event, [data], namespace, to or room, skip_sid, explicit=True)

    async def close(self) -> None:
        """Close the store (when this emitter opened it)."""
        if self._opened and self._owns_store:
            await self.store.close()
        self._opened = False

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _persist(
        self, event: str, args: list[Any], namespace: str, to: Target, skip_sid: Target, *, explicit: bool
    ) -> str:
        check_sendable(Packet, namespace, event, args, self.max_event_bytes)
        if not self._opened:
            await self.store.open()
            self._opened = True
        persisted = await persist_emit(
            self.store, namespace, event, args, to=to, skip_sid=skip_sid, explicit=explicit
        )
        return persisted.offset
