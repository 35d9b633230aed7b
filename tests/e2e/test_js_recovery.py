"""The official socket.io-client recovers against Delivery with zero client code.

The client is a plain ``io(url)`` (tests/js/client_driver.js adds no recovery code: it only
reports what the client sees). Its transport is dropped by the server without a goodbye; a
proxy keeps its own reconnection attempts out while the server emits, then lets them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_steps import come_back, connect_js, emit_numbered, go_away, numbers, offsets, wait_numbered

pytestmark = pytest.mark.node

AppFactory = Callable[..., DeliveryAppProcess]


@pytest.mark.parametrize(
    ("mode", "transports"),
    [
        ("asgi", ["websocket"]),
        ("aiohttp", ["websocket"]),
        ("asgi", ["polling", "websocket"]),
        ("aiohttp", ["polling", "websocket"]),
        ("asgi", ["polling"]),
        ("aiohttp", ["polling"]),
    ],
    ids=[
        "asgi",
        "aiohttp",
        "asgi-polling-then-upgrade",
        "aiohttp-polling-then-upgrade",
        "asgi-polling",
        "aiohttp-polling",
    ],
)
async def test_js_client_recovers_sid_rooms_session_data_and_missed_events_in_order(
    use_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    mode: str,
    transports: list[str],
    room: str,
) -> None:
    app = use_app(mode=mode)
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "ann"}, transports=transports)
    assert first["recovered"] is False
    assert isinstance(first["pid"], str)
    assert len(first["pid"]) >= 16
    assert await node.call("set_data", {"score": 5}) == {"user": "ann", "score": 5}
    await emit_numbered(app, range(3), room=room)
    await wait_numbered(node, 2)

    # WebSocket: closed; long-polling: the next poll is refused
    assert (await go_away(node, proxy))["reason"] in ("transport close", "transport error")
    await emit_numbered(app, range(3, 8), room=room)  # missed
    again = await come_back(node, proxy)

    assert again["id"] == first["id"]
    assert again["recovered"] is True
    assert again["pid"] == first["pid"]
    missed = [m for m in node.events("tick") if m["args"][0]["n"] >= 3]
    assert all(node.index(m) < node.index(again) for m in missed)  # replayed before the CONNECT reply
    me = await node.call("whoami")
    assert me["rooms"] == [room]
    assert me["session"] == {"user": "ann", "score": 5}
    assert me["recovered"] is True

    await emit_numbered(app, [8], room=room)  # live, to the room it got back
    await wait_numbered(node, 8)
    ticks = node.events("tick")
    assert numbers(ticks) == list(range(9))  # all of them, in order, once
    offsets(ticks)
    state = await node.state()
    assert state["offset"] == ticks[-1]["args"][-1]  # the client tracked the offsets itself
    connects = [c for c in await app.control("connects") if c["sid"] == first["id"]]
    assert [c["recovered"] for c in connects] == [False, True]  # the connect handler ran again


async def test_js_client_recovers_when_it_had_received_no_event(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    assert (await node.state())["offset"] is None  # it will reconnect with its pid only

    await go_away(node, proxy)
    await emit_numbered(app, range(3), room=room)
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 2)
    assert numbers(node.events("tick")) == [0, 1, 2]
    assert (await node.call("whoami"))["rooms"] == [room]


async def test_js_client_recovers_again_and_again(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "bob"})
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)
    rooms = [room]

    for round_ in range(3):
        # what changed since the last recovery is what the next one restores
        joined = f"{room}-{round_}"
        rooms = sorted([*rooms, joined])
        assert await node.call("join", joined) == rooms
        assert (await node.call("set_data", {"round": round_}))["round"] == round_
        await go_away(node, proxy)
        await emit_numbered(app, range(1 + 3 * round_, 3 + 3 * round_), room=room)
        await emit_numbered(app, [3 + 3 * round_], room=joined)  # to the room joined after a recovery
        again = await come_back(node, proxy)
        assert (again["id"], again["recovered"]) == (first["id"], True), f"drop {round_ + 1}"
        await wait_numbered(node, 3 + 3 * round_)
        me = await node.call("whoami")
        assert (me["rooms"], me["session"]) == (rooms, {"user": "bob", "round": round_})

    ticks = node.events("tick")
    assert numbers(ticks) == list(range(10))
    offsets(ticks)


async def test_js_client_recovers_when_the_client_drops_its_own_transport(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    app = use_app()
    first = await connect_js(node, app.url, rooms=[room])
    await emit_numbered(app, range(2), room=room)
    await wait_numbered(node, 1)

    await node.command("close_engine")  # the JS client closes its WebSocket: no Socket.IO goodbye
    await node.wait_disconnect()
    again = await node.wait_connect()

    assert (again["id"], again["recovered"]) == (first["id"], True)
    await emit_numbered(app, [2], room=room)
    await wait_numbered(node, 2)
    assert numbers(node.events("tick")) == [0, 1, 2]


async def test_js_client_does_not_recover_after_an_explicit_disconnect(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    app = use_app()
    first = await connect_js(node, app.url)
    await node.call("join", room)
    await node.call("set_data", {"user": "eve"})
    await node.command("disconnect")  # socket.disconnect(): the session is deleted, as in Node
    await node.wait_disconnect()
    await emit_numbered(app, [0], room=room)
    await node.command("open")  # the client still sends its old pid: it cannot be used any more
    again = await node.wait_connect()

    assert again["id"] != first["id"]
    assert (again["recovered"], again["pid"] != first["pid"]) == (False, True)
    me = await node.call("whoami")
    assert (me["rooms"], me["session"]) == ([], {})
    resync = await node.wait_event("delivery:resync")
    assert resync["args"][0]["reason"] == "unknown, expired or already used session"
    assert node.events("tick") == []


async def test_js_client_recovers_after_server_restarts_on_a_durable_store(
    make_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], sqlite_url: str, room: str
) -> None:
    app = make_app(store=sqlite_url)
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "cat"})
    await emit_numbered(app, range(3), room=room)
    await wait_numbered(node, 2)
    n = 3

    for kill in (True, False):  # kill -9 (nothing saved at exit), then SIGTERM (a redeploy)
        # the session is saved while connected: wait until the store has it
        await app.control("wait_saved", pid=first["pid"])
        proxy.hold()
        app.stop(kill=kill)
        await node.wait_disconnect()
        app.start()  # same port, same SQLite file
        await emit_numbered(app, range(n, n + 3), room=room)  # missed while the server was away
        again = await come_back(node, proxy)

        how = "kill -9" if kill else "SIGTERM"
        assert (again["id"], again["recovered"], again["pid"]) == (first["id"], True, first["pid"]), how
        await wait_numbered(node, n + 2)
        me = await node.call("whoami")
        assert (me["rooms"], me["session"]) == ([room], {"user": "cat"}), how
        await emit_numbered(app, [n + 3], room=room)
        await wait_numbered(node, n + 3)
        n += 4

    ticks = node.events("tick")
    assert numbers(ticks) == list(range(n))
    offsets(ticks)


async def test_js_client_recovers_while_the_server_still_thinks_it_is_connected(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()  # the test app pings every 5 s with a 4 s timeout
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "dan"})
    await emit_numbered(app, range(2), room=room)
    await wait_numbered(node, 1)
    await app.control("wait_saved", pid=first["pid"])

    proxy.hold()
    proxy.sever()  # the client's side is reset; the server's side stays open and silent
    await node.wait_disconnect()
    assert (await app.control("info", sid=first["id"]))["connected"] is True  # half-open
    await emit_numbered(app, range(2, 5), room=room)  # sent into the dead connection
    # a pid recovers its session once: the server pings the old connection first, and only
    # because it does not answer within Engine.IO's ping_timeout does it close it and let a
    # reconnect recover (the client's earlier attempts are turned away meanwhile)
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 4)
    await proxy.wait_upstream_closed(1)  # the server closed the silent one itself

    await emit_numbered(app, [5], room=room)
    await wait_numbered(node, 5)
    me = await node.call("whoami")
    assert (me["connected"], me["rooms"], me["session"]) == (True, [room], {"user": "dan"})

    # and the session recovers again after that (Node recovers only once here)
    await node.emit("drop")
    await node.wait_disconnect()
    third = await node.wait_connect()
    assert (third["id"], third["recovered"]) == (first["id"], True)
    await emit_numbered(app, [6], room=room)
    await wait_numbered(node, 6)
    ticks = node.events("tick")
    assert numbers(ticks) == list(range(7))
    offsets(ticks)


async def test_events_emitted_during_the_replay_are_neither_lost_duplicated_nor_reordered(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await go_away(node, proxy)
    await emit_numbered(app, range(150), room=room)  # missed: the replay takes a while

    async def keep_emitting() -> None:
        for start in range(150, 300, 10):
            await emit_numbered(app, range(start, start + 10), room=room)

    emitter = asyncio.create_task(keep_emitting())  # while the client recovers
    again = await come_back(node, proxy)
    await emitter
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 299)
    ticks = node.events("tick")
    assert numbers(ticks) == list(range(300))
    offsets(ticks)


async def test_rerun_connect_false_recovers_without_running_the_connect_handler(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app(extra=("--no-rerun-connect",))
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room], data={"user": "hal"})
    await go_away(node, proxy)
    await emit_numbered(app, [0], room=room)
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 0)
    me = await node.call("whoami")
    assert (me["rooms"], me["session"], me["recovered"]) == ([room], {"user": "hal"}, True)
    connects = [c for c in await app.control("connects") if c["sid"] == first["id"]]
    assert len(connects) == 1  # only the first connection ran the handler


@pytest.mark.parametrize("received", [False, True], ids=["never-received-an-event", "received-one-long-ago"])
async def test_idle_js_client_recovers_after_retention_trimmed_other_rooms_events(
    make_app: AppFactory,
    node: NodeClient,
    proxy_factory: Callable[[int], Any],
    sqlite_url: str,
    room: str,
    received: bool,
) -> None:
    """Node #5282: an idle socket whose offset was purged cannot recover, though it missed nothing."""
    app = make_app(store=f"{sqlite_url}?max_events=3")
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    if received:
        await emit_numbered(app, [0], room=room)
        await wait_numbered(node, 0)
    await emit_numbered(app, range(100, 110), room=f"{room}-busy")  # traffic it is not part of
    await app.control("trim")  # its connect position and its last offset are gone from the store

    await go_away(node, proxy)
    await emit_numbered(app, [1], room=room)
    again = await come_back(node, proxy)

    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 1)
    assert numbers(node.events("tick")) == ([0, 1] if received else [1])


