"""kill -9 of a node does not strand its clients: they reconnect to another node and recover.

The sessions of node A's clients are in the store from the moment they connected (saved at
connect, again within 0.1 s of every change of rooms or session data, and refreshed), so
nothing depends on A saving them as it goes down. Since a connected session is leased by its
node, the clients come back once A's lease runs out (``--session-lease 3`` in the test app).
"""

from __future__ import annotations

import asyncio
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
    kinds = ["py"] * 5 + (["js"] * 2 if "js" in mix else [])
    joined = f"{room}-joined"  # a room each client joins on A after connecting
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

    for i, (client, _) in enumerate(members):  # the session changes while connected to A
        assert await client.call("join", joined) == sorted([room, joined])
        assert await client.call("set_data", {"score": i}) == {"user": client.name, "score": i}
    for client, _ in members:  # A saves the changes now (else within 0.1 s): not racing the kill
        await cluster.control("A", "wait_saved", pid=client.pid)
    await cluster.emit("A", range(3, 6), room=room)  # acknowledged: sent live or not, just before the kill
    cluster.kill("A")
    await cluster.emit("B", range(6, 9), room=room)
    await cluster.emit("C", ["j"], room=joined)  # missed in the room joined on A
    await cluster.emit("C", range(9, 12), room=room)
    await until(lambda: all(c.connected and len(c.connects()) == 2 for c, _ in members), "every client back")
    await cluster.emit("C", [12], room=room)
    await until(lambda: all(len(c.ticks()) >= 14 for c, _ in members), "every tick")

    log = await cluster.log(room=room)
    assert [data["n"] for _, data in log] == list(range(13))
    (joined_offset, _), *_ = await cluster.log(room=joined)
    for i, (client, entry) in enumerate(members):
        assert lb.current_node(entry) in ("B", "C")
        first, again = client.connects()
        assert again == (first[0], True), client.name
        assert client.resyncs() == []
        assert client.ticks() == [*range(9), "j", *range(9, 13)], client.name  # each once, in order
        me = await client.call("whoami")
        assert (me["sid"], me["rooms"], me["session"]) == (
            first[0],
            sorted([room, joined]),
            {"user": client.name, "score": i},
        )
        if isinstance(client, JsClient):
            offsets = [offset for offset, _ in log]
            assert client.offsets() == [*offsets[:9], joined_offset, *offsets[9:]]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["py", pytest.param("js", marks=pytest.mark.node)])
async def test_a_node_killed_between_claiming_a_session_and_saving_it_back_loses_nothing(
    cluster: Cluster, lb: Balancer, clients: Clients, room: str, kind: str
) -> None:
    """The claim is a lease, not a delete: the session comes back when the lease runs out."""
    client = await clients(kind, f"{kind}-stalled")
    entry = await lb.entry(client.name, pin="A")
    await client.connect(entry.url, rooms=[room], data={"user": client.name})
    assert client.pid is not None
    await cluster.control("B", "wait_saved", pid=client.pid)
    await cluster.emit("B", range(3), room=room)
    await until(lambda: client.ticks() == [0, 1, 2], "live ticks 0..2 via A")
    sid = client.connects()[0][0]

    await cluster.control("A", "stall_claims")
    await cluster.control("A", "drop", sid=sid)  # the reconnect goes to A again and hangs there
    for _ in range(500):
        if (await cluster.control("A", "stall_claims"))["stalled"]:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the reconnect never reached A's claim")
    await cluster.emit("B", range(3, 6), room=room)  # missed while A holds the claim
    entry.pin = None
    cluster.kill("A")

    await until(lambda: client.connected and len(client.connects()) == 2, "back on B or C", timeout=60)
    await cluster.emit("C", [6], room=room)
    await until(lambda: len(client.ticks()) >= 7, "every tick")
    assert lb.current_node(entry) in ("B", "C")
    assert client.connects() == [(sid, False), (sid, True)]
    assert client.resyncs() == []
    assert client.ticks() == list(range(7))
    me = await client.call("whoami")
    assert (me["sid"], me["rooms"], me["session"]) == (sid, [room], {"user": client.name})
