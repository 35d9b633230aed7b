"""Two server processes on one store: a JS client recovers on the other node.

Both nodes share a SQLite file (a store several processes of one machine can write) and use
python-socketio's ``AsyncRedisManager``; a proxy plays the load balancer and sends the
client's reconnect to the other node.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_steps import come_back, connect_js, emit_numbered, go_away, numbers, offsets, wait_numbered

pytestmark = [pytest.mark.node, pytest.mark.redis]

AppFactory = Callable[..., DeliveryAppProcess]


async def test_js_client_recovers_on_another_node_with_events_emitted_on_both(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    sqlite_url: str,
    redis_server_url: str,
    room: str,
) -> None:
    a = make_app(store=sqlite_url, redis_manager=redis_server_url)
    b = make_app(store=sqlite_url, redis_manager=redis_server_url)
    proxy = await proxy_factory(a.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "fay"})
    await emit_numbered(b, [0], room=room)  # emitted on the other node, delivered by this one
    await wait_numbered(node, 0)

    await go_away(node, proxy)
    await emit_numbered(a, [1], room=room)
    await emit_numbered(b, [2], room=room)
    proxy.target_port = b.port  # the reconnect lands on node b
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"], again["pid"]) == (first["id"], True, first["pid"])
    me = await node.call("whoami")
    assert (me["rooms"], me["session"]) == ([room], {"user": "fay"})
    await emit_numbered(a, [3], room=room)  # live, from the node it left
    await emit_numbered(b, [4], room=room)
    await emit_numbered(a, [5], to=first["id"])  # to its sid, from the node it is not on
    await emit_numbered(a, [6])  # to everyone, from there too
    await wait_numbered(node, 6)
    ticks = node.events("tick")
    assert numbers(ticks) == [0, 1, 2, 3, 4, 5, 6]
    offsets(ticks)


async def test_js_client_recovers_on_another_node_after_its_node_was_killed(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    sqlite_url: str,
    redis_server_url: str,
    room: str,
) -> None:
    a = make_app(store=sqlite_url, redis_manager=redis_server_url)
    b = make_app(store=sqlite_url, redis_manager=redis_server_url)
    proxy = await proxy_factory(a.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "gus"})
    await emit_numbered(a, [0], room=room)
    await wait_numbered(node, 0)
    await a.control("wait_saved", pid=first["pid"])  # saved while connected

    proxy.hold()
    proxy.target_port = b.port
    a.stop(kill=True)  # kill -9: node a saves nothing at exit
    await node.wait_disconnect()
    await emit_numbered(b, [1, 2], room=room)
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 2)
    me = await node.call("whoami")
    assert (me["rooms"], me["session"]) == ([room], {"user": "gus"})
    assert numbers(node.events("tick")) == [0, 1, 2]


async def test_js_retry_on_another_node_gets_the_recorded_ack_and_runs_nothing(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    sqlite_url: str,
    redis_server_url: str,
) -> None:
    a = make_app(store=sqlite_url, redis_manager=redis_server_url)
    b = make_app(store=sqlite_url, redis_manager=redis_server_url)
    proxy = await proxy_factory(a.port)
    first = await connect_js(node, proxy.url, retries=20, ackTimeout=250)
    proxy.target_port = b.port  # the reconnect will land on node b
    key = str(uuid.uuid4())
    # node a runs the handler and drops the transport before its ack is sent
    req = await node.emit_with_ack("work", {"idempotencyKey": key, "drop_first": True, "value": "x"})
    await node.wait_disconnect()
    again = await node.wait_connect()

    assert (again["id"], again["recovered"]) == (first["id"], True)
    assert await node.wait_ack(req) == [None, {"key": key, "run": 1, "value": "x"}]
    assert (await a.control("runs")).get(key) == 1
    assert key not in await b.control("runs")  # node b answered from the store
