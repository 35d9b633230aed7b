"""Conformance tests for ids, lifecycle, sessions and idempotency keys."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ..errors import InvalidArgumentError, SessionBusyError
from ..registry import open_store
from ..store import MAX_KEY_LENGTH, EventStore, KeyState, Reservation
from ._base import ConformanceBase, UrlFactory, store_test, url_test
from ._support import assert_json_equal

__all__ = ["KeyTests", "StateTests"]

#: Short TTLs/leases for expiry tests and how long those tests sleep.
SHORT_TTL = 0.3
TTL_SLEEP = 0.7

_URL_SAFE = re.compile(r"[A-Za-z0-9_-]{22,}")

BAD_KEYS: list[Any] = ["", None, 42, b"key", "k" * (MAX_KEY_LENGTH + 1)]
BAD_TTLS: list[Any] = [0, -1, "1", None, True, float("nan")]
NOT_JSON: list[Any] = [{1, 2}, b"bytes", object(), {"k": object()}, 1j]


class StateTests(ConformanceBase):
    """Ids, lifecycle and sessions (claims, leases)."""

    # -- ids and lifecycle ------------------------------------------------------------------
    @store_test
    async def test_generate_id_is_unique_url_safe_and_long(self, store: EventStore) -> None:
        ids = [store.generate_id() for _ in range(2000)]
        assert len(set(ids)) == len(ids)
        for one in ids:
            assert isinstance(one, str)
            assert _URL_SAFE.fullmatch(one), (
                f"{one!r}: ids are >= 22 URL-safe characters (>= 128 random bits)"
            )

    @url_test
    async def test_open_and_close_are_idempotent(self, make_store_url: UrlFactory) -> None:
        store = open_store(make_store_url(), **self.store_options)
        await store.open()
        await store.open()
        event = await store.persist("s", 1)
        assert (await store.fetch_since("s", None))[0].offset == event.offset
        await store.close()
        await store.close()

    @url_test
    async def test_close_without_open_is_harmless(self, make_store_url: UrlFactory) -> None:
        store = open_store(make_store_url(), **self.store_options)
        await store.close()

    # -- sessions -----------------------------------------------------------------------------
    @store_test
    async def test_saved_session_is_claimed_exactly_once(self, store: EventStore) -> None:
        record = {"sid": "abc", "rooms": ["r1", "r2"], "offset": None, "n": 1.5, "ok": True}
        await store.save_session("pid-1", record, 30)
        got = await store.claim_session("pid-1")
        assert got is not None
        assert_json_equal(got, record)
        assert await store.claim_session("pid-1") is None

    @store_test
    async def test_claim_of_a_missing_session_is_none(self, store: EventStore) -> None:
        assert await store.claim_session("never-saved") is None

    @store_test
    async def test_session_expires_after_its_ttl(self, store: EventStore) -> None:
        await store.save_session("short", {"x": 1}, SHORT_TTL)
        await store.save_session("long", {"x": 2}, 30)
        await asyncio.sleep(TTL_SLEEP)
        assert await store.claim_session("short") is None
        assert await store.claim_session("long") == {"x": 2}

    @store_test
    async def test_save_session_replaces_the_earlier_record(self, store: EventStore) -> None:
        await store.save_session("k", {"v": 1}, SHORT_TTL)
        await store.save_session("k", {"v": 2}, 30)
        await asyncio.sleep(TTL_SLEEP)  # the new ttl applies too
        assert await store.claim_session("k") == {"v": 2}
        assert await store.claim_session("k") is None

    @store_test
    async def test_concurrent_claims_have_exactly_one_winner(self, store: EventStore) -> None:
        keys = [f"race-{i}" for i in range(10)]
        for key in keys:
            await store.save_session(key, {"key": key}, 30)
        results = await asyncio.gather(*(store.claim_session(k) for k in keys for _ in range(8)))
        for key in keys:
            winners = [r for r in results if r is not None and r["key"] == key]
            assert len(winners) == 1, f"{len(winners)} claims of {key!r} succeeded"
        assert sum(r is not None for r in results) == len(keys)

    @store_test
    async def test_session_keys_are_independent(self, store: EventStore) -> None:
        keys = ["a", "a*", "a%", "a_", "a?", "{a}", "[a]", "a:b", "ключ", "k" * MAX_KEY_LENGTH]
        for key in keys:
            await store.save_session(key, {"key": key}, 30)
        for key in reversed(keys):
            assert await store.claim_session(key) == {"key": key}

    @store_test
    async def test_leased_claim_hides_the_record_until_the_lease_runs_out(self, store: EventStore) -> None:
        record = {"sid": "abc", "rooms": {"r": "0"}}
        await store.save_session("leased", record, 30)
        await store.save_session("other", {"x": 1}, 30)
        got = await store.claim_session("leased", lease=SHORT_TTL)
        assert got is not None
        assert_json_equal(got, record)
        with pytest.raises(SessionBusyError):
            await store.claim_session("leased", lease=SHORT_TTL)
        with pytest.raises(SessionBusyError):
            await store.claim_session("leased")
        assert await store.claim_session("other", lease=30) == {"x": 1}  # keys are independent
        await asyncio.sleep(TTL_SLEEP)
        # the claimer never saved it back (it died): the record is claimable again, unchanged
        again = await store.claim_session("leased")
        assert again is not None
        assert_json_equal(again, record)
        assert await store.claim_session("leased") is None

    @store_test
    async def test_save_session_ends_a_lease(self, store: EventStore) -> None:
        await store.save_session("k", {"v": 1}, 30)
        assert await store.claim_session("k", lease=30) == {"v": 1}
        await store.save_session("k", {"v": 2}, 30)
        assert await store.claim_session("k", lease=30) == {"v": 2}
        await store.save_session("k", {"v": 3}, 30)
        assert await store.claim_session("k") == {"v": 3}
        assert await store.claim_session("k", lease=30) is None

    @store_test
    async def test_a_lease_does_not_outlive_the_record(self, store: EventStore) -> None:
        await store.save_session("k", {"v": 1}, SHORT_TTL)
        assert await store.claim_session("k", lease=30) == {"v": 1}
        await asyncio.sleep(TTL_SLEEP)
        assert await store.claim_session("k") is None
        await store.save_session("k", {"v": 2}, 30)  # a new record under the key is not leased
        assert await store.claim_session("k") == {"v": 2}

    @store_test
    async def test_concurrent_leased_claims_have_exactly_one_winner(self, store: EventStore) -> None:
        keys = [f"lease-race-{i}" for i in range(10)]
        for key in keys:
            await store.save_session(key, {"key": key}, 30)

        async def claim(key: str) -> Any:
            try:
                return await store.claim_session(key, lease=30)
            except SessionBusyError:
                return "busy"

        results = await asyncio.gather(*(claim(k) for k in keys for _ in range(8)))
        for n, key in enumerate(keys):
            got = results[n * 8 : n * 8 + 8]
            assert sorted(map(str, got)) == sorted(map(str, [{"key": key}] + ["busy"] * 7)), key

    @store_test
    async def test_leased_save_hides_the_record_until_the_lease_runs_out(self, store: EventStore) -> None:
        record = {"sid": "abc", "rooms": ["r"], "offset": None}
        await store.save_session("held", record, 30, lease=SHORT_TTL)
        await store.save_session("free", {"x": 1}, 30)
        with pytest.raises(SessionBusyError):
            await store.claim_session("held")
        with pytest.raises(SessionBusyError):
            await store.claim_session("held", lease=30)
        assert await store.claim_session("free") == {"x": 1}  # keys are independent
        await asyncio.sleep(TTL_SLEEP)
        # the saver stopped renewing (it died): the record is claimable, unchanged
        got = await store.claim_session("held")
        assert got is not None
        assert_json_equal(got, record)
        assert await store.claim_session("held") is None

    @store_test
    async def test_a_busy_claim_says_how_long_the_lease_lasts_when_it_knows(self, store: EventStore) -> None:
        await store.save_session("leased-for-a-while", {"n": 1}, 60, lease=5)
        with pytest.raises(SessionBusyError) as caught:
            await store.claim_session("leased-for-a-while")
        retry_after = caught.value.retry_after
        assert retry_after is None or 0 < retry_after <= 5.5  # None: the store cannot tell

    @store_test
    async def test_save_replaces_the_lease_of_a_leased_save(self, store: EventStore) -> None:
        await store.save_session("k", {"v": 1}, 30, lease=30)
        with pytest.raises(SessionBusyError):
            await store.claim_session("k")
        await store.save_session("k", {"v": 2}, 30)  # no lease: claimable at once
        assert await store.claim_session("k", lease=30) == {"v": 2}
        await store.save_session("k", {"v": 3}, 30, lease=30)  # replaces the claim's lease
        with pytest.raises(SessionBusyError):
            await store.claim_session("k")
        await store.save_session("k", {"v": 4}, 30, lease=SHORT_TTL)  # renewed, shorter
        await asyncio.sleep(TTL_SLEEP)
        assert await store.claim_session("k") == {"v": 4}
        assert await store.claim_session("k") is None

    @store_test
    async def test_leased_save_keeps_its_ttl(self, store: EventStore) -> None:
        await store.save_session("short", {"v": 1}, SHORT_TTL, lease=30)
        await store.save_session("long", {"v": 2}, 30, lease=SHORT_TTL)
        await asyncio.sleep(TTL_SLEEP)
        assert await store.claim_session("short") is None  # a lease does not outlive the record
        assert await store.claim_session("long") == {"v": 2}
        await store.save_session("short", {"v": 3}, 30)
        assert await store.claim_session("short") == {"v": 3}

    @store_test
    async def test_bad_session_arguments_raise_invalid_argument(self, store: EventStore) -> None:
        for key in BAD_KEYS:
            with pytest.raises(InvalidArgumentError):
                await store.save_session(key, {}, 30)
            with pytest.raises(InvalidArgumentError):
                await store.claim_session(key)
        for ttl in BAD_TTLS:
            with pytest.raises(InvalidArgumentError):
                await store.save_session("k", {}, ttl)
            if ttl is not None:
                with pytest.raises(InvalidArgumentError):
                    await store.claim_session("k", lease=ttl)
                with pytest.raises(InvalidArgumentError):
                    await store.save_session("k", {"v": 1}, 30, lease=ttl)
        not_records: list[Any] = [[1, 2], "text", None, *NOT_JSON]
        for record in not_records:
            with pytest.raises(InvalidArgumentError):
                await store.save_session("k", record, 30)
        assert await store.claim_session("k") is None


class KeyTests(ConformanceBase):
    """Idempotency keys: reserve, complete, release."""

    # -- idempotency keys ---------------------------------------------------------------------
    @store_test
    async def test_reserve_key_acquires_then_reports_pending(self, store: EventStore) -> None:
        first = await store.reserve_key("op-1", 30)
        assert isinstance(first, Reservation)
        assert first.state is KeyState.ACQUIRED
        again = await store.reserve_key("op-1", 30)
        assert again.state is KeyState.PENDING
        assert again.result is None

    @store_test
    async def test_completed_key_reports_done_with_its_result(self, store: EventStore) -> None:
        assert (await store.reserve_key("op", 30)).state is KeyState.ACQUIRED
        result = {"ok": True, "items": [1, 2.5, "три", None]}
        await store.complete_key("op", result, 30)
        done = await store.reserve_key("op", 30)
        assert done.state is KeyState.DONE
        assert_json_equal(done.result, result)
        plain_results: list[Any] = [None, 0, "", [], False]
        for plain in plain_results:
            key = self.unique("res")
            await store.reserve_key(key, 30)
            await store.complete_key(key, plain, 30)
            got = await store.reserve_key(key, 30)
            assert got.state is KeyState.DONE
            assert_json_equal(got.result, plain)

    @store_test
    async def test_released_key_can_be_acquired_again(self, store: EventStore) -> None:
        assert (await store.reserve_key("op", 30)).state is KeyState.ACQUIRED
        await store.release_key("op")
        assert (await store.reserve_key("op", 30)).state is KeyState.ACQUIRED
        await store.release_key("never-reserved")  # harmless

    @store_test
    async def test_release_of_a_completed_key_keeps_it_done(self, store: EventStore) -> None:
        await store.reserve_key("op", 30)
        await store.complete_key("op", "r", 30)
        await store.release_key("op")
        got = await store.reserve_key("op", 30)
        assert got.state is KeyState.DONE
        assert got.result == "r"

    @store_test
    async def test_key_whose_lease_ran_out_can_be_acquired_again(self, store: EventStore) -> None:
        assert (await store.reserve_key("short", SHORT_TTL)).state is KeyState.ACQUIRED
        assert (await store.reserve_key("long", 30)).state is KeyState.ACQUIRED
        await store.reserve_key("done", 30)
        await store.complete_key("done", 1, SHORT_TTL)
        await asyncio.sleep(TTL_SLEEP)
        assert (await store.reserve_key("short", 30)).state is KeyState.ACQUIRED
        assert (await store.reserve_key("long", 30)).state is KeyState.PENDING
        assert (await store.reserve_key("done", 30)).state is KeyState.ACQUIRED, "the result's ttl ran out"

    @store_test
    async def test_concurrent_reserves_have_exactly_one_winner(self, store: EventStore) -> None:
        keys = [f"race-{i}" for i in range(10)]
        results = await asyncio.gather(*(store.reserve_key(k, 30) for k in keys for _ in range(8)))
        for n, key in enumerate(keys):
            states = [r.state for r in results[n * 8 : (n + 1) * 8]]
            assert states.count(KeyState.ACQUIRED) == 1, f"{key!r}: {states}"
            assert set(states) <= {KeyState.ACQUIRED, KeyState.PENDING}

    @store_test
    async def test_bad_key_arguments_raise_invalid_argument(self, store: EventStore) -> None:
        for key in BAD_KEYS:
            with pytest.raises(InvalidArgumentError):
                await store.reserve_key(key, 30)
            with pytest.raises(InvalidArgumentError):
                await store.complete_key(key, 1, 30)
            with pytest.raises(InvalidArgumentError):
                await store.release_key(key)
        for ttl in BAD_TTLS:
            with pytest.raises(InvalidArgumentError):
                await store.reserve_key("k", ttl)
            with pytest.raises(InvalidArgumentError):
                await store.complete_key("k", 1, ttl)
        await store.reserve_key("k", 30)
        for result in NOT_JSON:
            with pytest.raises(InvalidArgumentError):
                await store.complete_key("k", result, 30)
        assert (await store.reserve_key("k", 30)).state is KeyState.PENDING
