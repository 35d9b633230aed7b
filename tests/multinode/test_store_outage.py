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


@pytest.fixture
def outage_cluster(
    redis_server_factory: Callable[..., RedisServer], request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, RedisServer]]:
    server = redis_server_factory(persistent=True, fsync="always")
    cluster = Cluster(store=server.url, redis_manager=server.url)
    cluster.start_now()
    yield cluster, server
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.logs())
    cluster.close()
    server.close()


@pytest.fixture
async def outage_lb(outage_cluster: tuple[Cluster, RedisServer]) -> AsyncIterator[Balancer]:
    async with Balancer.start(outage_cluster[0].ports) as balancer:
        yield balancer


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

        for n in range(6, 9):  # the first emits after the restart may still see the old connections fail
            while (error := await emit_one(cluster, "ABC"[n % 3], n, room)) is not None:
                assert "Store" in error, error
                await asyncio.sleep(0.1)
            acknowledged.append(n)
        await until(lambda: all(len(c.ticks()) >= 9 for c, _ in members), "ticks 6..8 on every node")

        log = await cluster.log(room=room)
        assert [data["n"] for _, data in log] == acknowledged  # nothing lost, nothing from the outage
        for client, entry in members:
            assert client.ticks() == acknowledged
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
