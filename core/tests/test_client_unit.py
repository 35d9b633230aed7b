"""Unit tests of the client's wiring, without sockets: the hooks drive each namespace's state and
queue as they should. The rules themselves are tested in test_client_state.py, the end-to-end
proofs are in test_client.py (Node) and test_client_delivery.py (Delivery).

python-socketio's own handling is replaced by a recorder where noted; the outbox gets a fake
sender that the test answers by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from socketio_delivery._client_outbox import ClientClosedError, EmitTimeoutError, Outbox
from socketio_delivery.client import RESYNC_EVENT, DeliveryClient


class Recorder(DeliveryClient):
    """A DeliveryClient whose python-socketio event handling only records what it gets."""

    def __init__(self, **options: Any) -> None:
        super().__init__(handle_sigint=False, **options)
        self.dispatched: list[tuple[int | None, list[Any]]] = []
        self.connect_replies: list[Any] = []

    async def _socketio_handle_event(self, namespace: str, ack_id: int | None, data: list[Any]) -> None:
        self.dispatched.append((ack_id, data))

    async def _socketio_handle_connect(self, namespace: str, data: Any) -> None:
        self.connect_replies.append(data)


async def connected(client: Recorder, pid: str | None = "p1", namespace: str = "/") -> None:
    client._delivery_connect_auth(namespace, {})
    await client._delivery_connect_reply(namespace, {"sid": "s1", "pid": pid} if pid else {"sid": "s1"})


async def test_offset_is_stripped_only_from_stored_events_of_a_recovery_server() -> None:
    client = Recorder()
    await connected(client)
    await client._delivery_event("/", None, ["ev", "a", "o1"])
    await client._delivery_event("/", 3, ["asked", "a", "not-an-offset"])  # the server wants an ack
    await client._delivery_event("/", None, ["ev", {"x": 1}])  # no string last: nothing stored
    await client._delivery_event("/", None, ["ev", "o2"])  # zero-argument event
    assert client.dispatched == [
        (None, ["ev", "a"]),
        (3, ["asked", "a", "not-an-offset"]),
        (None, ["ev", {"x": 1}]),
        (None, ["ev"]),
    ]
    assert client.offset == "o2"

    plain = Recorder()
    await connected(plain, pid=None)  # no pid in the reply: the server appends nothing
    await plain._delivery_event("/", None, ["ev", "a", "b"])
    assert plain.dispatched == [(None, ["ev", "a", "b"])]
    assert plain.offset is None


async def test_connect_auth_carries_pid_and_offset_and_the_app_auth_wins() -> None:
    client = Recorder()
    assert client._delivery_connect_auth("/", {"token": "t"}) == {"token": "t"}
    await client._delivery_connect_reply("/", {"sid": "s1", "pid": "p1"})
    assert client._delivery_connect_auth("/", {"token": "t"}) == {"pid": "p1", "token": "t"}
    await client._delivery_connect_reply("/", {"sid": "s1", "pid": "p1"})
    await client._delivery_event("/", None, ["ev", "o9"])
    assert client._delivery_connect_auth("/", None) == {"pid": "p1", "offset": "o9"}
    await client._delivery_connect_reply("/", {"sid": "s1", "pid": "p1"})
    assert client._delivery_connect_auth("/", {"offset": "mine"}) == {"pid": "p1", "offset": "mine"}
    assert client._delivery_connect_auth("/", "a string") == "a string"  # not a dict: untouched


async def test_recovered_and_recovery_failed_follow_the_reply_pid() -> None:
    client = Recorder()
    await connected(client, pid="p1")
    assert (client.recovered, client.recovery_failed()) == (False, None)
    await client._delivery_event("/", None, ["ev", "o1"])
    client._delivery_namespace_down("/", final=False, reason="transport close")

    await connected(client, pid="p1")
    assert (client.recovered, client.recovery_failed()) == (True, None)
    assert client.offset == "o1"
    client._delivery_namespace_down("/", final=False, reason="transport close")

    await connected(client, pid="p2")
    assert (client.recovered, client.recovery_failed()) == (False, "new session")
    assert client.offset is None  # belongs to the old session
    await client._delivery_event("/", None, [RESYNC_EVENT, {"reason": "session expired"}])
    assert client.resync_reason() == "session expired"
    assert client.recovery_failed() == "session expired"  # the server's own words, once it sent them
    assert client.dispatched[-1] == (None, [RESYNC_EVENT, {"reason": "session expired"}])

    client._delivery_namespace_down("/", final=True, reason="client disconnect")
    assert client._delivery_connect_auth("/", {}) == {}  # an explicit disconnect ends the session


async def test_events_before_the_connect_reply_are_held_then_run_before_the_connect_handler() -> None:
    client = Recorder()
    await connected(client)
    await client._delivery_event("/", None, ["ev", "o1"])
    client._delivery_namespace_down("/", final=False, reason="transport close")
    client._delivery_connect_auth("/", {})
    await client._delivery_event("/", None, ["missed", 1, "o2"])
    await client._delivery_event("/", None, ["missed", 2, "o3"])
    assert len(client.dispatched) == 1  # held
    await client._delivery_connect_reply("/", {"sid": "s1", "pid": "p1"})
    await asyncio.sleep(0)
    assert client.dispatched[1:] == [(None, ["missed", 1]), (None, ["missed", 2])]
    assert client.offset == "o3"
    assert len(client.connect_replies) == 2


async def test_recipe_mode_remembers_envelope_ids_and_sends_no_pid() -> None:
    client = Recorder(mode="recipe")
    client.set_offset(41)
    assert client._delivery_connect_auth("/", {"t": 1}) == {"offset": 41, "t": 1}
    await client._delivery_connect_reply("/", {"sid": "s1"})
    await client._delivery_event("/", None, ["chat", {"id": 42, "data": "hi"}])
    assert client.offset == 42
    await client._delivery_event("/", None, ["chat", {"id": True, "data": "x"}])  # not an id
    await client._delivery_event("/", None, ["chat", {"id": 50, "data": "x", "more": 1}])  # not an envelope
    assert client.offset == 42
    assert client.dispatched[0] == (None, ["chat", {"id": 42, "data": "hi"}])  # passed as is
    client._delivery_namespace_down("/", final=True, reason="client disconnect")
    assert client._delivery_connect_auth("/", {}) == {"offset": 42}  # kept across disconnect()
    with pytest.raises(TypeError):
        client.set_offset(1.5)  # type: ignore[arg-type]


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.acks: list[Any] = []
        self.sending = asyncio.Event()

    async def __call__(self, event: str, data: Any, on_ack: Any) -> None:
        self.sent.append((event, data))
        self.acks.append(on_ack)
        self.sending.set()

    async def next_send(self) -> None:
        await asyncio.wait_for(self.sending.wait(), 10)
        self.sending.clear()


async def test_outbox_resends_after_a_disconnect_and_accepts_an_earlier_attempts_ack() -> None:
    sender = FakeSender()
    outbox = Outbox("/", sender)
    outbox.up()
    result = asyncio.ensure_future(outbox.put("ev", {"n": 1}, ack_timeout=60, retries=3))
    await sender.next_send()
    outbox.down()
    outbox.up()
    await sender.next_send()
    assert sender.sent == [("ev", {"n": 1}), ("ev", {"n": 1})]
    sender.acks[0]("late ack of the first attempt")
    assert await result == ("late ack of the first attempt",)
    assert len(outbox) == 0


async def test_outbox_keeps_order_and_waits_while_disconnected() -> None:
    sender = FakeSender()
    outbox = Outbox("/", sender)
    first = asyncio.ensure_future(outbox.put("a", 1, ack_timeout=60, retries=0))
    second = asyncio.ensure_future(outbox.put("b", 2, ack_timeout=60, retries=0))
    await asyncio.sleep(0)
    assert sender.sent == []  # down: nothing sent, nothing counted
    outbox.up()
    await sender.next_send()
    assert sender.sent == [("a", 1)]  # one in flight
    sender.acks[0](1)
    await sender.next_send()
    sender.acks[1]()
    assert await first == (1,)
    assert await second == ()


async def test_outbox_gives_up_after_retries_and_fails_on_close() -> None:
    sender = FakeSender()
    outbox = Outbox("/", sender)
    outbox.up()
    with pytest.raises(EmitTimeoutError) as info:
        await outbox.put("ev", None, ack_timeout=0.01, retries=2)
    assert info.value.attempts == 3
    assert len(sender.sent) == 3

    pending = asyncio.ensure_future(outbox.put("ev2", None, ack_timeout=60, retries=0))
    await sender.next_send()
    outbox.close("the client disconnected")
    with pytest.raises(ClientClosedError, match="the client disconnected"):
        await pending


async def test_outbox_drops_an_emit_whose_caller_gave_up() -> None:
    sender = FakeSender()
    outbox = Outbox("/", sender)
    outbox.up()
    gone = asyncio.ensure_future(outbox.put("gone", None, ack_timeout=60, retries=5))
    await sender.next_send()
    gone.cancel()
    kept = asyncio.ensure_future(outbox.put("kept", None, ack_timeout=60, retries=0))
    await sender.next_send()
    assert [event for event, _ in sender.sent] == ["gone", "kept"]
    sender.acks[1]("ok")
    assert await kept == ("ok",)


async def test_a_connect_that_returns_on_a_closed_transport_is_undone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Belt and braces behind the transport hook: python-socketio's connect() sets ``connected``
    without looking at the transport; the client checks it and raises, so a reconnection loop
    goes on instead of leaving a "connected" client on a dead transport."""

    async def connect_then_transport_gone(self: Any, url: Any, **kwargs: Any) -> None:
        self.connection_namespaces = ["/"]
        self.namespaces = {"/": "s1"}
        self.connected = True  # while self.eio.state is "disconnected"

    monkeypatch.setattr(socketio.AsyncClient, "connect", connect_then_transport_gone)
    client = DeliveryClient(handle_sigint=False)
    reasons: list[str] = []
    client.on("disconnect", reasons.append)
    for _ in range(2):  # an application connect(), then one as the reconnection loop makes it
        with pytest.raises(socketio.exceptions.ConnectionError, match="closed before the server answered"):
            await client.connect("http://127.0.0.1:9")
        assert client.connected is False
        assert client.namespaces == {}
        client._active = True
    assert reasons == ["transport error", "transport error"]
