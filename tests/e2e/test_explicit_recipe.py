"""The explicit recipe: any client that keeps the last ``id`` gets what it missed.

``delivery.publish(event, data, room=...)`` sends ``[event, {"id": offset, "data": data}, offset]``.
A client that connects with ``auth={"offset": <last id>}`` (no pid: any Socket.IO client, of
any version, with no recovery support) gets, after the connect handler has run and joined
its rooms, every event after that offset addressed to its rooms, its sid or everyone, in
order, then live events. Here: the stock ``socketio.AsyncClient``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_pyclient import PyClient

AppFactory = Callable[..., DeliveryAppProcess]


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["args"][0]["id"] for e in events]


async def test_stock_python_client_gets_the_published_events_it_missed_from_its_last_id(
    use_app: AppFactory, room: str
) -> None:
    app = use_app()
    async with PyClient.connect(app.url, auth={"rooms": [room]}) as first:
        sent = await app.control("publish", event="chat", room=room, data={"text": "hello"})
        live = await first.wait_event("chat")
        # {"id", "data"}, then the offset (the Node convention) as the last argument
        assert live["args"] == [{"id": sent["offset"], "data": {"text": "hello"}}, sent["offset"]]
        last_id = live["args"][0]["id"]

    missed = await app.control(
        "publish", event="chat", room=room, batch=[{"text": f"m{i}"} for i in range(3)]
    )
    await app.control("publish", event="chat", room=f"{room}-other", data={"text": "not mine"})
    await app.control("emit", event="tick", room=room, args=[{"n": 1}])  # a plain emit to its room

    async with PyClient.connect(app.url, auth={"offset": last_id, "rooms": [room]}) as client:
        replayed = [await client.wait_event("chat") for _ in range(3)]
        tick = await client.wait_event("tick")
        assert ids(replayed) == missed["offsets"]
        assert [e["args"][0]["data"]["text"] for e in replayed] == ["m0", "m1", "m2"]
        assert all(e["args"][-1] == e["args"][0]["id"] for e in replayed)
        assert tick["args"][0] == {"n": 1}  # plain emits to its rooms are replayed as sent
        assert tick["args"][-1] > missed["offsets"][-1]

        after = await app.control("publish", event="chat", room=room, data={"text": "live"})
        event = await client.wait_event("chat")
        assert event["args"][0] == {"id": after["offset"], "data": {"text": "live"}}
        assert all(e["args"][0]["data"]["text"] != "not mine" for e in client.named("chat"))
        assert len(client.named("chat")) == 4  # no duplicates
        info = await app.control("info", sid=client.sid)
        assert info["recovered"] is False  # the recipe is not a recovery: a new sid, new session
        assert info["recovery_failed"] is None
        connect = next(c for c in await app.control("connects") if c["sid"] == client.sid)
        assert "offset" in connect["auth_keys"]  # the connect handler sees auth["offset"]


async def test_explicit_recipe_replays_a_client_far_behind_in_pages(use_app: AppFactory, room: str) -> None:
    app = use_app()
    first = await app.control("publish", event="chat", room=room, data={"i": 0})
    count = 1200  # more than two pages of 500
    await app.control("publish", event="chat", room=room, batch=[{"i": i} for i in range(1, count)])

    async with PyClient.connect(app.url, auth={"offset": first["offset"], "rooms": [room]}) as client:
        last = await client.wait(lambda e: e["event"] == "chat" and e["args"][0]["data"]["i"] == count - 1)
        got = client.named("chat")
        assert [e["args"][0]["data"]["i"] for e in got] == list(range(1, count))
        assert last is got[-1]
        replayed_ids = ids(got)
        assert replayed_ids == sorted(replayed_ids)


async def test_explicit_recipe_replays_events_to_everyone_and_its_rooms_not_to_other_sids(
    use_app: AppFactory, room: str
) -> None:
    app = use_app()
    start = await app.control("publish", event="chat", room=room, data={"i": 0})
    # in no room: this test is about addressing; joins right after an emit are
    # test_js_room_scoping's business
    async with PyClient.connect(app.url) as bystander:
        await app.control("publish", event="chat", data={"i": 1})  # everyone
        await app.control("publish", event="chat", room=room, skip_sid=bystander.sid, data={"i": 2})
        await app.control("publish", event="chat", to=bystander.sid, data={"i": 3})  # its sid only
        await bystander.wait(lambda e: e["event"] == "chat" and e["args"][0]["data"]["i"] == 3)
        assert [e["args"][0]["data"]["i"] for e in bystander.named("chat")] == [1, 3]

    async with PyClient.connect(app.url, auth={"offset": start["offset"], "rooms": [room]}) as client:
        await client.wait(lambda e: e["event"] == "chat" and e["args"][0]["data"]["i"] == 2)
        await app.control("publish", event="chat", room=room, data={"i": 4})
        await client.wait(lambda e: e["event"] == "chat" and e["args"][0]["data"]["i"] == 4)
        # everyone's and its room's, not another sid's
        assert [e["args"][0]["data"]["i"] for e in client.named("chat")] == [1, 2, 4]


@pytest.mark.node
async def test_js_client_after_a_page_reload_gets_the_published_events_it_missed(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    """A new JS socket (a page reload: no pid) that kept the last id, e.g. in localStorage."""
    app = use_app()
    await node.connect(app.url, name="before", auth={"rooms": [room]})
    await node.wait_connect("before")
    sent = await app.control("publish", event="chat", room=room, data={"i": 0})
    live = await node.wait_event("chat", "before")
    last_id = live["args"][0]["id"]
    assert last_id == sent["offset"]
    await node.command("disconnect", "before")  # the page goes away

    missed = await app.control("publish", event="chat", room=room, batch=[{"i": 1}, {"i": 2}])
    await node.connect(app.url, name="after", auth={"offset": last_id, "rooms": [room]})
    got = [await node.wait_event("chat", "after") for _ in range(2)]
    assert [m["args"][0] for m in got] == [
        {"id": offset, "data": {"i": i}} for i, offset in zip((1, 2), missed["offsets"], strict=True)
    ]
    connect = await node.wait_connect("after")
    assert connect["recovered"] is False
