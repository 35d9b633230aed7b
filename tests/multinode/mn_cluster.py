"""Several Delivery server processes on one store, and the clients the multi-node tests drive.

::

    cluster = Cluster(store="redis://127.0.0.1:6390/0?prefix=t-1", redis_manager="redis://127.0.0.1:6390/0")
    await cluster.start()                      # nodes A, B, C (tests/support/delivery_app.py), in parallel
    await cluster.emit("A", range(3), room="r")   # node A emits tick({"n": 0}), ... to room r
    log = await cluster.log(room="r")          # the store's own log: [(offset, payload), ...]
    cluster.close()

A :class:`PyClient` is the project's :class:`~socketio_delivery.client.DeliveryClient`
(WebSocket only, fast reconnects) that records every ``tick`` it gets and every connect.
A :class:`JsClient` is one named socket of the official ``socket.io-client`` in Node
(tests/e2e/e2e_node.py). Both expose the same small interface, so a test runs with either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from delivery_app import DeliveryAppProcess
from socketio_delivery.client import RESYNC_EVENT, DeliveryClient
from socketio_delivery.registry import open_store

__all__ = ["Cluster", "JsClient", "PyClient", "AnyClient", "until"]

NODES = ("A", "B", "C")
START_TIMEOUT = 30.0


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait until ``predicate()`` holds; fail with ``what`` after ``timeout`` (a hang, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


class NodeProcess(DeliveryAppProcess):
    """A cluster node: :class:`DeliveryAppProcess`, whose :meth:`spawn` and :meth:`wait_ready`
    (from :class:`processes.ChildProcess`) let several nodes start at once."""

    start_timeout = START_TIMEOUT


class Cluster:
    """Nodes ``A``, ``B``, ``C``: delivery_app processes sharing one store (and maybe AsyncRedisManager)."""

    def __init__(
        self,
        *,
        store: str,
        kind: str = "",
        redis_manager: str | None = None,
        names: Iterable[str] = NODES,
        extra: Iterable[str] = (),
    ) -> None:
        self.store = store
        #: which store (``redis``, ``mongodb``), for tests that scale their load to it
        self.kind = kind or store.split(":", 1)[0]
        self.redis_manager = redis_manager
        self.nodes = {
            name: NodeProcess(store=store, redis_manager=redis_manager, extra=list(extra)) for name in names
        }

    @property
    def ports(self) -> dict[str, int]:
        return {name: node.port for name, node in self.nodes.items()}

    def start_now(self, *names: str) -> None:
        """Start the given nodes (default: all that are not running), in parallel; wait for READY.

        The processes are spawned from the calling thread: they get SIGTERM when the thread
        that started them ends (``PR_SET_PDEATHSIG``), so never from a worker thread.
        """
        todo = [self.nodes[n] for n in (names or self.nodes) if not self.nodes[n].running]
        for node in todo:
            node.spawn()
        for node in todo:
            node.wait_ready()

    async def start(self, *names: str) -> None:
        """:meth:`start_now`; the event loop waits meanwhile (a few seconds)."""
        self.start_now(*names)

    def kill(self, name: str) -> None:
        """kill -9 one node."""
        self.nodes[name].stop(kill=True)

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()

    def logs(self) -> str:
        return "\n".join(f"---- node {n} log\n{node.log_tail()}" for n, node in self.nodes.items())

    async def control(self, name: str, op: str, **spec: Any) -> Any:
        return await self.nodes[name].control(op, **spec)

    async def emit(self, name: str, numbers: Iterable[Any], *, event: str = "tick", **target: Any) -> None:
        """Node ``name`` emits ``event({"n": n})`` for each n, one after the other (each persisted first)."""
        await self.control(name, "emit", event=event, batch=[[{"n": n}] for n in numbers], **target)

    async def log(self, *, room: str, event: str = "tick", namespace: str = "/") -> list[tuple[str, Any]]:
        """``(offset, first argument)`` of every ``event`` to ``room`` in the store, in offset order."""
        store = open_store(self.store)
        await store.open()
        found: list[tuple[str, Any]] = []
        try:
            cursor = None
            while page := await store.fetch_since(namespace, cursor, rooms=[room], limit=500):
                for item in page:
                    if item.data.get("e") == event and room in item.rooms:
                        found.append((item.offset, item.data["a"][0]))
                cursor = page[-1].offset
        finally:
            await store.close()
        return found


class AnyClient(Protocol):
    """What a test needs from a client, Python or JS."""

    name: str

    async def connect(
        self, url: str, *, rooms: Iterable[str] = (), data: dict[str, Any] | None = None
    ) -> None:
        """Connect; the app's connect handler joins ``rooms`` and saves ``data`` as session data."""

    async def call(self, event: str, *args: Any) -> Any:
        """Emit with an ack; the ack's first argument."""

    def ticks(self) -> list[Any]:
        """The ``n`` of every ``tick`` received, in arrival order."""

    def connects(self) -> list[tuple[str, bool]]:
        """``(sid, recovered)`` of every connect, in order."""

    def resyncs(self) -> list[Any]:
        """Every ``delivery:resync`` received."""

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...


