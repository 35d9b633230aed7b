"""The end-to-end harness itself, on a plain python-socketio server (``--store none``).

These prove the tools the Delivery tests rely on: the drop closes the transport without a
goodbye (the client reconnects), the proxy's sever leaves the server believing the old
connection is alive, and a plain server has no recovery (the gap Delivery closes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient

pytestmark = pytest.mark.node


@pytest.mark.parametrize("mode", ["asgi", "aiohttp"])
async def test_drop_closes_the_transport_and_the_js_client_reconnects(
    make_app: Callable[..., DeliveryAppProcess], node: NodeClient, mode: str
) -> None:
    app = make_app(store="none", mode=mode)
    await node.connect(app.url, auth={"rooms": ["r1"]})
    first = await node.wait_connect()
    assert await node.call("echo", 1, "two") == [1, "two"]

    await node.emit("drop")
    assert (await node.wait_disconnect())["reason"] == "transport close"
    second = await node.wait_connect()

    assert second["id"] != first["id"]  # a plain server: a new session every time
    assert second["recovered"] is False
    assert second["pid"] is None
    disconnects = await app.control("disconnects")
    assert {"sid": first["id"], "namespace": "/", "reason": "transport close"} in disconnects


async def test_control_emits_reach_the_js_client_in_order(
    make_app: Callable[..., DeliveryAppProcess], node: NodeClient
) -> None:
    app = make_app(store="none")
    await node.connect(app.url, auth={"rooms": ["r1"]})
    await node.wait_connect()
    await app.control("emit", event="tick", room="r1", batch=[[{"n": n}] for n in range(5)])
    got = [(await node.wait_event("tick"))["args"][0]["n"] for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]


async def test_sever_leaves_the_server_side_open(
    make_app: Callable[..., DeliveryAppProcess], node: NodeClient, proxy_factory: Callable[[int], Any]
) -> None:
    app = make_app(store="none")  # default ping: 25 s interval, 20 s timeout
    proxy = await proxy_factory(app.port)
    await node.connect(proxy.url)
    first = await node.wait_connect()

    assert proxy.sever() == 1
    await node.wait_disconnect()
    second = await node.wait_connect()

    assert second["id"] != first["id"]
    # the client is back, and the server still thinks the old connection is alive
    assert (await app.control("info", sid=first["id"]))["connected"] is True
    assert proxy.upstream_closed == 0
