"""Unit tests of :mod:`socketio_delivery.dedup`: processed-once client emits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from socketio_delivery.dedup import MAX_IDEMPOTENCY_KEY_LENGTH, IdempotencyGuard
from socketio_delivery.errors import InvalidArgumentError, StoreError, StoreUnavailableError
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.settings import Settings
from socketio_delivery.store import KeyState, Reservation

NOT_HANDLED = object()


class Handler:
    """A handler that counts its runs and returns ``result`` (or raises ``error``)."""

    def __init__(self, result: Any = "ok", error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.runs = 0

    async def __call__(self) -> Any:
        self.runs += 1
        if self.error is not None:
            raise self.error
        return self.result


class DownStore(MemoryEventStore):
    async def reserve_key(self, key: str, lease: float) -> Reservation:
        raise StoreUnavailableError("down")


class StoredResult(MemoryEventStore):
    """Every key is DONE with ``stored`` (a record as an earlier release wrote it)."""

    def __init__(self, stored: Any) -> None:
        super().__init__()
        self.stored = stored

    async def reserve_key(self, key: str, lease: float) -> Reservation:
        return Reservation(KeyState.DONE, self.stored)


def guard(store: MemoryEventStore | None = None, **kwargs: Any) -> IdempotencyGuard:
    return IdempotencyGuard(store or MemoryEventStore(), not_handled=NOT_HANDLED, **kwargs)


async def test_a_keyed_emit_runs_once_and_retries_get_the_recorded_ack() -> None:
    g, handler = guard(), Handler({"n": 1})
    assert await g.run("alice", "/", "pay", "k1", handler) == {"n": 1}
    assert await g.run("alice", "/", "pay", "k1", handler) == {"n": 1}
    assert handler.runs == 1


async def test_keys_are_scoped_by_identity_namespace_and_event() -> None:
    g, handler = guard(), Handler()
    for identity, namespace, event in [("a", "/", "e"), ("b", "/", "e"), ("a", "/x", "e"), ("a", "/", "f")]:
        await g.run(identity, namespace, event, "same", handler)
    assert handler.runs == 4


@pytest.mark.parametrize("key", [5, "", "k" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1), None, ["k"]])
async def test_an_invalid_key_is_refused_without_running_the_handler(key: Any) -> None:
    g, handler = guard(), Handler()
    assert await g.run("a", "/", "e", key, handler) == {"error": "invalid idempotency key"}
    assert handler.runs == 0


async def test_the_longest_key_is_accepted() -> None:
    g, handler = guard(), Handler()
    assert await g.run("a", "/", "e", "k" * MAX_IDEMPOTENCY_KEY_LENGTH, handler) == "ok"


async def test_a_retry_during_the_first_run_waits_for_its_result() -> None:
    g, gate, runs = guard(), asyncio.Event(), []

    async def slow() -> str:
        runs.append(1)
        await gate.wait()
        return "first"

    first = asyncio.create_task(g.run("a", "/", "e", "k", slow))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(g.run("a", "/", "e", "k", slow))
    await asyncio.sleep(0.05)
    assert not second.done()
    gate.set()
    assert list(await asyncio.gather(first, second)) == ["first", "first"]
    assert runs == [1]


async def test_a_handler_that_raises_releases_the_key_for_a_retry() -> None:
    g = guard()
    with pytest.raises(RuntimeError):
        await g.run("a", "/", "e", "k", Handler(error=RuntimeError("boom")))
    retry = Handler("second")
    assert await g.run("a", "/", "e", "k", retry) == "second"
    assert retry.runs == 1


async def test_a_cancelled_handler_releases_the_key() -> None:
    g = guard()
    task = asyncio.create_task(g.run("a", "/", "e", "k", Handler(error=asyncio.CancelledError())))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await g.run("a", "/", "e", "k", Handler("again")) == "again"


async def test_not_handled_is_not_recorded() -> None:
    g = guard()
    assert await g.run("a", "/", "e", "k", Handler(NOT_HANDLED)) is NOT_HANDLED
    retry = Handler("now")
    assert await g.run("a", "/", "e", "k", retry) == "now"


async def test_an_ack_that_is_not_json_is_sent_but_not_recorded() -> None:
    g, odd = guard(), object()
    assert await g.run("a", "/", "e", "k", Handler(odd)) is odd
    retry = Handler("json")
    assert await g.run("a", "/", "e", "k", retry) == "json"
    assert retry.runs == 1


async def test_a_store_failure_answers_not_handled_without_running_the_handler() -> None:
    g, handler = guard(DownStore()), Handler()
    assert await g.run("a", "/", "e", "k", handler) is NOT_HANDLED
    assert handler.runs == 0


@pytest.mark.parametrize(
    "ack",
    [
        b"\x00\x01",
        (b"a", {"x": b"b", "y": [1, bytearray(b"c")]}),
        ("text", 1),
        (),
        None,
        [b"in a list"],
        {"plain": True},
    ],
)
async def test_binary_acks_round_trip(ack: Any) -> None:
    g = guard()
    first = await g.run("a", "/", "e", "k", Handler(ack))
    again = await g.run("a", "/", "e", "k", Handler("not run"))
    assert first is ack
    assert again == ack  # a bytearray comes back as bytes, which compares equal
    assert type(again) is type(ack)


async def test_an_ack_over_max_result_bytes_is_an_error_for_every_retry() -> None:
    g, handler = guard(max_result_bytes=100), Handler("x" * 200)
    first = await g.run("a", "/", "e", "k", handler)
    assert first["error"] == "ack too large"
    assert first["max"] == 100
    assert first["bytes"] > 100
    assert await g.run("a", "/", "e", "k", handler) == first
    assert handler.runs == 1


@pytest.mark.parametrize(
    ("stored", "ack"),
    [
        ({"v": {"ok": 1}}, {"ok": 1}),
        ({"v": None}, None),
        ({"t": True, "v": [1, 2]}, (1, 2)),
        ({"t": True, "v": None}, ()),
        ({"r": ["new"], "t": False}, "new"),
        ({"r": [], "t": False}, None),
        ("bare", "bare"),
    ],
)
async def test_old_0_1_ack_records_still_decode(stored: Any, ack: Any) -> None:
    g, handler = guard(StoredResult(stored)), Handler()
    assert await g.run("a", "/", "e", "k", handler) == ack
    assert handler.runs == 0


async def test_dispatch_runs_unkeyed_emits_straight_through() -> None:
    g, calls = guard(), []

    async def trigger(event: str, namespace: str, *args: Any) -> Any:
        calls.append((event, namespace, args))
        return len(calls)

    async def identity_of(sid: str, namespace: str) -> str:
        raise AssertionError("not asked for unkeyed emits")

    assert await g.dispatch(trigger, "e", "/", ("sid1",), identity_of) == 1
    assert await g.dispatch(trigger, "e", "/", ("sid1", "plain"), identity_of) == 2
    assert await g.dispatch(trigger, "e", "/", ("sid1", {"other": 1}), identity_of) == 3
    assert calls[1] == ("e", "/", ("sid1", "plain"))


async def test_dispatch_scopes_keyed_emits_by_the_identity_of_the_sender() -> None:
    g, calls = guard(), []

    async def trigger(event: str, namespace: str, *args: Any) -> Any:
        calls.append(args)
        return "ack"

    async def identity_of(sid: str, namespace: str) -> str:
        return "same-person"  # two sids, one client identity (a recovered session)

    emit = {"idempotencyKey": "k", "v": 1}
    assert await g.dispatch(trigger, "e", "/", ("sid1", emit), identity_of) == "ack"
    assert await g.dispatch(trigger, "e", "/", ("sid2", emit), identity_of) == "ack"
    assert calls == [("sid1", emit)]


def test_configured_follows_the_settings() -> None:
    store = MemoryEventStore()
    assert IdempotencyGuard.configured(store, Settings(idempotency_key=None), NOT_HANDLED) is None
    settings = Settings(idempotency_key="key", idempotency_ttl=5, max_result_bytes=10)
    g = IdempotencyGuard.configured(store, settings, NOT_HANDLED)
    assert g is not None
    assert (g.field, g.ttl, g.max_result_bytes, g.not_handled) == ("key", 5, 10, NOT_HANDLED)
    assert g.key_of(({"key": "abc"},)) == "abc"
    assert g.key_of(("abc",)) is None
    assert g.key_of(()) is None


async def test_a_completed_key_is_kept_for_the_ttl_only() -> None:
    g = guard(ttl=0.05)
    await g.run("a", "/", "e", "k", Handler("one"))
    await asyncio.sleep(0.08)
    assert await g.run("a", "/", "e", "k", Handler("two")) == "two"


class FailingRelease(MemoryEventStore):
    async def release_key(self, key: str) -> None:
        raise StoreError("release failed")


async def test_a_handler_error_is_not_hidden_by_a_failing_release() -> None:
    """The app's exception is what surfaces; the store error is logged (the lease frees the key)."""
    g = guard(FailingRelease())
    with pytest.raises(RuntimeError, match="boom"):
        await g.run("a", "/", "e", "k", Handler(error=RuntimeError("boom")))


async def test_a_delivery_error_raised_by_the_handler_propagates() -> None:
    g = guard()
    with pytest.raises(InvalidArgumentError, match="from the app"):
        await g.run("a", "/", "e", "k", Handler(error=InvalidArgumentError("from the app")))
