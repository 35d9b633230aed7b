"""The store goes down under a running server: emits fail loudly, nothing is half-delivered, and
everything works again once it is back (a Redis store, stopped and restarted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_steps import come_back, connect_js, emit_numbered, go_away, numbers, wait_numbered

pytestmark = [pytest.mark.node, pytest.mark.redis]

AppFactory = Callable[..., DeliveryAppProcess]


async def js_client_on_redis(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    redis_server_factory: Callable[..., Any],
    room: str,
    *,
    prefix: str,
) -> tuple[Any, DeliveryAppProcess, Any, Any]:
    """A Redis server of its own, an app on it, and a JS client (via a proxy) in ``room`` that got tick 0."""
    redis = redis_server_factory(persistent=True)
    app = make_app(store=f"{redis.url}?prefix={prefix}")
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)
    return redis, app, proxy, first


async def test_emits_fail_loudly_while_the_store_is_down_and_work_again_after(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    redis_server_factory: Callable[..., Any],
    room: str,
) -> None:
    redis, app, proxy, first = await js_client_on_redis(
        make_app, node, proxy_factory, redis_server_factory, room, prefix="outage"
    )

    redis.stop()
    # `await sio.emit(...)` raises StoreUnavailableError (a StoreError): nothing is sent
    with pytest.raises(RuntimeError, match="StoreUnavailableError"):
        await emit_numbered(app, [100], room=room)
    redis.start()  # same port, same data

    await emit_numbered(app, [1], room=room)
    await wait_numbered(node, 1)
    await go_away(node, proxy)  # and recovery works after the outage
    await emit_numbered(app, [2], room=room)
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 2)
    assert numbers(node.events("tick")) == [0, 1, 2]  # never the emit that failed


async def test_js_client_reconnecting_while_the_store_is_down_recovers_once_it_is_back(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    redis_server_factory: Callable[..., Any],
    room: str,
) -> None:
    redis, app, proxy, first = await js_client_on_redis(
        make_app, node, proxy_factory, redis_server_factory, room, prefix="outage2"
    )
    await app.control("wait_saved", pid=first["pid"])

    await go_away(node, proxy)
    await emit_numbered(app, [1], room=room)
    redis.stop()

    def attempts() -> int:
        return sum(1 for m in node.messages if m["type"] == "reconnect_attempt")

    before = attempts()
    proxy.release()  # the client comes back while the store is down: turned away, it retries
    await node.wait(lambda m: m["type"] == "reconnect_attempt" and attempts() >= before + 2, cursor=None)
    assert [m for m in node.connects() if m["id"] != first["id"]] == []
    redis.start()
    again = await node.wait_connect()
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 1)
    assert numbers(node.events("tick")) == [0, 1]
