"""Fixtures for the end-to-end tests: the Delivery test app in a subprocess, the JS client, a proxy.

``make_app(store=..., mode="asgi"|"aiohttp", extra=[...])``  starts tests/support/delivery_app.py
                          on a free port (waits for READY); stopped at the end of the test, its
                          log printed when the test failed. For tests that restart or kill it.
``use_app(mode=..., extra=...)``  the same, shared by the tests of a module that ask for the
                          same arguments (a SQLite store of its own); tests keep apart by
                          using rooms of their own (``room``). Starting Python with
                          python-socketio takes seconds on a busy machine: share when you can.
``room``                  a room name no other test uses.
``sqlite_url``            a durable SQLite store in the test's tmp dir (``sqlite:////abs/events.db``).
``node``                  a :class:`e2e_node.NodeClient` (the official socket.io-client in Node).
``proxy_factory``         ``await proxy_factory(port)``: a :class:`e2e_proxy.TcpProxy` to that port.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # e2e_node, e2e_proxy (importlib mode)

from delivery_app import DeliveryAppProcess
from e2e_node import NodeClient, node_available
from e2e_proxy import TcpProxy


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def make_app(request: pytest.FixtureRequest) -> Iterator[Callable[..., DeliveryAppProcess]]:
    apps: list[DeliveryAppProcess] = []

    def factory(**kwargs: Any) -> DeliveryAppProcess:
        app = DeliveryAppProcess(**kwargs)
        apps.append(app)
        app.start()
        return app

    yield factory
    for app in apps:
        app.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for app in apps:
            print(f"---- delivery_app log ({' '.join(app.command()[1:])})\n{app.log_tail()}")
    for app in apps:
        app.close()


class AppPool:
    """Apps shared by the tests of one module, one per set of arguments."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.apps: dict[tuple[str, tuple[str, ...]], DeliveryAppProcess] = {}

    def get(self, *, mode: str = "asgi", extra: tuple[str, ...] = ()) -> DeliveryAppProcess:
        key = (mode, tuple(extra))
        app = self.apps.get(key)
        if app is None:
            store = f"sqlite:///{self.directory / f'events-{len(self.apps)}.db'}"
            app = self.apps[key] = DeliveryAppProcess(store=store, mode=mode, extra=list(extra))
        app.start()  # no-op when running
        return app

    def close(self) -> None:
        for app in self.apps.values():
            app.close()


@pytest.fixture(scope="module")
def app_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppPool]:
    pool = AppPool(tmp_path_factory.mktemp("apps"))
    yield pool
    pool.close()


@pytest.fixture
def use_app(request: pytest.FixtureRequest, app_pool: AppPool) -> Iterator[Callable[..., DeliveryAppProcess]]:
    used: list[DeliveryAppProcess] = []

    def get(*, mode: str = "asgi", extra: tuple[str, ...] = ()) -> DeliveryAppProcess:
        app = app_pool.get(mode=mode, extra=extra)
        used.append(app)
        return app

    yield get
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for app in used:
            print(f"---- shared delivery_app log ({' '.join(app.command()[1:])})\n{app.log_tail()}")


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
async def node() -> AsyncIterator[NodeClient]:
    missing = node_available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    async with NodeClient.start() as client:
        yield client


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Callable[[int], Any]]:
    stack: list[Any] = []

    async def factory(port: int) -> TcpProxy:
        context = TcpProxy.start(port)
        proxy = await context.__aenter__()
        stack.append(context)
        return proxy

    yield factory
    for context in reversed(stack):
        await context.__aexit__(None, None, None)
