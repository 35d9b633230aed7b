"""One test per defect of issue 10 that a hostile client (or a store fault) can trigger.

Each proves a behaviour the issue requires and names its item; each failed before its fix
(they were strict xfails until the fixes landed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from delay_proxy import DelayProxy
from hostile_raw import RawClient
from hostile_server import CONNECT_DEADLINE, EMIT_DEADLINE, Harness, serve
from socketio_delivery import StoreError
from socketio_delivery.wire import RESYNC_EVENT, persist_emit

from conftest import STORES, make_store_factory

StoreFactory = Callable[[], str]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def connected(
    h: Harness, auth: Any = None, *, port: int | None = None
) -> tuple[RawClient, dict[str, Any]]:
    client = await h.raw(port)
    answer = await client.connect({} if auth is None else auth, deadline=CONNECT_DEADLINE)
    assert answer.kind == "connect", answer
    return client, answer.data


def with_counter(offset: str, counter: int) -> str:
    """``offset`` of the same stream and epoch with its last (hex) counter replaced by ``counter``."""
    head, _, tail = offset.rpartition("-")
    return f"{head}-{format(counter, 'x').zfill(len(tail))}"


async def stored_events(h: Harness, event: str) -> list[Any]:
    events = await h.delivery.store.fetch_since("/", None, limit=1000)
    return [e for e in events if e.data.get("e") == event]


# -- item 1: a poison event ---------------------------------------------------------------------


async def test_an_event_that_cannot_be_sent_is_refused_at_emit_and_not_stored(
    new_store: StoreFactory,
) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        await h.tick()
        hostile, _ = await connected(h)
        ack = await hostile.call(["relay", nested(500)], timeout=EMIT_DEADLINE + 1)
        assert ack is not None, "no ack: sio.emit of a poison event blocked"
        assert "refused" in ack[0], f"sio.emit of a poison event did not raise: {ack}"
        assert await stored_events(h, "relayed") == [], "the refused event was persisted"
        await h.tick()
        await h.tick()
        await h.check_observer(observer)


async def test_a_stored_event_that_cannot_be_sent_is_skipped_and_delivery_goes_on(
    new_store: StoreFactory,
) -> None:
    """Data written by an older version, by ``Emitter`` or by hand: delivery never stalls on it."""
    async with serve(new_store()) as h:
        observer = await h.observer()
        sleeper, reply = await connected(h)  # will recover from an offset before the poison
        await h.tick()
        assert await sleeper.wait_for(lambda: len(sleeper.events()) >= 1, EMIT_DEADLINE)
        offset = sleeper.events()[-1][-1]
        await sleeper.close()
        await persist_emit(h.delivery.store, "/", "relayed", [nested(500)])
        await h.tick()
        await h.tick()
        await h.check_observer(observer)
        again = await h.raw()
        answer = await again.connect({"pid": reply["pid"], "offset": offset}, deadline=CONNECT_DEADLINE)
        assert answer.kind in ("connect", "closed"), answer


# -- item 2: every connect ends, promptly -------------------------------------------------------

COUNTERS = [
    pytest.param(2**63 - 1, id="2^63-1"),
    pytest.param(2**63, id="2^63"),
    pytest.param(2**64, id="2^64"),
    pytest.param(2**64 + 1, id="2^64+1"),
]


def _counter_cases() -> list[Any]:
    cases = []
    for store in STORES:
        for counter in COUNTERS:
            kind = store.values[0]
            marks = list(store.marks)
            cases.append(pytest.param(kind, counter.values[0], marks=marks, id=f"{kind}-{counter.id}"))
    return cases


@pytest.mark.parametrize(("kind", "counter"), _counter_cases())
async def test_a_reconnect_with_a_huge_offset_counter_gets_an_answer(
    kind: str, counter: int, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    async with serve(make_store_factory(kind, request, tmp_path)()) as h:
        observer = await h.observer()
        client, reply = await connected(h)
        await h.tick()
        assert await client.wait_for(lambda: len(client.events()) >= 1, EMIT_DEADLINE)
        offset = client.events()[-1][-1]
        await client.close()
        again = await h.raw()
        answer = await again.connect(
            {"pid": reply["pid"], "offset": with_counter(offset, counter)}, deadline=CONNECT_DEADLINE
        )
        if answer.kind == "connect":
            assert answer.data["sid"] != reply["sid"], (
                "an offset ahead of the stream was accepted: the client would skip every event up to it"
            )
        await h.tick()
        await h.check_observer(observer)


@pytest.mark.parametrize(
    "fields",
    [
        {"pid": "\ud800abc"},
        {"pid": "\udfff", "offset": "x"},
        {"pid": "abc\ud83d"},
    ],
    ids=["pid", "pid-offset", "pid-tail"],
)
async def test_a_lone_surrogate_in_the_pid_gets_an_answer(
    new_store: StoreFactory, fields: dict[str, Any]
) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        client = await h.raw()
        answer = await client.connect(fields, deadline=CONNECT_DEADLINE)
        assert answer.kind in ("connect", "error", "closed")
        await h.tick()
        await h.check_observer(observer)


@pytest.mark.parametrize(
    "text", ['{"pid":', "[1,2", "{}}", '{"a":' * 40], ids=["open", "list", "extra", "deep"]
)
@pytest.mark.parametrize("store_kind", ["memory"])  # the store plays no part
async def test_a_connect_that_is_not_json_gets_an_answer(new_store: StoreFactory, text: str) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        client = await h.raw()
        answer = await client.connect(text, deadline=CONNECT_DEADLINE)
        assert answer.kind in ("connect", "error", "closed")
        await h.tick()
        await h.check_observer(observer)


async def test_a_lone_surrogate_in_the_offset_gets_an_answer(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        _, reply = await connected(h)
        for fields in ({"pid": reply["pid"], "offset": "\ud800abc"}, {"offset": "\udc00-0000"}):
            client = await h.raw()
            answer = await client.connect(fields, deadline=CONNECT_DEADLINE)
            assert answer.kind in ("connect", "error", "closed")
        await h.tick()
        await h.check_observer(observer)


# -- item 3: a connected session is never taken ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.9, 2.0], ids=["0.9s", "2s"])
async def test_a_slow_client_keeps_its_session_when_its_pid_is_presented_elsewhere(delay: float) -> None:
    async with serve("memory://") as h, DelayProxy.start(h.port, delay) as proxy:
        observer = await h.observer()
        slow = await RawClient.open(proxy.port, timeout=10 + 4 * delay)
        h.clients.append(slow)
        answer = await slow.connect(
            {"rooms": ["r"], "data": {"who": "slow"}}, deadline=CONNECT_DEADLINE + 4 * delay
        )
        assert answer.kind == "connect"
        victim = answer.data
        await h.tick()
        for _ in range(2):  # "after two tries"
            thief = await h.raw()
            got = await thief.connect({"pid": victim["pid"]}, deadline=CONNECT_DEADLINE + 2)
            assert not (got.kind == "connect" and got.data.get("sid") == victim["sid"]), (
                "another connection presenting the pid took the session of a live (slow) client"
            )
        await h.tick()
        await h.check_observer(observer)
        await h.check_observer(slow, timeout=8 + 4 * delay)


# -- item 4: continuity is never broken silently ------------------------------------------------


@pytest.mark.redis
async def test_a_wiped_store_tells_connected_clients_and_delivery_resumes(redis_server: Any) -> None:
    import redis.asyncio as aioredis

    redis_server.start()
    prefix = f"h{uuid.uuid4().hex[:12]}"
    async with serve(f"{redis_server.url}?prefix={prefix}") as h:
        observer = await h.observer()
        await h.tick()
        await h.tick()
        client = aioredis.from_url(redis_server.url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            assert keys
            await client.delete(*keys)
        finally:
            await client.aclose()
        after = [await h.tick() for _ in range(3)]
        got = await observer.wait_for(
            lambda: (
                any(e[0] == RESYNC_EVENT for e in observer.events())
                and set(after) <= {e[1].get("id") for e in observer.events() if e[0] == "tick"}
            ),
            EMIT_DEADLINE + 3,
        )
        resyncs = [e for e in observer.events() if e[0] == RESYNC_EVENT]
        ticks = [e[1]["id"] for e in observer.events() if e[0] == "tick"]
        assert got, f"after the wipe: resyncs {resyncs}, ticks {ticks} (emitted {h.emitted})"
        assert resyncs[0][1] == {"reason": "epoch changed"}
        await h.check_observer(observer)


# -- item 5: reserved inbound event names -------------------------------------------------------

RESERVED = [
    ["disconnect", "transport close"],
    ["disconnect", ["x"]],
    ["connect", {}, {"user": "root"}],
    ["connect_error", {"message": "x"}],
    [RESYNC_EVENT, {"reason": "x"}],
]


@pytest.mark.parametrize("event", RESERVED, ids=[f"{e[0]}-{i}" for i, e in enumerate(RESERVED)])
async def test_reserved_event_names_from_a_client_are_never_dispatched(
    new_store: StoreFactory, event: list[Any]
) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        client, reply = await connected(h, {"rooms": ["mine"]})
        calls = (len(h.connect_calls), len(h.disconnect_calls), len(h.reserved_calls))
        await client.send_event(event)
        await client.send_event(event, ack=True)
        assert await client.call(["echo", "alive"]) == ["alive"], "the socket stopped working"
        assert (len(h.connect_calls), len(h.disconnect_calls), len(h.reserved_calls)) == calls, (
            f"a client's {event[0]!r} event ran the app's handler"
        )
        thief = await h.raw()
        got = await thief.connect({"pid": reply["pid"]}, deadline=CONNECT_DEADLINE)
        assert not (got.kind == "connect" and got.data.get("sid") == reply["sid"]), (
            "the session of a connected client became claimable"
        )
        await h.tick()
        await h.check_observer(observer)
        await h.check_observer(client)


# -- item 6: processed once, whatever the ack ---------------------------------------------------


async def test_an_idempotent_handler_acking_bytes_runs_once(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        client, _ = await connected(h)
        for _ in range(3):
            await client.call(["work", {"idempotencyKey": "k-bytes", "bytes": True}])
        assert h.runs.get("k-bytes", 0) <= 1, f"the handler ran {h.runs['k-bytes']} times for one key"


# -- item 7: every store call is bounded in time --------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
async def test_a_paused_store_neither_blocks_emits_nor_leaves_connects_unanswered(
    redis_server_factory: Callable[..., Any],
) -> None:
    redis = redis_server_factory(persistent=False)
    async with serve(redis.url) as h:
        observer = await h.observer()
        await h.tick()
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            client = await h.raw()
            answer = await client.connect({}, deadline=10.0)
            assert answer.kind in ("connect", "error", "closed")
            assert answer.seconds < 10.0
            with pytest.raises(StoreError):
                await asyncio.wait_for(h.sio.emit("tick", {"id": -1}), 10.0)
            assert time.monotonic() - started < 20.0
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        await h.tick()
        await h.check_observer(observer, timeout=15.0)


# -- item 8: bytes are bounded ----------------------------------------------------------------------


async def test_an_event_over_the_size_limit_is_refused_at_emit(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        observer = await h.observer()
        with pytest.raises(ValueError):
            await h.sio.emit("relayed", {"id": -1, "data": "x" * (1024 * 1024 + 1)})
        assert await stored_events(h, "relayed") == []
        await h.tick()
        await h.check_observer(observer)


async def test_an_idempotency_result_over_the_size_limit_is_not_stored(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        client, _ = await connected(h)
        big = "y" * (1024 * 1024 + 1)
        payload = {"idempotencyKey": "k-big", "ack_size": len(big)}
        acks = [await client.call(["work", payload], timeout=10) for _ in range(2)]
        # over the limit: a clear error at ack time, never the oversized result as if it were recorded
        assert all(big not in str(ack) for ack in acks), "an oversized result was acked as if recorded"


# -- item 10: smaller defects --------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["memory"])  # the store plays no part
async def test_publish_refuses_reserved_event_names(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        for name in ("disconnect", "connect", "connect_error", RESYNC_EVENT):
            with pytest.raises(ValueError):
                await h.delivery.publish(name, {"x": 1})
        assert await h.delivery.store.fetch_since("/", None, limit=10) == []


@pytest.mark.parametrize("store_kind", ["memory"])  # the store plays no part
async def test_the_invalid_key_ack_cannot_be_changed_by_the_app(new_store: StoreFactory) -> None:
    async with serve(new_store()) as h:
        guard = h.delivery._guard
        assert guard is not None

        async def handler() -> Any:
            return None

        first = await guard.run("id", "/", "work", "", handler)
        first["error"] = "changed"
        second = await guard.run("id", "/", "work", "", handler)
        assert second == {"error": "invalid idempotency key"}


async def test_a_reopened_delivery_keeps_renewing_the_leases_of_connected_sessions(tmp_path: Any) -> None:
    async with serve(f"sqlite:///{tmp_path / 'e.db'}", session_lease=1.0) as h:
        client, reply = await connected(h)
        await h.delivery.close()
        await h.delivery.open()
        await asyncio.sleep(2.5)  # more than the lease: only renewals keep it locked
        thief = await h.raw()
        got = await thief.connect({"pid": reply["pid"]}, deadline=CONNECT_DEADLINE)
        assert not (got.kind == "connect" and got.data.get("sid") == reply["sid"]), (
            "a connected session was handed to another connection"
        )
        assert not client.closed
