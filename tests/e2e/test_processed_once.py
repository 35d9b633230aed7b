"""Client -> server at least once, processed once.

The JS client's ``retries`` + ``ackTimeout`` resend an emit until it is acknowledged (one in
flight at a time, resent after a reconnect). With an ``idempotencyKey`` in the first
argument the server runs the handler once per (client, namespace, event, key) and gives
every retry the ack the first run produced. The app's ``work`` handler counts its runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import socketio
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_pyclient import PyClient
from e2e_steps import come_back, connect_js, go_away

AppFactory = Callable[..., DeliveryAppProcess]
RETRYING: dict[str, Any] = {"retries": 20, "ackTimeout": 250}


def new_key() -> str:
    return str(uuid.uuid4())


async def wait_sent(node: NodeClient, event: str, count: int, name: str = "main") -> None:
    """Wait until the JS socket has written ``event`` ``count`` times (first try + retries)."""
    await node.wait(
        lambda m: m["type"] == "sent" and m["name"] == name and len(node.sent(event, name)) >= count,
        cursor=None,
    )


async def acked(node: NodeClient, event: str, *args: Any, name: str = "main") -> Any:
    """Emit from a socket with ``retries`` and return the result its ack callback got."""
    err, result = await node.wait_ack(await node.emit_with_ack(event, *args, name=name))
    assert err is None
    return result


@pytest.mark.node
async def test_js_retry_while_the_first_run_is_still_running_gets_its_ack_and_runs_nothing(
    use_app: AppFactory, node: NodeClient
) -> None:
    app = use_app()
    await connect_js(node, app.url, **RETRYING)
    key, gate = new_key(), new_key()
    req = await node.emit_with_ack("work", {"idempotencyKey": key, "gate": gate, "value": 7})
    await wait_sent(node, "work", 3)  # the ack timed out twice: two retries are waiting
    await app.control("release", gate=gate)

    assert await node.wait_ack(req) == [None, {"key": key, "run": 1, "value": 7}]
    assert (await app.control("runs"))[key] == 1


@pytest.mark.node
async def test_js_retry_after_the_transport_dropped_mid_handler_runs_once_and_gets_the_same_ack(
    use_app: AppFactory, node: NodeClient
) -> None:
    app = use_app()
    first = await connect_js(node, app.url, **RETRYING)
    key = new_key()
    # the first run drops the client's transport before it returns: its ack is lost
    req = await node.emit_with_ack("work", {"idempotencyKey": key, "drop_first": True, "value": "x"})
    await node.wait_disconnect()
    again = await node.wait_connect()  # the client recovers and resends the queued emit

    assert (again["id"], again["recovered"]) == (first["id"], True)
    assert await node.wait_ack(req) == [None, {"key": key, "run": 1, "value": "x"}]
    assert len(node.sent("work")) >= 2
    assert (await app.control("runs"))[key] == 1


@pytest.mark.node
async def test_js_retry_without_an_idempotency_key_runs_the_handler_again(
    use_app: AppFactory, node: NodeClient
) -> None:
    """The control case: what the key prevents."""
    app = use_app()
    await connect_js(node, app.url, **RETRYING)
    tag, gate = new_key(), new_key()
    req = await node.emit_with_ack("work", {"tag": tag, "gate": gate})
    await wait_sent(node, "work", 2)
    ack = await node.wait_ack(req)  # the retry ran the handler a second time
    await app.control("release", gate=gate)
    assert ack == [None, {"key": tag, "run": 2, "value": None}]


@pytest.mark.node
async def test_js_emits_with_the_same_key_from_two_clients_each_run_once(
    use_app: AppFactory, node: NodeClient
) -> None:
    app = use_app()
    await connect_js(node, app.url, **RETRYING)
    await connect_js(node, app.url, name="b", **RETRYING)
    key = new_key()
    a1 = await acked(node, "work", {"idempotencyKey": key, "value": "a"})
    b1 = await acked(node, "work", {"idempotencyKey": key, "value": "b"}, name="b")
    a2 = await acked(node, "work", {"idempotencyKey": key, "value": "a again"})

    assert a1 == a2 == {"key": key, "run": 1, "value": "a"}  # the recorded ack
    assert b1 == {"key": key, "run": 2, "value": "b"}  # another client: its own scope, not a's ack
    assert (await app.control("runs"))[key] == 2


async def test_python_client_resending_the_same_key_gets_the_recorded_ack(use_app: AppFactory) -> None:
    app = use_app()
    key = new_key()
    async with PyClient.connect(app.url) as client:
        first = await client.sio.call("work", {"idempotencyKey": key, "value": 1}, timeout=20)
        retry = await client.sio.call("work", {"idempotencyKey": key, "value": 1}, timeout=20)
    assert first == retry == {"key": key, "run": 1, "value": 1}
    assert (await app.control("runs"))[key] == 1


async def test_identity_from_the_application_spans_new_sessions(use_app: AppFactory) -> None:
    """``Delivery(identity=...)``: the scope follows the app's user, not the session."""
    app = use_app(extra=("--identity", "session-user"))
    key = new_key()
    user = {"data": {"user": f"u-{key}"}}
    async with PyClient.connect(app.url, auth=user) as client:
        first = await client.sio.call("work", {"idempotencyKey": key, "value": 1}, timeout=20)
    async with PyClient.connect(app.url, auth=user) as client:  # a new session, same user
        retry = await client.sio.call("work", {"idempotencyKey": key, "value": 1}, timeout=20)
    async with PyClient.connect(app.url, auth={"data": {"user": "someone else"}}) as client:
        other = await client.sio.call("work", {"idempotencyKey": key, "value": 2}, timeout=20)

    assert first == retry == {"key": key, "run": 1, "value": 1}
    assert other == {"key": key, "run": 2, "value": 2}


