"""A tiny TCP load balancer in front of several server nodes (round robin, skips dead nodes).

A connection that breaks on one side is aborted on the other, as a real balancer
does when a node dies: the client sees its transport vanish and reconnects, landing
on a live node.

    proxy = Proxy([8001, 8002, 8003])
    await proxy.start()          # proxy.port is where clients connect
    ...
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Proxy"]


class Proxy:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = len(self.backends)
        start, self._next = self._next, self._next + 1
        for i in range(n):
            port = self.backends[(start + i) % n]
            try:
                b_reader, b_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.transport.abort()
            return
        self._writers.update((writer, b_writer))
        try:
            await asyncio.gather(self._pipe(reader, b_writer), self._pipe(b_reader, writer))
        finally:
            self._writers.difference_update((writer, b_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
