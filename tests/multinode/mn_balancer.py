"""A loopback TCP load balancer in front of several server nodes, with no sticky sessions.

Every client gets an *entry* (a listening port of its own), so a test can tell its
connections apart and cut them. Each new TCP connection through any entry goes to a node
chosen by the routing policy: the entry's pinned node when it has one, else a random
node (seeded); a node that refuses the connection (stopped, killed) is skipped, as a load
balancer with health checks would. With WebSocket-only clients one Engine.IO session is
one TCP connection, so no stickiness is needed.

::

    async with Balancer.start({"A": 8001, "B": 8002, "C": 8003}, seed=7) as lb:
        entry = await lb.entry("client-1", pin="A")   # new connections of this entry go to A
        await client.connect(entry.url, transports=["websocket"])
        entry.pin = "B"                                # the next reconnect goes to B
        entry.held = True                              # keep it out for a while (refused)
        lb.cut(entry)                                  # both sides reset: no goodbye at all
        entry.held = False                             # its own reconnection gets through
        lb.current_node(entry)                         # "B" once it reconnected
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Balancer", "Entry", "Link"]


@dataclass(eq=False)
class Link:
    """One client connection and the node connection it was forwarded to."""

    entry: Entry
    node: str
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: loop time the connection was made
    created: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    @property
    def open(self) -> bool:
        return not (self.client.is_closing() or self.upstream.is_closing())


@dataclass(eq=False)
class Entry:
    """A client's own door into the balancer."""

    name: str
    port: int
    server: asyncio.Server
    pin: str | None = None
    #: while True, new connections are accepted and reset at once (the client keeps retrying)
    held: bool = False
    #: the entry's next connection is reset once this many bytes went from the node to the client
    cut_after_bytes: int | None = None
    #: node of every connection this entry made, in order
    history: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Balancer:
    """Forwards connections from its entries to the nodes (name -> loopback port)."""

    def __init__(self, nodes: dict[str, int], *, seed: int | None = None) -> None:
        self.nodes = dict(nodes)
        self.entries: dict[str, Entry] = {}
        self.refused = 0
        self._random = random.Random(seed)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, nodes: dict[str, int], *, seed: int | None = None) -> AsyncIterator[Balancer]:
        balancer = cls(nodes, seed=seed)
        try:
            yield balancer
        finally:
            await balancer.close()

    async def entry(self, name: str, *, pin: str | None = None) -> Entry:
        """A new entry; its connections go to ``pin`` (when that node is up) or a random node."""
        holder: list[Entry] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(holder[0], reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        entry = Entry(name, server.sockets[0].getsockname()[1], server, pin)
        holder.append(entry)
        self.entries[name] = entry
        return entry

    def _order(self, entry: Entry) -> list[str]:
        names = list(self.nodes)
        self._random.shuffle(names)
        if entry.pin in self.nodes:
            names.remove(entry.pin)
            names.insert(0, entry.pin)
        return names

    async def _accept(self, entry: Entry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if entry.held:
            self.refused += 1
            writer.transport.abort()
            return
        for node in self._order(entry):
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.nodes[node])
            except OSError:
                continue
            link = Link(entry, node, writer, up_writer)
            entry.history.append(node)
            entry.links.append(link)
            limit, entry.cut_after_bytes = entry.cut_after_bytes, None
            link.tasks = [
                asyncio.create_task(self._pump(reader, up_writer, link)),
                asyncio.create_task(self._pump(up_reader, writer, link, limit)),
            ]
            return
        self.refused += 1
        writer.transport.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, limit: int | None = None
    ) -> None:
        try:
            while data := await reader.read(65536 if limit is None else min(limit, 65536)):
                writer.write(data)
                await writer.drain()
                if limit is not None:
                    limit -= len(data)
                    if limit <= 0:
                        break  # the finally resets both sides
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # one side ended: end the other one too (a node that died resets its clients)
            for end in (link.client, link.upstream):
                with contextlib.suppress(Exception):
                    end.transport.abort()

    def cut(self, entry: Entry) -> int:
        """Reset both sides of the entry's open connections: no Engine.IO or Socket.IO goodbye."""
        count = 0
        for link in entry.links:
            if link.open:
                count += 1
            for end in (link.client, link.upstream):
                with contextlib.suppress(Exception):
                    end.transport.abort()
        return count

    def settled(self, entry: Entry, age: float) -> bool:
        """True when the entry's newest connection is open and at least ``age`` seconds old."""
        link = entry.links[-1] if entry.links else None
        return link is not None and link.open and asyncio.get_running_loop().time() - link.created >= age

    def current_node(self, entry: Entry) -> str | None:
        """The node of the entry's newest open connection."""
        for link in reversed(entry.links):
            if link.open:
                return link.node
        return None

    async def close(self) -> None:
        for entry in self.entries.values():
            entry.server.close()
            self.cut(entry)
        for entry in self.entries.values():
            for link in entry.links:
                for task in link.tasks:
                    task.cancel()
                for task in link.tasks:
                    with contextlib.suppress(BaseException):
                        await task
