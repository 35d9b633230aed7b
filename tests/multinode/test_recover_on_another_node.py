"""A client dropped on node A reconnects through the balancer to node B and gets everything back.

Three nodes share one store: Redis or MongoDB, each with python-socketio's AsyncRedisManager
as the bus, and MongoDB with no client manager at all (``mongodb-nobus``). The client's
transport is reset at the balancer (no goodbye on either side); while the balancer keeps it
out, nodes A and C emit to its room; then its own reconnection is let through to node B.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from mn_balancer import Balancer
from mn_cluster import AnyClient, Cluster, JsClient, until
from mn_stores import on_stores

Clients = Callable[[str, str], Awaitable[AnyClient]]
KINDS = ["py", pytest.param("js", marks=pytest.mark.node)]
#: both store setups with the bus, and MongoDB without any client manager
ON_STORES = on_stores("redis", "mongodb", "mongodb-nobus")


@pytest.mark.parametrize("kind", KINDS)
@ON_STORES
async def test_client_dropped_on_a_recovers_sid_rooms_data_and_missed_events_on_b(
    cluster: Cluster, lb: Balancer, clients: Clients, kind: str, room: str
) -> None:
    client = await clients(kind, "c1")
    entry = await lb.entry("c1", pin="A")
    await client.connect(entry.url, rooms=[room], data={"user": "ann"})
    assert lb.current_node(entry) == "A"
    assert await client.call("set_data", {"score": 5}) == {"user": "ann", "score": 5}
    ((sid, recovered),) = client.connects()
    assert recovered is False
    await cluster.emit("C", range(3), room=room)
    await until(lambda: client.ticks() == [0, 1, 2], "live ticks 0..2 via node A")

    entry.pin, entry.held = "B", True
    assert lb.cut(entry) == 1
    await until(lambda: not client.connected, "the client saw its transport close")
    await cluster.emit("A", range(3, 6), room=room)  # the node it left
    await cluster.emit("C", range(6, 8), room=room)  # a third node
    entry.held = False
    await until(lambda: len(client.connects()) == 2, "the reconnect")

    assert lb.current_node(entry) == "B"
    assert client.connects()[1] == (sid, True)
    assert client.resyncs() == []
    await until(lambda: len(client.ticks()) >= 8, "the missed ticks")
    me = await client.call("whoami")
    assert (me["sid"], me["rooms"], me["session"], me["recovered"]) == (
        sid,
        [room],
        {"user": "ann", "score": 5},
        True,
    )
    await cluster.emit("A", [8], room=room)  # live again, now through node B
    await until(lambda: len(client.ticks()) >= 9, "live tick 8 via node B")
    assert client.ticks() == list(range(9))  # each once, in order
    log = await cluster.log(room=room)
    assert [data["n"] for _, data in log] == list(range(9))
    if isinstance(client, JsClient):  # the JS client sees the offsets: the store's, in order
        assert client.offsets() == [offset for offset, _ in log]
    connects = [c for c in await cluster.control("B", "connects") if c["sid"] == sid]
    assert [c["recovered"] for c in connects] == [True]  # B ran the connect handler, recovered


@ON_STORES
async def test_any_node_reaches_a_client_connected_to_another_node(
    cluster: Cluster, lb: Balancer, clients: Clients, room: str
) -> None:
    """Emits to a room, to one sid and to everyone, made on other nodes, arrive once, in order.

    Without a client manager (``mongodb-nobus``) too: each node reads the store's log.
    """
    client = await clients("py", "c1")
    entry = await lb.entry("c1", pin="A")
    await client.connect(entry.url, rooms=[room])
    ((sid, _),) = client.connects()
    await cluster.emit("B", [0], room=room)
    await cluster.emit("C", [1], to=sid)
    await cluster.emit("B", [2], room=room, skip_sid=sid)  # not for it
    await cluster.emit("C", [3], room=[room, "elsewhere"])
    await until(lambda: len(client.ticks()) >= 3, "ticks 0, 1, 3")
    await cluster.emit("A", [4], to=sid)
    await cluster.emit("B", [5])  # everyone on the namespace
    await until(lambda: len(client.ticks()) >= 5, "ticks 4, 5")
    assert client.ticks() == [0, 1, 3, 4, 5]
