"""The pytest plugin, run the way users run it: in a fresh pytest session made by ``pytester``."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# The inner sessions run outside this repo's ini; strict mode is pytest-asyncio's default.
ASYNC = "import pytest\npytestmark = pytest.mark.asyncio\n"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)


def test_delivery_store_is_an_opened_memory_store_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ASYNC
        + """
from socketio_delivery import EventStore
from socketio_delivery.memory import MemoryEventStore

async def test_it(delivery_store, delivery_store_url):
    assert delivery_store_url == "memory://"
    assert isinstance(delivery_store, EventStore)
    assert type(delivery_store) is MemoryEventStore
    event = await delivery_store.persist("s", {"n": 1}, rooms=["r"])
    assert await delivery_store.fetch_since("s", None) == [event]
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_each_test_gets_a_fresh_store(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        ASYNC
        + """
import pytest

@pytest.mark.parametrize("n", [1, 2])
async def test_it(delivery_store, n):
    assert await delivery_store.fetch_since("s", None) == []
    await delivery_store.persist("s", {"n": n})
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_factory_opens_any_url_and_closes_every_store(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from socketio_delivery import register
from socketio_delivery.memory import MemoryEventStore

CLOSED = []

class Tracked(MemoryEventStore):
    async def close(self):
        CLOSED.append(self)
        await super().close()

@pytest.fixture(autouse=True)
def tracked_scheme():
    register("tracked", lambda url, **options: Tracked.from_url("memory://", **options))
"""
    )
    pytester.makepyfile(
        ASYNC
        + """
from conftest import CLOSED

async def test_open(delivery_store_factory, tmp_path):
    a = await delivery_store_factory("tracked://", max_events=5)
    b = await delivery_store_factory({"url": "tracked://", "options": {"max_age": 60}})
    assert a.options.max_events == 5 and b.options.max_age == 60
    c = await delivery_store_factory("memory://")
    await c.persist("s", {"n": 1})
    assert len(await c.fetch_since("s", None)) == 1
    assert await a.fetch_since("s", None) == []
    assert CLOSED == []

def test_closed_after_the_test():
    assert len(CLOSED) == 2
"""
    )
    run(pytester).assert_outcomes(passed=2)


def test_command_line_url_selects_the_store_before_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndelivery_store_url = memory://?max_events=7\n")
    pytester.makeconftest(
        """
import pytest
from socketio_delivery import register
from socketio_delivery.memory import MemoryEventStore

class Probe(MemoryEventStore):
    pass

def factory(url, **options):
    store = Probe.from_url("memory://", **options)
    store.url = url
    return store

# at import time, so that the URL check at startup knows the scheme
register("probe", factory)
"""
    )
    pytester.makepyfile(
        ASYNC
        + """
async def test_it(delivery_store, delivery_store_url, tmp_path):
    assert delivery_store_url == f"probe:///{tmp_path}/events.db?max_events=3"
    assert type(delivery_store).__name__ == "Probe"
    assert delivery_store.url == delivery_store_url
"""
    )
    result = run(pytester, "--delivery-store-url", "probe:///{tmp_path}/events.db?max_events=3")
    result.assert_outcomes(passed=1)


def test_ini_url_is_used_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndelivery_store_url = memory://?max_events=7\n")
    pytester.makepyfile(
        ASYNC
        + """
async def test_it(delivery_store):
    assert delivery_store.options.max_events == 7
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_opener_works_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import asyncio

def test_it(delivery_store_opener):
    async def main():
        async with delivery_store_opener() as store:
            event = await store.persist("s", {"n": 1})
            return await store.fetch_since("s", None) == [event]
    assert asyncio.run(main())
"""
    )
    run(pytester, "-p", "no:asyncio").assert_outcomes(passed=1)


def test_async_fixtures_without_pytest_asyncio_say_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_it(delivery_store):
    pass
"""
    )
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs pytest-asyncio*delivery_store_opener*"])


def test_help_lists_the_option(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--delivery-store-url=URL*", "*delivery_store_url*"])


def test_stores_are_closed_when_the_test_fails_and_auto_mode_works(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makeconftest(
        """
import pytest
from socketio_delivery import register
from socketio_delivery.memory import MemoryEventStore

CLOSED = []

class Tracked(MemoryEventStore):
    async def close(self):
        CLOSED.append(self)

@pytest.fixture(autouse=True)
def tracked_scheme():
    register("tracked", lambda url, **options: Tracked.from_url("memory://", **options))
"""
    )
    pytester.makepyfile(
        """
from conftest import CLOSED

async def test_fails(delivery_store_factory):
    await delivery_store_factory("tracked://")
    raise AssertionError("boom")

def test_closed_anyway():
    assert len(CLOSED) == 1
"""
    )
    run(pytester).assert_outcomes(passed=1, failed=1)
