"""kill -9 of a node does not strand its clients: they reconnect to another node and recover.

The sessions of node A's clients are in the store from the moment they connected (saved at
connect and refreshed), so nothing depends on A saving them as it goes down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from mn_balancer import Balancer
from mn_cluster import AnyClient, Cluster, JsClient, until

Clients = Callable[[str, str], Awaitable[AnyClient]]


@pytest.mark.slow
@pytest.mark.parametrize("mix", ["py", pytest.param("py+js", marks=pytest.mark.node)])
async def test_clients_of_a_killed_node_recover_on_the_others(
    cluster: Cluster, lb: Balancer, clients: Clients, room: str, mix: str
) -> None:
    if cluster.kind == "mongodb" and "js" in mix:
        pytest.skip("the JS client runs this on Redis (time budget)")
    kinds = ["py"] * 5 + (["js"] * 2 if "js" in mix else [])
    members = []
    for i, kind in enumerate(kinds):
        client = await clients(kind, f"{kind}{i}")
        entry = await lb.entry(client.name, pin="A")
        await client.connect(entry.url, rooms=[room], data={"user": client.name})
        assert lb.current_node(entry) == "A"
        entry.pin = None  # reconnects go to any node that is up
        members.append((client, entry))
    for client, _ in members:  # saved at connect (the test waits so it does not race the save)
        assert client.pid is not None
        await cluster.control("B", "wait_saved", pid=client.pid)
    await cluster.emit("B", range(3), room=room)
    await until(lambda: all(c.ticks() == [0, 1, 2] for c, _ in members), "live ticks 0..2 via A")

    await cluster.emit("A", range(3, 6), room=room)  # acknowledged: sent live or not, just before the kill
    cluster.kill("A")
    await cluster.emit("B", range(6, 9), room=room)
    await cluster.emit("C", range(9, 12), room=room)
    await until(lambda: all(c.connected and len(c.connects()) == 2 for c, _ in members), "every client back")
    await cluster.emit("C", [12], room=room)
    await until(lambda: all(len(c.ticks()) >= 13 for c, _ in members), "every tick")

    log = await cluster.log(room=room)
    assert [data["n"] for _, data in log] == list(range(13))
    for client, entry in members:
        assert lb.current_node(entry) in ("B", "C")
        first, again = client.connects()
        assert again == (first[0], True), client.name
        assert client.resyncs() == []
        assert client.ticks() == list(range(13)), client.name  # each once, in order
        me = await client.call("whoami")
        assert (me["sid"], me["rooms"], me["session"]) == (first[0], [room], {"user": client.name})
        if isinstance(client, JsClient):
            assert client.offsets() == [offset for offset, _ in log]
