"""A recovering JS client gets the missed events addressed to it, and only those.

Addressed to it: everyone in its namespace, a room it was in, its own sid; not excluding it
(``skip_sid``). Never another room's events, another sid's, another namespace's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_steps import come_back, connect_js, emit_numbered, go_away, numbers, offsets, wait_numbered

pytestmark = pytest.mark.node

AppFactory = Callable[..., DeliveryAppProcess]


async def test_recovered_js_client_gets_only_the_missed_events_addressed_to_it(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    mine, other_room, left = f"{room}-mine", f"{room}-other", f"{room}-left"
    me = await connect_js(node, proxy.url, rooms=[mine, left])
    # a bystander in the other room, on the same server
    bystander = await connect_js(node, app.url, rooms=[other_room], name="bystander")
    assert await node.call("leave", left) == [mine]
    await emit_numbered(app, [0], room=mine)
    await wait_numbered(node, 0)

    await go_away(node, proxy)
    sid = me["id"]
    await emit_numbered(app, [1], room=mine)  # yes: its room
    await emit_numbered(app, [100], room=other_room)  # no: another room
    await emit_numbered(app, [101], room=left)  # no: a room it left before going away
    await emit_numbered(app, [2], to=sid)  # yes: its own sid
    await emit_numbered(app, [102], to=bystander["id"])  # no: another sid
    await emit_numbered(app, [3])  # yes: everyone in the namespace
    await emit_numbered(app, [103], skip_sid=sid)  # no: everyone but it
    await emit_numbered(app, [104], room=mine, skip_sid=[sid])  # no: its room, but skipped
    await emit_numbered(app, [105], namespace="/other")  # no: another namespace
    await emit_numbered(app, [4], room=[other_room, mine])  # yes: one of the rooms is its
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (sid, True)

    await emit_numbered(app, [5], room=mine)  # live again; arrives after everything missed
    await wait_numbered(node, 5)
    ticks = node.events("tick")
    assert numbers(ticks) == [0, 1, 2, 3, 4, 5]
    offsets(ticks)
    # the bystander got what was addressed to it, live
    await wait_numbered(node, 4, name="bystander")
    assert numbers(node.events("tick", name="bystander")) == [100, 102, 3, 103, 4]


async def test_skip_sid_is_respected_live_and_in_replay(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    me = await connect_js(node, proxy.url, rooms=[room])
    await connect_js(node, app.url, rooms=[room], name="peer")
    await emit_numbered(app, [100], room=room, skip_sid=me["id"])
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)

    await go_away(node, proxy)
    await emit_numbered(app, [101], room=room, skip_sid=me["id"])
    await emit_numbered(app, [1], room=room)
    await come_back(node, proxy)
    await wait_numbered(node, 1)

    assert numbers(node.events("tick")) == [0, 1]
    await wait_numbered(node, 1, name="peer")
    assert numbers(node.events("tick", name="peer")) == [100, 0, 101, 1]


async def test_js_client_recovers_each_namespace_of_one_connection(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    # two sockets multiplexed on one Engine.IO connection (the JS client's default for one URL)
    main = await connect_js(node, proxy.url, rooms=[room], forceNew=False)
    other = await connect_js(node, proxy.url, rooms=[room], name="o", namespace="/other", forceNew=False)

    await go_away(node, proxy)  # one transport: both sockets go
    await node.wait_disconnect("o")
    await emit_numbered(app, [0], room=room)
    await emit_numbered(app, [10], room=room, namespace="/other")
    again = await come_back(node, proxy)
    again_other = await node.wait_connect("o")

    assert (again["id"], again["recovered"]) == (main["id"], True)
    assert (again_other["id"], again_other["recovered"]) == (other["id"], True)
    await wait_numbered(node, 0)
    await wait_numbered(node, 10, name="o")
    assert numbers(node.events("tick")) == [0]
    assert numbers(node.events("tick", name="o")) == [10]


async def test_events_to_a_room_while_the_client_was_out_of_it_are_not_replayed_after_it_rejoined(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    proxy = await proxy_factory(app.port)
    await connect_js(node, proxy.url, rooms=[room])
    assert await node.call("leave", room) == []
    await emit_numbered(app, [100], room=room)  # it was not in the room then
    assert await node.call("join", room) == [room]
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)

    await go_away(node, proxy)
    await emit_numbered(app, [1], room=room)
    again = await come_back(node, proxy)
    assert again["recovered"] is True
    await emit_numbered(app, [2], room=room)
    await wait_numbered(node, 2)
    assert numbers(node.events("tick")) == [0, 1, 2]


async def test_a_client_joining_a_room_right_after_an_emit_to_it_does_not_get_that_event(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    """As with python-socketio alone: an emit reaches the room's members when ``emit`` returns."""
    app = use_app()
    proxy = await proxy_factory(app.port)
    me = await connect_js(node, proxy.url)
    await app.control("emit_then_join", event="tick", args=[{"n": 100}], room=room, sid=me["id"])
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)

    await go_away(node, proxy)
    await emit_numbered(app, [1], room=room)
    again = await come_back(node, proxy)
    assert again["recovered"] is True
    await wait_numbered(node, 1)
    assert numbers(node.events("tick")) == [0, 1]  # never 100: it was not in the room then


async def test_a_client_leaving_a_room_right_after_an_emit_to_it_still_gets_that_event(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    """As with python-socketio alone: it was a member when ``emit`` returned, so the event is its."""
    app = use_app()
    me = await connect_js(node, app.url, rooms=[room])
    await app.control("emit_then_leave", event="tick", args=[{"n": 0}], room=room, sid=me["id"])
    await emit_numbered(app, [1], to=me["id"])
    await wait_numbered(node, 1)
    assert numbers(node.events("tick")) == [0, 1]
