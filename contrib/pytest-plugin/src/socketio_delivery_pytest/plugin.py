"""pytest fixtures for apps built on socketio-delivery (fixtures only, like pytest-redis).

Installed with ``pip install socketio-delivery-pytest``; pytest loads it by itself
(entry point ``pytest11``). Fixtures:

``delivery_store`` (async, needs pytest-asyncio)
    An opened store of the configured URL (default ``memory://``), closed after the test::

        async def test_persist(delivery_store):
            event = await delivery_store.persist("chat", {"text": "hi"})
            assert await delivery_store.fetch_since("chat", None) == [event]

``delivery_store_factory`` (async, needs pytest-asyncio)
    ``await delivery_store_factory(url=None, **options)`` opens any store (a URL,
    a config mapping, or ``None`` for the configured URL); every store it opened
    is closed after the test::

        async def test_two_stores(delivery_store_factory, tmp_path):
            db = await delivery_store_factory(f"sqlite:///{tmp_path}/events.db")
            mem = await delivery_store_factory("memory://", max_events=10)

``delivery_store_opener`` (sync, works without pytest-asyncio)
    ``delivery_store_opener(url=None, **options)`` returns an async context manager
    that opens the store in whatever event loop the test runs and closes it on exit::

        def test_without_pytest_asyncio(delivery_store_opener):
            async def main():
                async with delivery_store_opener() as store:
                    await store.persist("chat", {"text": "hi"})
            asyncio.run(main())

``delivery_server`` (async, needs pytest-asyncio)
    ``await delivery_server(app)`` serves the app under test under uvicorn on a free
    ``127.0.0.1`` port; ``app`` is a ``Delivery``, a ``socketio.AsyncServer``, an ASGI app,
    or a plain function ``create_app(store_url)`` that builds one on the configured store.
    The :class:`~socketio_delivery_pytest.app.DeliveryServer` it returns has ``.url``,
    ``.sio``, ``await .restart()`` (same port; the clients reconnect) and ``await .stop()``;
    every server is stopped after the test.

``delivery_client`` (async, needs pytest-asyncio)
    ``await delivery_client(server)`` gives a connected
    :class:`~socketio_delivery_pytest.app.DeliveryTestClient` (a ``DeliveryClient`` with fast
    reconnects that records what it receives); shut down after the test::

        async def test_my_client_misses_nothing_across_a_drop(delivery_server, delivery_client):
            server = await delivery_server(create_app)
            client = await delivery_client(server)
            await client.drop()
            await server.sio.emit("news", "while you were away")
            assert await client.wait_for("news") == ["while you were away"]

``delivery_store_url``
    The configured URL: ``--delivery-store-url`` on the command line first, then
    the ini option ``delivery_store_url``, else ``memory://``. ``{tmp_path}`` in
    the URL is replaced by the test's temporary directory, so
    ``--delivery-store-url 'sqlite:///{tmp_path}/events.db'`` gives every test a
    fresh database file. A URL that cannot be parsed, or whose scheme has no installed
    store, stops pytest at startup with one usage error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from socketio_delivery import ConfigurationError, EventStore, available_schemes, open_store
from socketio_delivery.config import parse_url
from socketio_delivery.registry import INSTALL_HINTS

from .app import DeliveryClientFactory, DeliveryServerFactory

__all__ = [
    "DEFAULT_URL",
    "DeliveryStoreFactory",
    "check_url",
    "delivery_client",
    "delivery_server",
    "delivery_store",
    "delivery_store_factory",
    "delivery_store_opener",
    "delivery_store_url",
]

DEFAULT_URL = "memory://"
OPTION = "--delivery-store-url"
INI = "delivery_store_url"

StoreConfig = str | Mapping[str, Any] | None
StoreOpener = Callable[..., contextlib.AbstractAsyncContextManager[EventStore]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("socketio-delivery", "socketio-delivery store fixtures")
    group.addoption(
        OPTION,
        dest="delivery_store_url",
        default=None,
        metavar="URL",
        help=f"store URL the delivery_store fixture opens (default: ini {INI}, else {DEFAULT_URL}); "
        "'{tmp_path}' is replaced by the test's temporary directory",
    )
    parser.addini(INI, help=f"store URL the delivery_store fixture opens (default {DEFAULT_URL})")


def configured_url(config: pytest.Config) -> str:
    """The URL selected by the command line, then the ini file, else ``memory://``."""
    url = config.getoption("delivery_store_url", default=None)
    if not url:
        url = config.getini(INI)
    return str(url) if url else DEFAULT_URL


def check_url(url: str) -> None:
    """Raise :class:`ConfigurationError` for a URL that cannot be parsed or has no installed store.

    Nothing is constructed or connected: a server that is down is the tests' business.
    """
    scheme = parse_url(url.replace("{tmp_path}", "/tmp")).scheme
    installed = available_schemes()
    if scheme in installed:
        return
    listed = ", ".join(installed) or "none"
    if scheme in INSTALL_HINTS:
        raise ConfigurationError(
            f"the store URL {url!r} needs an adapter that is not installed: "
            f"pip install '{INSTALL_HINTS[scheme]}' (installed schemes: {listed})"
        )
    raise ConfigurationError(f"no store is installed for the scheme {scheme!r}; installed schemes: {listed}")