async def test_default_identity_is_the_session_a_new_session_runs_again(use_app: AppFactory) -> None:
    """Without ``identity=``, a client that could not recover its session is a new client."""
    app = use_app()
    key = new_key()
    async with PyClient.connect(app.url) as client:
        first: Any = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
    async with PyClient.connect(app.url) as client:
        second: Any = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
    assert (first["run"], second["run"]) == (1, 2)


async def test_a_key_is_scoped_by_event_and_namespace(use_app: AppFactory) -> None:
    app = use_app()
    key = new_key()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(app.url, namespaces=["/", "/other"], transports=["websocket"])
    try:
        work = await client.call("work", {"idempotencyKey": key, "value": 1}, timeout=20)
        echo = await client.call("echo", {"idempotencyKey": key, "value": 2}, timeout=20)
        other = await client.call("work", {"idempotencyKey": key, "value": 3}, namespace="/other", timeout=20)
    finally:
        await client.disconnect()
    assert work == {"key": key, "run": 1, "value": 1}
    assert echo == [{"idempotencyKey": key, "value": 2}]  # another event: its own handler ran
    assert other == {"key": key, "run": 2, "value": 3}  # another namespace: ran again


@pytest.mark.node
async def test_js_emits_queued_while_disconnected_run_once_each_in_order_after_recovery(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any]
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, **RETRYING)
    await go_away(node, proxy)
    keys = [new_key() for _ in range(3)]
    reqs = [
        await node.emit_with_ack("work", {"idempotencyKey": key, "value": i}) for i, key in enumerate(keys)
    ]
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"]) == (first["id"], True)
    acks = [await node.wait_ack(req) for req in reqs]
    assert acks == [[None, {"key": key, "run": 1, "value": i}] for i, key in enumerate(keys)]
    log = [key for key in await app.control("work_log") if key in keys]
    assert log == keys  # each once, in the order they were emitted


@pytest.mark.node
async def test_js_retry_after_the_handler_raised_runs_it_again(use_app: AppFactory, node: NodeClient) -> None:
    """A failed run records nothing: the retry runs the handler, and its ack is the one kept."""
    app = use_app()
    await connect_js(node, app.url, **RETRYING)
    key = new_key()
    assert await acked(node, "work", {"idempotencyKey": key, "fail_first": True}) == {
        "key": key,
        "run": 2,
        "value": None,
    }
    assert await acked(node, "work", {"idempotencyKey": key}) == {"key": key, "run": 2, "value": None}
    assert (await app.control("runs"))[key] == 2


async def test_a_key_is_forgotten_after_the_idempotency_ttl(use_app: AppFactory) -> None:
    app = use_app(extra=("--idempotency-ttl", "0.5"))
    key = new_key()
    async with PyClient.connect(app.url) as client:
        first = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
        await asyncio.sleep(1.5)  # let the 0.5 s ttl pass
        later = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
    assert (first["run"], later["run"]) == (1, 2)
