"""A loopback TCP proxy that delays every byte by a fixed time in each direction: a slow link.

::

    async with DelayProxy.start(target_port, delay=0.9) as proxy:
        ...connect a client to proxy.port (or proxy.url)...

Each chunk read on one side is written to the other ``delay`` seconds later, in order, so a
round trip takes ``2 * delay`` (a ping answered through it arrives ``2 * delay`` late). An EOF
is forwarded with the same delay. ``delay`` may be changed at any time (new chunks use the new
value). ``close()`` aborts every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["DelayProxy"]


class DelayProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>, ``delay`` seconds late each way."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, target_port: int, delay: float) -> AsyncIterator[DelayProxy]:
        proxy = cls(target_port, delay)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        try:
            yield proxy
        finally:
            await proxy.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send_later() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(Exception):
                        writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send_later())
        try:
            try:
                while data := await reader.read(65536):
                    queue.put_nowait((loop.time() + self.delay, data))
            except (OSError, asyncio.IncompleteReadError):
                pass
            queue.put_nowait((loop.time() + self.delay, b""))
            try:
                await sender
            except (OSError, ConnectionError):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
