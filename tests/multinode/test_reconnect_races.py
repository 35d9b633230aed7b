"""A reconnect that arrives while the node is still handling the old transport's disconnect.

Under load (or with an application whose disconnect handler awaits its database) a client
can reconnect, to the same node, before that node has finished with its previous
transport. The recovered socket (same sid) must keep its rooms and get live events; the
late end of the old disconnect must not unregister it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from mn_balancer import Balancer
from mn_cluster import Cluster, PyClient, until


@pytest.fixture
def slow_disconnect_cluster(redis_server: object, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    url = redis_server.url  # type: ignore[attr-defined]
    cluster = Cluster(
        store=f"{url}?prefix=race-{id(request)}", names=("A", "B"), extra=["--disconnect-delay", "0.5"]
    )
    cluster.start_now()
    yield cluster
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.logs())
    cluster.close()


@pytest.mark.redis
async def test_recovered_socket_keeps_live_delivery_when_the_old_disconnect_ends_late(
    slow_disconnect_cluster: Cluster,
) -> None:
    cluster = slow_disconnect_cluster
    async with Balancer.start(cluster.ports) as lb:
        entry = await lb.entry("c", pin="A")
        client = PyClient("c")
        await client.connect(entry.url, rooms=["r"])
        try:
            await cluster.emit("B", [0], room="r")
            await until(lambda: client.ticks() == [0], "tick 0")
            lb.cut(entry)  # the client is back on A (recovered) while A still handles the old transport
            await until(lambda: len(client.connects()) == 2, "the reconnect")
            assert client.connects()[1] == (client.connects()[0][0], True)
            await asyncio.sleep(1.0)  # not a timing check: lets the old disconnect handler (0.5 s) end

            me = await cluster.control("A", "info", sid=client.connects()[0][0])
            assert (me["connected"], me["rooms"]) == (True, ["r"]), "the old disconnect unregistered it"
            await cluster.emit("B", [1], room="r")
            await until(lambda: len(client.ticks()) >= 2, "tick 1", 10)
            assert client.ticks() == [0, 1]
            assert (await client.call("whoami"))["connected"] is True
        finally:
            await client.close()