def pytest_configure(config: pytest.Config) -> None:
    """A bad store URL is one usage error at startup, not an error in every test that uses it.

    A scheme added with ``socketio_delivery.register()`` must be registered when ``conftest.py``
    is imported (at module level) to be known here.
    """
    if config.getoption("help", default=False):
        return
    url = configured_url(config)
    try:
        check_url(url)
    except ConfigurationError as exc:
        source = OPTION if config.getoption("delivery_store_url", default=None) else f"ini {INI}"
        raise pytest.UsageError(f"{source}: {exc}") from None


@pytest.fixture
def delivery_store_url(request: pytest.FixtureRequest) -> str:
    """The store URL selected for this test run (``{tmp_path}`` filled in)."""
    url = configured_url(request.config)
    if "{tmp_path}" in url:
        tmp_path = request.getfixturevalue("tmp_path")
        url = url.replace("{tmp_path}", str(tmp_path))
    return url


class DeliveryStoreFactory:
    """Opens stores for one test and closes all of them afterwards.

    ``await factory(url=None, **options)``: ``url`` is a store URL, a config
    mapping ``{"url": ..., "options": {...}}``, or ``None`` for the configured URL.
    """

    def __init__(self, default_url: str) -> None:
        self.default_url = default_url
        self.stores: list[EventStore] = []

    async def __call__(self, url: StoreConfig = None, **options: Any) -> EventStore:
        store = open_store(self.default_url if url is None else url, **options)
        await store.open()
        self.stores.append(store)
        return store

    async def aclose(self) -> None:
        """Close every store opened here, newest first; the first error is raised after all closed."""
        errors: list[BaseException] = []
        while self.stores:
            store = self.stores.pop()
            try:
                await store.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def delivery_store_opener_for(default_url: str) -> StoreOpener:
    @contextlib.asynccontextmanager
    async def opener(url: StoreConfig = None, **options: Any) -> AsyncIterator[EventStore]:
        store = open_store(default_url if url is None else url, **options)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return opener


@pytest.fixture
def delivery_store_opener(delivery_store_url: str) -> StoreOpener:
    """``async with delivery_store_opener(url=None, **options) as store:`` in any event loop."""
    return delivery_store_opener_for(delivery_store_url)


try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the hook below explains
    _async_fixture = pytest.fixture  # type: ignore[assignment]

_ASYNC_FIXTURES = ("delivery_store", "delivery_store_factory", "delivery_server", "delivery_client")


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    """Fail with advice, not pytest's generic error, when our async fixtures have no async runner."""
    if fixturedef.argname in _ASYNC_FIXTURES and not request.config.pluginmanager.has_plugin("asyncio"):
        pytest.fail(
            f"the {fixturedef.argname} fixture is async and needs pytest-asyncio "
            "(pip install pytest-asyncio); without it use the delivery_store_opener fixture",
            pytrace=False,
        )


@_async_fixture
async def delivery_store_factory(delivery_store_url: str) -> AsyncIterator[DeliveryStoreFactory]:
    """``await delivery_store_factory(url=None, **options)``: an opened store, closed after the test."""
    factory = DeliveryStoreFactory(delivery_store_url)
    try:
        yield factory
    finally:
        await factory.aclose()


@_async_fixture
async def delivery_store(delivery_store_factory: DeliveryStoreFactory) -> EventStore:
    """An opened store of the configured URL (default ``memory://``), closed after the test."""
    return await delivery_store_factory()


@_async_fixture
async def delivery_server(delivery_store_url: str) -> AsyncIterator[DeliveryServerFactory]:
    """``await delivery_server(app)``: the app served on a free 127.0.0.1 port, stopped after the test.

    ``app`` is a ``Delivery``, a ``socketio.AsyncServer``, an ASGI app, or a plain function
    ``create_app(store_url)`` that builds one on the configured store (``memory://`` by default).
    The :class:`~socketio_delivery_pytest.app.DeliveryServer` has ``.url``, ``.sio``,
    ``await .restart()`` and ``await .stop()``.
    """
    factory = DeliveryServerFactory(delivery_store_url)
    try:
        yield factory
    finally:
        await factory.aclose()


@_async_fixture
async def delivery_client(delivery_server: DeliveryServerFactory) -> AsyncIterator[DeliveryClientFactory]:
    """``await delivery_client(server_or_url, **options)``: a connected client that records events.

    Fast reconnects by default; every client is shut down after the test, before the servers stop.
    ``await client.drop()`` cuts its transport (it reconnects and recovers by itself).
    """
    factory = DeliveryClientFactory()
    try:
        yield factory
    finally:
        await factory.aclose()
