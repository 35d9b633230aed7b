"""Processed once across nodes: a retried client emit that lands on another node is not run again.

The client emits ``work`` with an idempotency key to node A and the ack never comes back:
either A drops the client's transport as the handler finishes (the ack is lost), or the
handler is still running when the client's connection goes. The client reconnects through
the balancer to node B (and recovers its session, so it is the same client identity) and
resends the same event with the same key. B answers with A's recorded ack (waiting for
A's run to finish when it is still going) and never runs the handler itself.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from e2e_node import NodeClient
from mn_balancer import Balancer
from mn_cluster import Cluster, JsClient, PyClient, until


async def runs_everywhere(cluster: Cluster, key: str) -> dict[str, int]:
    return {name: (await cluster.control(name, "runs")).get(key, 0) for name in cluster.nodes}


@pytest.mark.parametrize("variant", ["ack lost", "still running"])
async def test_python_client_retry_on_another_node_gets_the_recorded_ack(
    cluster: Cluster, lb: Balancer, room: str, variant: str
) -> None:
    entry = await lb.entry("c", pin="A")
    client = PyClient("c")
    await client.connect(entry.url, rooms=[room])
    try:
        entry.pin = "B"
        key, gate = str(uuid.uuid4()), f"gate-{uuid.uuid4().hex[:8]}"
        payload: dict[str, Any] = {"idempotencyKey": key, "value": 7}
        payload.update({"drop_first": True} if variant == "ack lost" else {"gate": gate})
        work = asyncio.create_task(client.client.emit("work", payload, ack_timeout=1.0, retries=30))
        if variant == "still running":
            while (await runs_everywhere(cluster, key))["A"] == 0:
                await asyncio.sleep(0.02)
            lb.cut(entry)  # the handler is still running on A
        await until(lambda: len(client.connects()) == 2, "the client recovered on B")
        if variant == "still running":
            # lets the retry reach B and wait on A's pending key (the outcome must be the same if not)
            await asyncio.sleep(0.3)
            assert not work.done()
            await cluster.control("A", "release", gate=gate)
        ack = await asyncio.wait_for(work, 30)

        assert ack == {"key": key, "run": 1, "value": 7}
        assert lb.current_node(entry) == "B"
        assert client.connects()[1] == (client.connects()[0][0], True)
        assert await runs_everywhere(cluster, key) == {"A": 1, "B": 0, "C": 0}
    finally:
        await client.close()


@pytest.mark.node
async def test_js_client_retry_on_another_node_gets_the_recorded_ack(
    cluster: Cluster, lb: Balancer, room: str, clients: Any
) -> None:
    client: JsClient = await clients("js", "j")
    node: NodeClient = client.node
    entry = await lb.entry("j", pin="A")
    await node.connect(entry.url, name="j", auth={"rooms": [room]}, retries=30, ackTimeout=1000)
    await node.wait_connect("j")
    entry.pin = "B"
    key = str(uuid.uuid4())
    req = await node.emit_with_ack("work", {"idempotencyKey": key, "value": 3, "drop_first": True}, name="j")
    err, ack = await node.wait_ack(req, timeout=30)

    assert err is None
    assert ack == {"key": key, "run": 1, "value": 3}
    assert lb.current_node(entry) == "B"
    assert [recovered for _, recovered in client.connects()] == [False, True]
    assert len(node.sent("work", name="j")) >= 2  # it was sent again (to B)
    assert await runs_everywhere(cluster, key) == {"A": 1, "B": 0, "C": 0}