async def test_js_client_far_behind_recovers_every_missed_event_in_order(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    """More missed events than one store read returns (pages of 500): all of them, in order."""
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await go_away(node, proxy)
    await emit_numbered(app, range(1100), room=room)
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 1099)
    ticks = node.events("tick")
    assert numbers(ticks) == list(range(1100))
    offsets(ticks)


async def test_server_emits_with_an_ack_callback_carry_no_offset_and_are_not_replayed(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    """As in Node: an emit with a callback is confirmed by its ack, not stored."""
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    sid = first["id"]
    assert await app.control("call", event="ask", data={"q": 1}, to=sid) == {"ack": {"acked": "ask"}}
    asked = await node.wait_event("ask")
    assert asked["args"] == [{"q": 1}, "<function>"]  # no offset

    await go_away(node, proxy)
    assert await app.control("call", event="ask", data={"q": 2}, to=sid, timeout=0.5) == {
        "error": "TimeoutError"
    }
    await emit_numbered(app, [0], room=room)
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (sid, True)
    await wait_numbered(node, 0)
    assert [m["args"][0] for m in node.events("ask")] == [{"q": 1}]


async def test_many_js_clients_dropped_at_once_all_recover_with_their_own_events(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    names = [f"s{i}" for i in range(20)]
    firsts = {name: await connect_js(node, proxy.url, rooms=[room], name=name) for name in names}

    proxy.hold()
    for name in names:
        await node.emit("drop", name=name)
    for name in names:
        await node.wait_disconnect(name)
    await emit_numbered(app, [0, 1], room=room)
    for i, name in enumerate(names):
        await emit_numbered(app, [100 + i], to=firsts[name]["id"])
    await emit_numbered(app, [2], room=room)
    proxy.release()  # twenty reconnects at once

    for i, name in enumerate(names):
        again = await node.wait_connect(name)
        assert (again["id"], again["recovered"]) == (firsts[name]["id"], True), name
        await wait_numbered(node, 2, name=name)
        ticks = node.events("tick", name=name)
        assert numbers(ticks) == [0, 1, 100 + i, 2], name
        offsets(ticks)


async def test_js_client_gets_binary_events_live_and_replayed_with_offsets(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await app.control("emit", event="file", args=["live", "caption"], room=room, as_bytes=True)
    await node.wait_event("file")

    await go_away(node, proxy)
    await app.control("emit", event="file", args=["missed"], room=room, as_bytes=True)
    again = await come_back(node, proxy)
    await node.wait_event("file")

    assert (again["id"], again["recovered"]) == (first["id"], True)
    files = node.events("file")
    as_buffer = [{"type": "Buffer", "data": list(text)} for text in (b"live", b"caption", b"missed")]
    assert [m["args"][:-1] for m in files] == [as_buffer[:2], as_buffer[2:]]  # binary, not base64 text
    marks = offsets(files)
    assert (await node.state())["offset"] == marks[-1]
