"""The hostile-client suite: raw Engine.IO/Socket.IO clients that send what real clients never do.

Each case starts a fresh server in-process (python-socketio ``AsyncServer`` + ``Delivery``
under uvicorn, see ``hostile_server.py``) on a fresh store, attacks it, then checks that

(a) every CONNECT got an answer (CONNECT reply, CONNECT_ERROR, or a plain transport close
    for "busy" / "store unavailable") within ``CONNECT_DEADLINE`` seconds, and
(b) a well-behaved client on the same namespace got every event the app emitted, in order,
    once.

The default run is short and deterministic (hypothesis ``derandomize``, a few examples per
test). A longer, randomised run::

    HOSTILE_PROFILE=long HOSTILE_EXAMPLES=300 .venv/bin/python -m pytest tests/hostile -p no:randomly

(``make chaos`` runs it). Stores: ``memory://`` and SQLite always, Redis where redis-server is
installed (``-m "not redis"`` skips it).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

_EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "0") or 0)
settings.register_profile(
    "hostile-ci",
    max_examples=_EXAMPLES or 8,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a failing case can take seconds
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "hostile-long",
    max_examples=_EXAMPLES or 200,
    derandomize=False,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = "hostile-long" if os.environ.get("HOSTILE_PROFILE") == "long" else "hostile-ci"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hostile: the hostile-client suite (tests/hostile)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).startswith(HERE):
            item.add_marker(pytest.mark.hostile)


StoreFactory = Callable[[], str]

STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


def make_store_factory(kind: str, request: pytest.FixtureRequest, directory: Path) -> StoreFactory:
    """``factory()`` -> a URL of a new, empty store of ``kind`` (one per hypothesis example)."""
    if kind == "memory":
        return lambda: "memory://"
    if kind == "sqlite":
        return lambda: f"sqlite:///{directory / f'{uuid.uuid4().hex[:12]}.db'}"
    if kind == "redis":
        server: Any = request.getfixturevalue("redis_server")

        def redis_url() -> str:
            server.start()  # no-op when running
            return f"{server.url}?prefix=h{uuid.uuid4().hex[:12]}"

        return redis_url
    raise ValueError(kind)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_store_factory(store_kind, request, tmp_path)
