"""A store wrapper that makes every call slow: it widens race windows so chaos runs find them.

``slow+sqlite:///events.db`` (or any ``slow+<url>``) in a scenario's ``store`` opens the
inner store and delays each call by a random 0..``SLOW_STORE_MAX_DELAY`` seconds (default
0.2), before and after the inner call. Nothing else changes: same data, same guarantees.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Collection, Mapping
from typing import Any

from socketio_delivery import Event, EventStore, Reservation, open_store

__all__ = ["SlowStore", "open_maybe_slow"]

PREFIX = "slow+"


class SlowStore:
    """Delegates to ``inner``, sleeping a random part of ``max_delay`` around each call."""

    def __init__(self, inner: EventStore, max_delay: float) -> None:
        self.inner = inner
        self.max_delay = max_delay
        self.capabilities = inner.capabilities

    async def _nap(self) -> None:
        await asyncio.sleep(random.uniform(0, self.max_delay / 2))

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    def generate_id(self) -> str:
        return self.inner.generate_id()

    async def persist(
        self, stream: str, data: Any, *, rooms: Collection[str] = (), exclude: Collection[str] = ()
    ) -> Event:
        await self._nap()
        event = await self.inner.persist(stream, data, rooms=rooms, exclude=exclude)
        await self._nap()
        return event

    async def fetch_since(
        self, stream: str, offset: str | None, *, rooms: Collection[str] | None = None, limit: int = 500
    ) -> list[Event]:
        await self._nap()
        events = await self.inner.fetch_since(stream, offset, rooms=rooms, limit=limit)
        await self._nap()
        return events

    async def last_offset(self, stream: str) -> str:
        await self._nap()
        offset = await self.inner.last_offset(stream)
        await self._nap()
        return offset

    async def trim(self, stream: str | None = None) -> int:
        return await self.inner.trim(stream)

    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        await self._nap()
        await self.inner.save_session(key, record, ttl, lease=lease)
        await self._nap()

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        await self._nap()
        record = await self.inner.claim_session(key, lease=lease)
        await self._nap()
        return record

    async def reserve_key(self, key: str, lease: float) -> Reservation:
        await self._nap()
        return await self.inner.reserve_key(key, lease)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        await self._nap()
        await self.inner.complete_key(key, result, ttl)

    async def release_key(self, key: str) -> None:
        await self._nap()
        await self.inner.release_key(key)


def open_maybe_slow(url: str) -> EventStore:
    """``open_store(url)``, wrapped in :class:`SlowStore` when ``url`` starts with ``slow+``."""
    if not url.startswith(PREFIX):
        return open_store(url)
    delay = float(os.environ.get("SLOW_STORE_MAX_DELAY", "0.2"))
    return SlowStore(open_store(url[len(PREFIX) :]), delay)
