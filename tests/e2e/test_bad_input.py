"""Bad input gets a clean refusal or a normal new connection; the server keeps serving.

Recovery fields a real client never sends (non-string, huge, operator-shaped pids and
offsets, payloads that are not objects) and idempotency keys that are not 1..128-character
strings, sent over a raw WebSocket or with the stock clients.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient
from e2e_pyclient import PyClient
from e2e_raw import RawSocket
from e2e_steps import come_back, connect_js, emit_numbered, go_away, wait_numbered

AppFactory = Callable[..., DeliveryAppProcess]
PID = "A" * 22  # looks like a pid, is nobody's

BAD_PIDS: list[Any] = [123, True, None, "", ["a"], {"$gt": ""}, {"$ne": None}, "x" * 100_000, "é" * 40]
BAD_OFFSETS: list[Any] = [
    42,
    True,
    "",
    ["a"],
    {"$gt": ""},
    {"$where": "1"},
    "9" * 100_000,
    "not-an-offset",
    "ffffffff-ffffffffffff",
    "\x00",
]
BAD_PAYLOADS: list[Any] = [
    *({"pid": pid} for pid in BAD_PIDS),
    *({"pid": PID, "offset": offset} for offset in BAD_OFFSETS),
    *({"offset": offset} for offset in BAD_OFFSETS),  # the explicit recipe's field
    "a string",
    [1, 2],
    12345,
    {"pid": PID, "offset": "0", "rooms": "not a list"},
]


def label(payload: Any) -> str:
    return json.dumps(payload)[:40] if not isinstance(payload, str) else payload


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=[label(p) for p in BAD_PAYLOADS])
async def test_malformed_recovery_fields_get_a_clean_answer(use_app: AppFactory, payload: Any) -> None:
    app = use_app()
    async with RawSocket.open(app.port) as raw:
        reply = await raw.connect(payload)
        if reply.startswith("4"):  # CONNECT_ERROR: a clean refusal
            assert json.loads(reply[1:])["message"]
            return
        connect = json.loads(reply[1:])
        assert isinstance(connect["sid"], str)
        assert connect.get("pid") != PID  # never the session it asked for
        assert await raw.echo("still", "working") == ["still", "working"]
        resyncs = [e for e in raw.events() if e[0] == "delivery:resync"]
        if isinstance(payload, dict) and "pid" in payload:
            assert len(resyncs) == 1  # it asked to recover and could not: said out loud
            assert resyncs[0][1]["reason"] in (
                "malformed pid",
                "malformed offset",
                "unknown, expired or already used session",
            )
        elif isinstance(payload, dict) and not isinstance(payload.get("offset"), (str, type(None))):
            assert resyncs == [["delivery:resync", {"reason": "malformed offset"}]]  # explicit recipe
        elif isinstance(payload, dict) and payload.get("offset") == "":
            assert resyncs == [["delivery:resync", {"reason": "malformed offset"}]]


async def test_server_keeps_serving_after_bad_input(use_app: AppFactory, room: str) -> None:
    """Runs after the malformed payloads above (same shared app): nothing broke, nothing crashed."""
    app = use_app()
    async with PyClient.connect(app.url, auth={"rooms": [room]}) as client:
        assert await client.sio.call("echo", 1, timeout=20) == [1]
        sent = await app.control("publish", event="chat", room=room, data={"ok": True})
        event = await client.wait_event("chat")
        assert event["args"][0] == {"id": sent["offset"], "data": {"ok": True}}
    assert "Traceback" not in app.log_tail(200_000)


@pytest.mark.parametrize(
    "key",
    ["k" * 129, "k" * 100_000, "", 123, 1.5, True, ["a"], {"$gt": ""}],
    ids=["129-chars", "100k-chars", "empty", "int", "float", "bool", "list", "operator"],
)
async def test_invalid_idempotency_keys_are_refused_and_the_handler_does_not_run(
    use_app: AppFactory, key: Any
) -> None:
    app = use_app()
    tag = str(uuid.uuid4())
    async with PyClient.connect(app.url) as client:
        ack = await client.sio.call("work", {"idempotencyKey": key, "tag": tag}, timeout=20)
        assert ack == {"error": "invalid idempotency key"}
        assert await client.sio.call("echo", "alive", timeout=20) == ["alive"]
    assert tag not in await app.control("runs")


async def test_a_128_character_idempotency_key_is_accepted(use_app: AppFactory) -> None:
    app = use_app()
    key = ("k" * 128)[:92] + str(uuid.uuid4())
    assert len(key) == 128
    async with PyClient.connect(app.url) as client:
        first = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
        again = await client.sio.call("work", {"idempotencyKey": key}, timeout=20)
    assert first == again == {"key": key, "run": 1, "value": None}


@pytest.mark.node
async def test_js_client_still_recovers_after_bad_input(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    app = use_app()
    for payload in ({"pid": {"$gt": ""}}, {"offset": {"$gt": ""}}, {"pid": PID, "offset": "9" * 1000}):
        async with RawSocket.open(app.port) as raw:
            await raw.connect(payload)
    proxy = await proxy_factory(app.port)
    first = await connect_js(node, proxy.url, rooms=[room])
    await go_away(node, proxy)
    await emit_numbered(app, [0], room=room)
    again = await come_back(node, proxy)
    assert (again["id"], again["recovered"]) == (first["id"], True)
    await wait_numbered(node, 0)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        ("not-an-offset", "malformed offset"),
        ("zzzz", "malformed offset"),
        ("9" * 100_000, "malformed offset"),
        ("ffffffff-0000000000000001", "offset no longer available"),
    ],
    ids=["malformed", "sorts-after-everything", "huge", "another-epoch"],
)
async def test_explicit_recipe_with_a_malformed_or_foreign_offset_gets_resync_and_live_events(
    use_app: AppFactory, room: str, offset: str, reason: str
) -> None:
    app = use_app()
    await app.control("publish", event="chat", room=room, data={"i": 0})  # the stream exists
    async with PyClient.connect(app.url, auth={"offset": offset, "rooms": [room]}) as client:
        resync = await client.wait_event("delivery:resync")  # it cannot be replayed: said out loud
        assert resync["args"][0] == {"reason": reason}
        sent = await app.control("publish", event="chat", room=room, data={"i": 1})
        event = await client.wait_event("chat")  # and it is not held back from live events
        assert event["args"][0] == {"id": sent["offset"], "data": {"i": 1}}


def warnings_of(app: DeliveryAppProcess, reason: str) -> int:
    """How many times the app logged, at WARNING, that a connection did not recover for ``reason``."""
    return app.log_tail(100_000_000).count(
        f"WARNING socketio_delivery: connection to / did not recover: {reason}"
    )


async def wait_warnings(app: DeliveryAppProcess, reason: str, count: int) -> None:
    """Wait until the app logged ``count`` such warnings (a hang guard: the line precedes the reply)."""
    for _ in range(1000):
        if warnings_of(app, reason) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no WARNING 'did not recover: {reason}' in the app log:\n{app.log_tail()}")


JS_MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"pid": {"$gt": ""}}, "malformed pid"),
    ({"pid": 12345}, "malformed pid"),
    ({"pid": "x" * 100_000}, "malformed pid"),
    ({"pid": PID, "offset": {"$gt": ""}}, "malformed offset"),
    ({"pid": PID, "offset": "9" * 100_000}, "malformed offset"),
    ({"pid": PID, "offset": 42}, "malformed offset"),
    ({"offset": {"$gt": ""}}, "malformed offset"),  # the explicit recipe's field
]


@pytest.mark.node
async def test_js_client_malformed_recovery_fields_are_logged_as_warnings(
    use_app: AppFactory, node: NodeClient, room: str
) -> None:
    """socket.io-client sends what ``auth`` holds: a new session, a resync, and a WARNING line each."""
    app = use_app()
    for i, (fields, reason) in enumerate(JS_MALFORMED):
        name = f"bad{i}"
        before = warnings_of(app, reason)
        await node.connect(app.url, name=name, auth={"rooms": [room], **fields})
        connected = await node.wait_connect(name)
        assert connected["recovered"] is False
        assert connected["pid"] not in (None, PID)
        resync = await node.wait_event("delivery:resync", name)
        assert resync["args"] == [{"reason": reason}]
        await wait_warnings(app, reason, before + 1)
        await node.command("disconnect", name)
    assert "Traceback" not in app.log_tail(100_000_000)


@pytest.mark.node
async def test_js_client_real_pid_with_a_malformed_offset_is_logged_as_a_warning(
    use_app: AppFactory, node: NodeClient, proxy_factory: Callable[[int], Any], room: str
) -> None:
    """An ``auth.offset`` overrides the client's own on reconnect: its real pid with a bad offset."""
    app = use_app()
    proxy = await proxy_factory(app.port)
    before = warnings_of(app, "malformed offset")
    await node.connect(proxy.url, auth={"rooms": [room], "offset": {"$gt": ""}})
    first = await node.wait_connect()
    assert (await node.wait_event("delivery:resync"))["args"] == [{"reason": "malformed offset"}]
    await wait_warnings(app, "malformed offset", before + 1)
    await emit_numbered(app, [0], room=room)
    await wait_numbered(node, 0)  # it has a pid and an offset of its own now
    await go_away(node, proxy)
    again = await come_back(node, proxy)  # sends {pid: <its pid>, offset: {"$gt": ""}, rooms}
    assert again["recovered"] is False
    assert again["id"] != first["id"]
    assert again["pid"] != first["pid"]
    assert (await node.wait_event("delivery:resync"))["args"] == [{"reason": "malformed offset"}]
    await wait_warnings(app, "malformed offset", before + 2)
