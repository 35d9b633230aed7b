"""When a session cannot be recovered the client is told: a new session and a ``delivery:resync`` event.

Never a silent gap: ``socket.recovered`` is false, the sid and pid are new, and right after
the CONNECT reply the server sends ``["delivery:resync", {"reason": ...}]`` (no offset);
the server's connect handler sees ``delivery.recovery_failed(sid)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import socketio
from delivery_app import DeliveryAppProcess
from e2e_node import Message, NodeClient
from e2e_pyclient import PyClient
from e2e_steps import come_back, connect_js, emit_numbered, go_away, wait_numbered

AppFactory = Callable[..., DeliveryAppProcess]
UNKNOWN = "unknown, expired or already used session"


async def assert_resync(
    node: NodeClient, connect: Message, app: DeliveryAppProcess, name: str = "main"
) -> str:
    """The JS socket got a new session and a resync event; the app saw why. Returns the reason."""
    assert connect["recovered"] is False
    resync = await node.wait_event("delivery:resync", name)
    assert node.index(resync) > node.index(connect)  # after the CONNECT reply
    assert len(resync["args"]) == 1  # {"reason": ...} and no offset
    reason = resync["args"][0]["reason"]
    assert isinstance(reason, str)
    assert reason
    record = next(c for c in await app.control("connects") if c["sid"] == connect["id"])
    assert record["recovery_failed"] == reason
    assert record["recovered"] is False
    return reason


@pytest.mark.node
async def test_js_client_with_a_forged_pid_gets_a_new_session_and_resync(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    app = use_app()
    victim = await connect_js(node, app.url, rooms=[room], name="victim")
    forged = victim["pid"][:-2] + ("AA" if not victim["pid"].endswith("AA") else "BB")
    await node.connect(app.url, auth={"pid": forged, "offset": "0", "rooms": []})
    connect = await node.wait_connect()

    assert connect["id"] != victim["id"]
    assert connect["pid"] not in (forged, victim["pid"])
    assert await assert_resync(node, connect, app) == UNKNOWN
    assert (await node.call("whoami"))["rooms"] == []  # not the victim's rooms
    # the victim is untouched
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0, name="victim")
    assert node.events("tick") == []


@pytest.mark.node
async def test_js_client_whose_session_expired_gets_a_new_session_and_resync(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app(extra=("--recovery-window", "0.5"))
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)
    await go_away(node, proxy)
    await emit_numbered(app, [1], room=room)
    await asyncio.sleep(1.5)  # let the 0.5 s recovery window pass
    again = await come_back(node, proxy)

    assert again["id"] != first["id"]
    assert again["pid"] != first["pid"]
    assert await assert_resync(node, again, app) == UNKNOWN

    # the new session is recoverable in its turn
    await go_away(node, proxy)
    await emit_numbered(app, [2], room=room)
    third = await come_back(node, proxy)
    assert (third["id"], third["recovered"], third["pid"]) == (again["id"], True, again["pid"])
    await wait_numbered(node, 2)
    assert [m["args"][0]["n"] for m in node.events("tick")] == [0, 2]  # 1 was lost: resync said so


@pytest.mark.node
async def test_js_client_whose_offset_was_trimmed_gets_a_new_session_and_resync(
    make_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], sqlite_url: str, room: str
) -> None:
    app = make_app(store=f"{sqlite_url}?max_events=3")
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)
    await go_away(node, proxy)
    await emit_numbered(app, range(1, 10), room=room)
    await app.control("trim")  # retention drops event 0 and more: the client's offset is gone
    again = await come_back(node, proxy)

    assert again["id"] != first["id"]
    assert await assert_resync(node, again, app) == "offset no longer available"
    # the explicit recipe from the same trimmed offset is told the same
    trimmed = node.events("tick")[0]["args"][-1]
    async with PyClient.connect(app.url, auth={"offset": trimmed, "rooms": [room]}) as client:
        resync = await client.wait_event("delivery:resync")
        assert resync["args"] == [{"reason": "offset no longer available"}]


@pytest.mark.node
async def test_js_client_presenting_a_pid_of_another_namespace_gets_resync(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    app = use_app()
    main = await connect_js(node, app.url, rooms=[room])
    await node.connect(app.url, name="o", namespace="/other", auth={"pid": main["pid"]})
    connect = await node.wait_connect("o")
    assert connect["id"] != main["id"]
    assert await assert_resync(node, connect, app, name="o") == UNKNOWN


async def test_python_client_with_an_unknown_pid_gets_resync_without_an_offset(
    use_app: AppFactory, room: str
) -> None:
    app = use_app()
    client = socketio.AsyncClient(reconnection=False)
    got: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()

    @client.on("*")  # type: ignore[untyped-decorator]
    async def any_event(event: str, *args: Any) -> None:
        await got.put((event, args))

    await client.connect(app.url, auth={"pid": "x" * 22, "rooms": [room]}, transports=["websocket"])
    try:
        event, args = await asyncio.wait_for(got.get(), 20)
        assert event == "delivery:resync"
        assert len(args) == 1
        assert args[0]["reason"] == UNKNOWN
        info = await app.control("info", sid=client.get_sid())
        assert info["rooms"] == [room]  # the connect handler ran as for any new connection
        assert info["recovered"] is False
        assert info["recovery_failed"] == args[0]["reason"]
    finally:
        await client.disconnect()


@pytest.mark.node
async def test_js_client_disconnected_by_the_server_does_not_recover(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    app = use_app()
    first = await connect_js(node, app.url, rooms=[room])
    await app.control("disconnect", sid=first["id"])  # sio.disconnect(sid): explicit, as in Node
    assert (await node.wait_disconnect())["reason"] == "io server disconnect"  # no auto-reconnect
    await node.command("open")
    again = await node.wait_connect()
    assert again["id"] != first["id"]
    assert await assert_resync(node, again, app) == UNKNOWN


@pytest.mark.node
async def test_js_client_gets_resync_after_a_restart_on_a_store_that_is_not_durable(
    make_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = make_app(store="memory://")
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    proxy.hold()
    app.restart()  # the in-memory store, and the sessions in it, are gone
    await node.wait_disconnect()
    again = await come_back(node, proxy)
    assert again["id"] != first["id"]
    assert await assert_resync(node, again, app) == UNKNOWN
