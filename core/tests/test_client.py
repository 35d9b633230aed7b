"""DeliveryClient against the reference peer: Node socket.io 4.8 with connectionStateRecovery.

The server is tests/js/csr_server.js (see its header for the control events). Every test uses real
sockets on 127.0.0.1. The connection is broken by the client (``await client.drop()``: no
goodbye, as a network failure) or, when events must be emitted while the client is away, by the
server (``server_drop``: ``socket.conn.close()``, a recoverable "forced close" for Node); the
client reconnects by itself.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from _serving import ClientFactory, delivery_clients, tag, until
from socketio_delivery._client_outbox import with_idempotency_key
from socketio_delivery.client import ClientClosedError, DeliveryClient, EmitTimeoutError

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
SERVER_JS = ROOT / "tests" / "js" / "csr_server.js"


def start_node() -> tuple[subprocess.Popen[str], str]:
    """Start csr_server.js on a free port; return the process and its URL."""
    node = shutil.which("node")
    if node is None or not (ROOT / "tests" / "js" / "node_modules" / "socket.io").is_dir():
        pytest.skip("needs node and tests/js/node_modules (make js)")
    proc = subprocess.Popen(
        [node, str(SERVER_JS), "0"], cwd=SERVER_JS.parent, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"csr_server.js did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    proc, url = start_node()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    async with delivery_clients() as make:
        yield make


async def server_drop(
    client: DeliveryClient,
    *then: tuple[str | None, str, list[Any]],
    namespace: str = "/",
    forget: bool = False,
) -> None:
    """Ask the server to force-close the connection, then emit ``then`` while the client is away
    (``forget``: and forget the saved sessions, so the recovery fails)."""
    spec = [{"to": to, "event": event, "args": args} for to, event, args in then]
    await client.emit("drop", {"then": spec, "forget": forget}, namespace=namespace, reliable=False)


async def test_recovers_sid_rooms_data_and_missed_events_after_forced_close(
    node_url: str, make_client: ClientFactory
) -> None:
    room = tag()
    client = make_client()
    seen: list[str] = []

    @client.on("news")
    def news(item: str) -> None:  # one parameter: the offset never reaches it
        seen.append(item)

    @client.event
    def connect() -> None:
        seen.append(f"connect recovered={client.recovered}")

    await client.connect(node_url)
    assert await client.emit("join", room) is True
    assert await client.emit("set-data", {"name": "ann"}) is True
    await client.emit("broadcast", {"to": room, "event": "news", "args": ["a"]})
    await until(lambda: "a" in seen, "the first event")
    me = await client.emit("whoami")
    sid = client.get_sid()
    assert client.recovered is False
    assert isinstance(client.offset, str)

    await server_drop(client, (room, "news", ["b"]), (room, "news", ["c"]), (tag(), "news", ["other room"]))
    await until(lambda: client.recovered, "the recovery")
    await until(lambda: "c" in seen, "the missed events")

    # the missed events ran in order, before the connect handler, and nothing else came
    assert seen == ["connect recovered=False", "a", "b", "c", "connect recovered=True"]
    assert client.get_sid() == sid
    again = await client.emit("whoami")
    assert again["recovered"] is True
    assert again["id"] == me["id"] == sid
    assert room in again["rooms"]
    assert again["data"]["name"] == "ann"
    # live events still reach the rooms after the recovery
    await client.emit("broadcast", {"to": room, "event": "news", "args": ["d"]})
    await until(lambda: "d" in seen, "a live event after the recovery")


async def test_strips_the_offset_but_not_from_events_the_server_wants_acked(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    got: list[Any] = []
    client.on("two", lambda a, b: got.append(("two", a, b)))
    client.on("zero", lambda: got.append(("zero",)))
    client.on("question", lambda text: text.upper())  # the server asks with an ack id: no offset

    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "two", "args": ["x", "y"]}, reliable=False)
    await until(lambda: len(got) == 1, "event two")
    first_offset = client.offset
    await client.emit("emit-to-me", {"event": "zero", "args": []}, reliable=False)
    await until(lambda: len(got) == 2, "event zero")

    assert got == [("two", "x", "y"), ("zero",)]
    assert isinstance(first_offset, str)
    assert isinstance(client.offset, str)
    assert client.offset != first_offset
    assert await client.emit("ask-me", "hello") == "HELLO"


async def test_plain_python_socketio_client_would_see_the_offset(node_url: str) -> None:
    """Why stripping matters: the stock client passes the offset as an extra argument."""
    plain = socketio.AsyncClient(handle_sigint=False)
    got: list[tuple[Any, ...]] = []
    plain.on("two", lambda *args: got.append(args))
    await plain.connect(node_url)
    try:
        await plain.emit("emit-to-me", {"event": "two", "args": ["x", "y"]})
        await until(lambda: bool(got), "event two")
        assert len(got[0]) == 3
        assert got[0][:2] == ("x", "y")
    finally:
        await plain.disconnect()


async def test_reconnect_sends_pid_offset_and_the_user_auth(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    connects = 0

    def auth() -> dict[str, Any]:
        nonlocal connects
        connects += 1
        return {"token": f"t{connects}"}

    seen: list[str] = []
    client.on("news", seen.append)
    await client.connect(node_url, auth=auth)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: bool(seen), "an event")
    offset = client.offset

    await client.drop()
    await until(lambda: client.recovered, "the recovery")
    first, second = (await client.emit("whoami"))["auth"], None
    auths = await client.emit("auths")
    second = auths[-1]
    assert second == first
    assert set(second) == {"pid", "offset", "token"}
    assert second["offset"] == offset
    assert second["token"] == "t2"
    first_auth = next(a for a in auths if a.get("token") == "t1")
    assert first_auth == {"token": "t1"}


async def test_failed_recovery_gives_a_new_session_and_says_so(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    seen: list[str] = []
    client.on("news", seen.append)
    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: bool(seen), "an event")
    sid = client.get_sid()

    await server_drop(client, forget=True)
    await until(lambda: client.recovery_failed() is not None, "the reconnect")
    await until(lambda: client.connected, "the reconnect")

    assert client.recovery_failed() == "new session"  # Node gives no reason
    assert client.recovered is False
    assert client.get_sid() != sid
    assert client.offset is None  # the old position means nothing to the new session
    assert client.resync_reason() is None  # Node does not send delivery:resync
    # the next drop recovers the NEW session
    await client.emit("emit-to-me", {"event": "news", "args": ["b"]}, reliable=False)
    await until(lambda: "b" in seen, "an event")
    new_sid = client.get_sid()
    await client.drop()
    await until(lambda: client.recovered, "the recovery of the new session")
    assert client.get_sid() == new_sid
    assert client.recovery_failed() is None


async def test_each_namespace_recovers_its_own_session(node_url: str, make_client: ClientFactory) -> None:
    room = tag()
    client = make_client()
    seen: list[tuple[str, str]] = []
    client.on("news", lambda item: seen.append(("/", item)))
    client.on("news", lambda item: seen.append(("/chat", item)), namespace="/chat")
    await client.connect(node_url, namespaces=["/", "/chat"])
    await client.emit("join", room, namespace="/chat")
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await client.emit("emit-to-me", {"event": "news", "args": ["b"]}, namespace="/chat", reliable=False)
    await until(lambda: len(seen) == 2, "an event on each namespace")
    assert client.get_offset("/") != client.get_offset("/chat")

    await server_drop(client, (room, "news", ["missed"]), namespace="/chat")
    await until(lambda: client.is_recovered("/") and client.is_recovered("/chat"), "both recoveries")
    await until(lambda: ("/chat", "missed") in seen, "the missed event")
    assert seen.count(("/chat", "missed")) == 1
    assert ("/", "missed") not in seen
    auths = await client.emit("auths", namespace="/chat")
    assert auths[-1]["pid"] != (await client.emit("auths"))[-1]["pid"]


async def test_emit_is_resent_after_the_connection_drops(node_url: str, make_client: ClientFactory) -> None:
    client = make_client(ack_timeout=30.0)  # only the drop can end the first attempt
    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: client.offset is not None, "an event")

    ack = await client.emit("order", {"mode": "drop-first", "item": 7})

    assert ack["calls"] == 2  # Node runs it twice: dedup is the server's job (see Delivery tests)
    assert ack["payload"]["item"] == 7
    assert isinstance(ack["key"], str)
    assert ack["payload"]["idempotencyKey"] == ack["key"]  # the same key on both attempts
    assert client.recovered is True


async def test_emit_is_resent_after_the_ack_timeout(node_url: str, make_client: ClientFactory) -> None:
    client = make_client(ack_timeout=0.3, retries=2)
    await client.connect(node_url)
    ack = await client.emit("order", {"mode": "ignore-first"})
    assert ack["calls"] == 2


async def test_emit_raises_once_the_retries_are_exhausted(node_url: str, make_client: ClientFactory) -> None:
    client = make_client()
    await client.connect(node_url)
    with pytest.raises(EmitTimeoutError, match="not acknowledged after 2 attempt") as info:
        await client.emit("order", {"mode": "never"}, ack_timeout=0.2, retries=1)
    assert info.value.attempts == 2
    assert info.value.event == "order"
    assert isinstance(info.value, TimeoutError)
    # the queue moves on
    assert (await client.emit("order", {"mode": "ok"}))["calls"] == 1


async def test_queue_keeps_order_with_one_event_in_flight_across_a_disconnect(
    node_url: str, make_client: ClientFactory
) -> None:
    log = tag()
    client = make_client(ack_timeout=30.0)
    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: client.offset is not None, "an event")

    acks = await asyncio.gather(*(client.emit("seq", {"n": n, "dropAt": 5, "tag": log}) for n in range(15)))

    assert acks == list(range(15))
    received = await client.emit("log", log)
    assert received == [0, 1, 2, 3, 4, 5, 5, *range(6, 15)]  # only the one in flight was sent twice
    assert client.pending() == 0


async def test_emit_made_while_disconnected_waits_for_the_reconnect(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: client.offset is not None, "an event")
    await client.drop()
    assert not client.connected
    ack = await client.emit("order", {"mode": "ok", "item": 1})
    assert ack["calls"] == 1
    assert client.recovered is True


async def test_idempotency_key_is_added_to_a_dict_first_argument(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.connect(node_url)
    payload = {"mode": "ok"}
    ack = await client.emit("order", payload)
    assert payload == {"mode": "ok"}  # the caller's dict is not changed
    assert len(ack["key"]) >= 16
    mine = await client.emit("order", {"mode": "ok", "idempotencyKey": "k-" + tag()})
    assert mine["key"].startswith("k-")
    key = client.idempotency_key
    assert with_idempotency_key(({"a": 1}, 2), key)[0].keys() == {"a", "idempotencyKey"}
    assert with_idempotency_key(["a"], key) == ["a"]
    assert with_idempotency_key("a", key) == "a"
    assert with_idempotency_key({"a": 1}, None) == {"a": 1}
    assert make_client(idempotency_key=None).idempotency_key is None


async def test_explicit_disconnect_ends_the_session_and_fails_pending_emits(
    node_url: str, make_client: ClientFactory
) -> None:
    client = make_client()
    seen: list[str] = []
    client.on("news", seen.append)
    await client.connect(node_url)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: bool(seen), "an event")

    pending = asyncio.ensure_future(client.emit("order", {"mode": "never"}, ack_timeout=60.0))
    await until(lambda: client.pending() == 1, "the emit in flight")
    await client.disconnect()
    with pytest.raises(ClientClosedError):
        await pending
    with pytest.raises(socketio.exceptions.BadNamespaceError):
        await client.emit("order", {"mode": "ok"})

    await client.connect(node_url)
    assert client.recovered is False
    assert client.recovery_failed() is None  # it did not ask: the session ended with disconnect()
    assert "pid" not in (await client.emit("whoami"))["auth"]


async def test_emit_before_connect_is_refused(make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(socketio.exceptions.BadNamespaceError):
        await client.emit("x")


async def test_recipe_mode_resumes_from_the_last_id(node_url: str, make_client: ClientFactory) -> None:
    event = "recipe-" + tag()
    publisher = make_client()
    await publisher.connect(node_url)
    client = make_client(mode="recipe")
    got: list[dict[str, Any]] = []
    client.on(event, got.append)
    await client.connect(node_url)
    first = await publisher.emit("recipe-publish", {"event": event, "data": 1})
    await until(lambda: len(got) == 1, "the first event")
    assert client.offset == first
    assert got == [{"id": first, "data": 1}]

    await client.disconnect()
    await publisher.emit("recipe-publish", {"event": event, "data": 2})
    third = await publisher.emit("recipe-publish", {"event": event, "data": 3})
    await client.connect(node_url)
    await until(lambda: len(got) == 3, "the replay")
    assert [g["data"] for g in got] == [1, 2, 3]
    assert client.offset == third
    assert (await client.emit("whoami"))["auth"] == {"offset": first}

    # a new client process resumes from an id it stored
    later = make_client(mode="recipe")
    resumed: list[dict[str, Any]] = []
    later.on(event, resumed.append)
    later.set_offset(first)
    await later.connect(node_url)
    await until(lambda: len(resumed) == 2, "the replay from a stored id")
    assert [g["data"] for g in resumed] == [2, 3]


async def test_handlers_of_missed_events_may_await_emits_and_later_events(
    node_url: str, make_client: ClientFactory
) -> None:
    room = tag()
    client = make_client()
    results: list[Any] = []
    later: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @client.on("news")
    async def news(item: str) -> None:
        if item == "b":  # runs during the recovery, before the namespace is connected again
            results.append((await client.emit("order", {"mode": "ok", "item": item}))["payload"]["item"])
        elif item == "c":  # waits for an event that arrives after it
            results.append(await later)

    client.on("later", later.set_result)
    await client.connect(node_url)
    await client.emit("join", room)
    await client.emit("emit-to-me", {"event": "news", "args": ["a"]}, reliable=False)
    await until(lambda: client.offset is not None, "an event")
    await server_drop(client, (room, "news", ["b"]), (room, "news", ["c"]), (room, "later", ["L"]))
    await until(lambda: len(results) == 2, "both handlers")
    assert sorted(results) == ["L", "b"]
    assert client.recovered is True


async def test_call_waits_for_the_ack_like_python_socketio(node_url: str, make_client: ClientFactory) -> None:
    client = make_client()
    await client.connect(node_url)
    assert (await client.call("order", {"mode": "ok"}, timeout=10))["calls"] == 1
    got: list[Any] = []
    assert (await client.emit("order", {"mode": "ok"}, callback=lambda ack: got.append(ack)))["calls"] == 1
    assert got[0]["calls"] == 1


async def test_pending_emits_fail_when_the_reconnection_gives_up(make_client: ClientFactory) -> None:
    proc, url = start_node()
    try:
        client = make_client(reconnection_attempts=2)
        await client.connect(url)
        pending = asyncio.ensure_future(client.emit("order", {"mode": "never"}, ack_timeout=60.0))
        await until(lambda: client.pending() == 1, "the emit in flight")
        proc.kill()
        with pytest.raises(ClientClosedError) as info:
            await asyncio.wait_for(pending, 30)
        assert info.value.event == "order"
        with pytest.raises(socketio.exceptions.BadNamespaceError):
            await client.emit("order", {"mode": "ok"})
    finally:
        proc.kill()
        proc.wait(10)


async def test_node_cannot_recover_a_client_that_got_no_event_yet(
    node_url: str, make_client: ClientFactory
) -> None:
    """Node's own limit (socket.io#5538), stated in docs/client.md; a Delivery server recovers."""
    client = make_client()
    await client.connect(node_url)
    assert client.offset is None
    await client.drop()
    await until(lambda: client.recovery_failed() is not None, "the reconnect")
    assert client.recovered is False
    auths = await client.emit("auths")
    assert set(auths[-1]) == {"pid"}  # the pid alone, as the JS client sends it
