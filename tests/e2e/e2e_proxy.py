"""A loopback TCP proxy that can cut the client side of its connections and leave the server side open.

That is a half-open connection as a server sees it when a phone changes networks: the client
knows its transport is gone and reconnects at once, the server still thinks the old one is
connected (until its ping timeout)::

    async with TcpProxy.start(app.port) as proxy:
        await node.connect(proxy.url)
        ...
        proxy.sever()              # client side reset; server side kept open, silent
        await proxy.wait_upstream_closed(1)   # the server gave up on one old connection

``target_port`` may be changed at any time: new connections go there (a load balancer
sending a reconnect to another node). ``hold()`` makes it refuse new connections (accepted,
then reset) until ``release()``: the client keeps retrying on its own, so a test can emit
while it is away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["TcpProxy"]


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    severed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.pairs: list[_Pair] = []
        self.upstream_closed = 0
        self.refused = 0
        self.holding = False
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, target_port: int) -> AsyncIterator[TcpProxy]:
        proxy = cls(target_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        try:
            yield proxy
        finally:
            await proxy.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        """Refuse new connections (the client's reconnect attempts fail) until :meth:`release`."""
        self.holding = True

    def release(self) -> None:
        self.holding = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.holding:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        pair = _Pair(writer, up_writer)
        self.pairs.append(pair)
        pair.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, pair, upstream=False)),
            asyncio.create_task(self._pump(up_reader, writer, pair, upstream=True)),
        ]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if pair.severed:
                    continue  # swallow: the other side is gone
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if upstream:
                async with self._changed:
                    self.upstream_closed += 1
                    self._changed.notify_all()
            if not pair.severed:  # a severed pair keeps its server side open
                with contextlib.suppress(Exception):
                    writer.close()

    def sever(self) -> int:
        """Reset the client side of every open connection; keep the server side open and silent."""
        count = 0
        for pair in self.pairs:
            if pair.severed or pair.client.is_closing():
                continue
            pair.severed = True
            pair.client.transport.abort()
            count += 1
        return count

    def close_severed(self) -> int:
        """Close the server side of the severed connections: the server sees them end, late."""
        count = 0
        for pair in self.pairs:
            if pair.severed and not pair.upstream.is_closing():
                pair.upstream.close()
                count += 1
        return count

    async def wait_upstream_closed(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the server has closed ``count`` connections (in total)."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.upstream_closed >= count)

        await asyncio.wait_for(reached(), timeout)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self.pairs:
            for writer in (pair.client, pair.upstream):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            for task in pair.tasks:
                task.cancel()
        for pair in self.pairs:
            for task in pair.tasks:
                with contextlib.suppress(BaseException):
                    await task