class PyClient:
    """:class:`DeliveryClient` that records ticks and connects (WebSocket only, reconnects fast)."""

    __test__ = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.client = DeliveryClient(
            reconnection_delay=0.05,
            reconnection_delay_max=0.3,
            randomization_factor=0,
            ack_timeout=3.0,
            retries=20,
        )
        self._ticks: list[Any] = []
        self._connects: list[tuple[str, bool]] = []
        self._resyncs: list[Any] = []
        #: the reason of every disconnect the client noticed
        self.disconnects: list[str] = []

        @self.client.on("tick")
        def tick(data: Any) -> None:
            self._ticks.append(data["n"])

        @self.client.on("connect")
        def connect() -> None:
            self._connects.append((str(self.client.get_sid()), self.client.recovered))

        @self.client.on(RESYNC_EVENT)
        def resync(info: Any) -> None:
            self._resyncs.append(info)

        @self.client.on("disconnect")
        def disconnect(reason: Any = None) -> None:
            self.disconnects.append(str(reason))

    def describe(self) -> str:
        """The client's own view, for failure messages."""
        eio = self.client.eio
        return f"disconnects={self.disconnects}, eio.state={eio.state}, eio.sid={eio.sid}"

    async def connect(
        self, url: str, *, rooms: Iterable[str] = (), data: dict[str, Any] | None = None
    ) -> None:
        auth = {"rooms": list(rooms), "data": data or {}}
        await self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=15)

    async def call(self, event: str, *args: Any) -> Any:
        """A plain emit with an ack (no idempotency key, no retry), as ``AsyncClient.call``."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*ack: Any) -> None:
            if not answer.done():
                answer.set_result(ack[0] if ack else None)

        data = args[0] if len(args) == 1 else args
        await self.client.emit(event, data, callback=on_ack, reliable=False)
        return await asyncio.wait_for(answer, 15)

    def ticks(self) -> list[Any]:
        return list(self._ticks)

    def connects(self) -> list[tuple[str, bool]]:
        return list(self._connects)

    def resyncs(self) -> list[Any]:
        return list(self._resyncs)

    @property
    def pid(self) -> str | None:
        ns = self.client._namespaces.get("/")  # the client keeps it privately
        return ns.pid if ns else None

    @property
    def connected(self) -> bool:
        return bool(self.client.connected) and self.client.get_sid() is not None

    async def close(self) -> None:
        await self.client.disconnect()


class JsClient:
    """One named socket of the official socket.io-client (tests/e2e/e2e_node.py's driver)."""

    __test__ = False

    def __init__(self, node: Any, name: str) -> None:
        self.node = node
        self.name = name

    async def connect(
        self, url: str, *, rooms: Iterable[str] = (), data: dict[str, Any] | None = None
    ) -> None:
        auth = {"rooms": list(rooms), "data": data or {}}
        await self.node.connect(url, name=self.name, auth=auth)
        await self.node.wait_connect(self.name)

    async def call(self, event: str, *args: Any) -> Any:
        return await self.node.call(event, *args, name=self.name)

    def events(self) -> list[Any]:
        return [m for m in self.node.events("tick", name=self.name)]

    def ticks(self) -> list[Any]:
        return [m["args"][0]["n"] for m in self.events()]

    def offsets(self) -> list[str]:
        return [m["args"][-1] for m in self.events()]

    def connects(self) -> list[tuple[str, bool]]:
        return [(m["id"], m["recovered"]) for m in self.node.connects(self.name)]

    def resyncs(self) -> list[Any]:
        return [m["args"][0] for m in self.node.events(RESYNC_EVENT, name=self.name)]

    @property
    def pid(self) -> str | None:
        connects = self.node.connects(self.name)
        return connects[-1]["pid"] if connects else None

    @property
    def connected(self) -> bool:
        names = [
            m
            for m in self.node.messages
            if m.get("name") == self.name and m["type"] in ("connect", "disconnect")
        ]
        return bool(names) and names[-1]["type"] == "connect"

    async def close(self) -> None:
        await self.node.command("disconnect", self.name)
