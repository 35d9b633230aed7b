"""The stock ``socketio.AsyncClient`` (python-socketio), recording every event it gets.

::

    async with PyClient.connect(app.url, auth={"offset": last_id}) as client:
        event = await client.wait_event("chat")      # {"event": "chat", "args": [...]}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import socketio

__all__ = ["PyClient"]

WAIT = 20.0


class PyClient:
    """A stock python-socketio client (no reconnection) and the events it received, in order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._cursor = 0

        @self.sio.on("*")  # type: ignore[untyped-decorator]
        async def any_event(event: str, *args: Any) -> None:
            async with self._changed:
                self.events.append({"event": event, "args": list(args)})
                self._changed.notify_all()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, *, namespace: str = "/", auth: Any = None) -> AsyncIterator[PyClient]:
        client = cls()
        await client.sio.connect(url, auth=auth, namespaces=[namespace], transports=["websocket"])
        try:
            yield client
        finally:
            await client.sio.disconnect()

    @property
    def sid(self) -> str:
        sid: str = self.sio.get_sid()
        return sid

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        """The next event (after the previous wait's) that matches."""

        async def found() -> dict[str, Any]:
            async with self._changed:
                while True:
                    for index in range(self._cursor, len(self.events)):
                        if predicate(self.events[index]):
                            self._cursor = index + 1
                            return self.events[index]
                    await self._changed.wait()

        return await asyncio.wait_for(found(), timeout)

    async def wait_event(self, event: str, timeout: float = WAIT) -> dict[str, Any]:
        return await self.wait(lambda e: e["event"] == event, timeout)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]
