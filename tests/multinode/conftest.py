"""Fixtures for the multi-node tests: three Delivery nodes on one store, a balancer, clients.

``cluster``      nodes A, B, C, parametrized over the store setups (:mod:`mn_stores`):
                 ``redis`` (``Delivery(store="redis://...")`` + python-socketio's
                 ``AsyncRedisManager`` on the same Redis) and ``mongodb`` (SecantusDB +
                 ``AsyncRedisManager`` on a Redis of its own); a test may ask for others with
                 ``@on_stores(...)``, e.g. ``mongodb-nobus`` (SecantusDB, no client manager:
                 each node's log tailing is the only fan-out). One cluster per setup, for the
                 whole session; tests keep apart by using rooms of their own (``room``).
``lb``           a :class:`mn_balancer.Balancer` in front of the cluster's nodes (random routing).
``clients``      ``await clients(kind, name)``: a ``py`` client (the project's DeliveryClient) or a
                 ``js`` one (the official socket.io-client in Node; skipped when Node is missing,
                 outside CI), closed at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))  # e2e_node: the JS client driver

from e2e_node import NodeClient, node_available  # noqa: E402
from mn_balancer import Balancer  # noqa: E402
from mn_cluster import AnyClient, Cluster, JsClient, PyClient  # noqa: E402
from mn_stores import STORES  # noqa: E402
from redis_server import RedisServer  # noqa: E402

#: MN_LOG_LEVEL=INFO shows every recovery in the node logs printed for a failed test
LOG_LEVEL = ["--log-level", os.environ.get("MN_LOG_LEVEL", "WARNING")]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def print_logs_if_failed(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.logs())


@pytest.fixture(scope="session")
def redis_cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    redis_server.start()
    prefix = f"mn-{uuid.uuid4().hex[:10]}"
    cluster = Cluster(
        store=f"{redis_server.url}?prefix={prefix}", redis_manager=redis_server.url, extra=LOG_LEVEL
    )
    cluster.start_now()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def mongo_cluster(mongo_server: Any, redis_server_factory: Callable[..., RedisServer]) -> Iterator[Cluster]:
    """MongoDB store; python-socketio's AsyncRedisManager on a Redis of its own as the bus
    (its own: the redis cluster's nodes would share the manager's pub/sub channel)."""
    mongo_server.start()
    bus = redis_server_factory(persistent=False)
    cluster = Cluster(
        store=f"{mongo_server.url}/mn_{uuid.uuid4().hex[:10]}", redis_manager=bus.url, extra=LOG_LEVEL
    )
    cluster.start_now()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def mongo_nobus_cluster(mongo_server: Any) -> Iterator[Cluster]:
    """MongoDB store and no client manager."""
    mongo_server.start()
    cluster = Cluster(store=f"{mongo_server.url}/mn_{uuid.uuid4().hex[:10]}", extra=LOG_LEVEL)
    cluster.start_now()
    yield cluster
    cluster.close()


#: store setup (mn_stores) -> its session fixture
CLUSTERS = {"redis": "redis_cluster", "mongodb": "mongo_cluster", "mongodb-nobus": "mongo_nobus_cluster"}


@pytest.fixture(params=STORES)
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made: Cluster = request.getfixturevalue(CLUSTERS[request.param])
    made.start_now()  # a node an earlier test killed
    yield made
    print_logs_if_failed(request, made)


@pytest.fixture
async def lb(cluster: Cluster) -> AsyncIterator[Balancer]:
    async with Balancer.start(cluster.ports, seed=int(uuid.uuid4().int % 10_000)) as balancer:
        yield balancer


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


def skip_without_node() -> None:
    missing = node_available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[str, str], Awaitable[AnyClient]]]:
    """``await clients(kind, name)``: a ``py`` or ``js`` client (one Node process for all js ones)."""
    made: list[AnyClient] = []
    nodes: list[Any] = []

    async def factory(kind: str, name: str) -> AnyClient:
        client: AnyClient
        if kind == "js":
            if not nodes:
                skip_without_node()
                context = NodeClient.start()
                nodes.append((context, await context.__aenter__()))
            client = JsClient(nodes[0][1], name)
        else:
            client = PyClient(name)
        made.append(client)
        return client

    yield factory
    for client in made:
        with contextlib.suppress(Exception):
            await client.close()
    for context, _ in nodes:
        await context.__aexit__(None, None, None)
