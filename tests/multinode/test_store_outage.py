"""Redis restarted under three nodes (store + AsyncRedisManager on it): nothing acknowledged is lost.

Redis is persistent (append-only file, ``appendfsync always``) and is killed (SIGKILL) for a
few seconds. Emits made while it is away raise ``StoreError`` (nothing is sent then); the
nodes keep running and their clients stay connected; once Redis is back, emits work again,
every node delivers again, and a client that hops to another node still recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from mn_balancer import Balancer
from mn_cluster import Cluster, PyClient, until
from redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def outage_cluster(redis_server_factory: Callable[..., RedisServer]) -> Iterator[tuple[Cluster, RedisServer]]:
    server = redis_server_factory(persistent=True, fsync="always")
    cluster = Cluster(store=server.url, redis_manager=server.url)
    cluster.start_now()
    yield cluster, server
    cluster.close()
    server.close()


@pytest.fixture
async def outage_lb(
    outage_cluster: tuple[Cluster, RedisServer], request: pytest.FixtureRequest
) -> AsyncIterator[Balancer]:
    cluster, server = outage_cluster
    server.start()  # an earlier test may have left it stopped
    async with Balancer.start(cluster.ports) as balancer:
        yield balancer
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.logs())


async def wait_store_back(cluster: Cluster, node: str, room: str, n: Any) -> None:
    """Emit ``n`` from ``node`` until it works (the first tries may still meet the old connections)."""
    while (error := await emit_one(cluster, node, n, room)) is not None:
        assert "Store" in error, error
        await asyncio.sleep(0.1)


async def emit_one(cluster: Cluster, node: str, n: Any, room: str) -> str | None:
    """Emit one tick; ``None`` when it worked, else the error the node reported."""
    try:
        await cluster.emit(node, [n], room=room)
    except RuntimeError as exc:
        return str(exc)
    return None


async def test_redis_restart_loses_no_acknowledged_emit_and_nodes_recover(
    outage_cluster: tuple[Cluster, RedisServer], outage_lb: Balancer
) -> None:
    cluster, server = outage_cluster
    room = "r"
    members = []
    for name in "ABC":
        client = PyClient(name)
        entry = await outage_lb.entry(name, pin=name)
        await client.connect(entry.url, rooms=[room])
        members.append((client, entry))
    try:
        acknowledged = []
        for n in range(6):
            assert await emit_one(cluster, "ABC"[n % 3], n, room) is None
            acknowledged.append(n)
        await until(lambda: all(c.ticks() == acknowledged for c, _ in members), "ticks 0..5")

        server.stop(kill=True)
        for node in "ABC":  # each node reports the failure to its caller: nothing is dropped silently
            error = await emit_one(cluster, node, f"lost-{node}", room)
            assert error is not None
            assert "StoreUnavailableError" in error or "StoreError" in error, error
        await asyncio.sleep(2)  # Redis stays away a while (the nodes' tailers keep retrying)
        assert all(node.running for node in cluster.nodes.values())
        server.start()

        for n in range(6, 9):
            await wait_store_back(cluster, "ABC"[n % 3], room, n)
            acknowledged.append(n)
        await until(lambda: all(len(c.ticks()) >= 9 for c, _ in members), "ticks 6..8 on every node")

        log = await cluster.log(room=room)
        assert [data["n"] for _, data in log] == acknowledged  # nothing lost, nothing from the outage
        warned = [
            n for n, node in cluster.nodes.items() if "store error while tailing" in node.log_tail(20_000)
        ]
        assert warned, "the nodes log the outage"
        for client, entry in members:
            assert client.ticks() == acknowledged
            assert len(client.connects()) == 1  # it stayed connected through the outage
            assert all(node.running for node in cluster.nodes.values())
            entry.pin = {"A": "B", "B": "C", "C": "A"}[entry.name]

        # after the outage, sessions are still recoverable on another node
        for _, entry in members:
            outage_lb.cut(entry)
        await cluster.emit("A", [9], room=room)
        await until(
            lambda: all(len(c.connects()) == 2 and len(c.ticks()) >= 10 for c, _ in members),
            "every client recovered on another node",
        )
        for client, _ in members:
            assert client.connects()[1] == (client.connects()[0][0], True)
            assert client.resyncs() == []
            assert client.ticks() == [*acknowledged, 9]
    finally:
        for client, _ in members:
            await client.close()


async def test_a_client_reconnecting_during_the_outage_recovers_once_the_store_is_back(
    outage_cluster: tuple[Cluster, RedisServer], outage_lb: Balancer
) -> None:
    """Node B cannot read the session while Redis is down: it closes the connection (no new
    session in place of the old one) and the client keeps retrying until it recovers."""
    cluster, server = outage_cluster
    room = "r2"
    client = PyClient("x")
    entry = await outage_lb.entry("x", pin="A")
    await client.connect(entry.url, rooms=[room])
    try:
        await cluster.emit("A", [0], room=room)
        await until(lambda: client.ticks() == [0], "tick 0")
        server.stop(kill=True)
        entry.pin = "B"
        outage_lb.cut(entry)
        await until(lambda: entry.history.count("B") >= 2, "the client tried node B (twice)", 60)
        assert len(client.connects()) == 1  # no new session while the old one cannot be read
        server.start()
        await until(lambda: len(client.connects()) == 2, "the client back on B", 60)
        assert client.connects()[1] == (client.connects()[0][0], True)
        assert client.resyncs() == []
        await wait_store_back(cluster, "C", room, 1)
        await until(lambda: len(client.ticks()) >= 2, "tick 1")
        assert client.ticks() == [0, 1]
    finally:
        await client.close()
