"""Session fixtures for a real MongoDB-compatible server, SecantusDB (see adapters/mongodb).

No ``mongod`` can be installed on the CI machines, so the tests run against SecantusDB
(PyPI ``secantusdb``, pinned in the dev dependencies), a MongoDB-wire-compatible server on
WiredTiger. It is started lazily, the first time a test asks for it, in a process of its own
(``secantus.SecantusDBServer``, as ``secantusd-py --standalone`` would run it: drivers see a
STANDALONE server, no replica set, no change streams, no transactions) on a free loopback
port, and stopped at the end of the session (finalizer + atexit; on Linux the server also gets
SIGTERM if the test process dies). Its TTL monitor runs every second (mongod: every 60 s) so
TTL indexes can be observed in a test; ``secantusd-py`` 0.7.0b3 ignores the
``ttl_sweep_seconds`` config key, hence the small launcher instead of the command.

Fixtures:

``mongo_server``          the shared :class:`MongoServer` (``.url``, ``.stop()``, ``.start()``,
                          ``.restart()``); in-memory storage (``:memory:``).
``mongo_server_url``      its URL, ``mongodb://127.0.0.1:PORT``.
``mongo_url``             per test: a new database on the shared server
                          (``mongodb://127.0.0.1:PORT/t_<hex>``): a new, empty store.
``mongo_server_factory``  ``factory(persistent=False)`` starts a private server for tests
                          that stop or restart it (``persistent=True``: storage in a temp
                          dir, kept across restarts); all are stopped at session end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
from processes import ChildProcess, closing_children, free_port

__all__ = ["MongoServer"]

#: Runs the server in its own process: argv = host, port, storage path, TTL sweep seconds.
_LAUNCHER = """
import signal, sys
from secantus.server import SecantusDBServer

host, port, storage, ttl = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
server = SecantusDBServer(
    host=host, port=port, storage_path=storage, replica_set_name=None,
    enable_test_commands=False, ttl_sweep_seconds=ttl,
)

def stop(signum, frame):
    server.stop()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
server.start()
server.wait()
"""


class MongoServer(ChildProcess):
    """One SecantusDB server process on 127.0.0.1, restartable on the same port (and data).

    ::

        server = MongoServer(persistent=True)
        server.start()
        server.url         # 'mongodb://127.0.0.1:PORT'
        server.stop()      # graceful (SIGTERM, storage checkpointed); kill=True: SIGKILL
        server.start()     # same port; same data when persistent
    """

    def __init__(self, *, persistent: bool = False, ttl_sweep: float = 1.0) -> None:
        try:
            import secantus  # noqa: F401
        except ImportError:
            pytest.fail("secantusdb is not installed: run `make setup` (a dev dependency)", pytrace=False)
        self.persistent = persistent
        self.ttl_sweep = ttl_sweep
        self.dir = tempfile.mkdtemp(prefix="sd-mongo-")
        super().__init__(port=free_port(), log_path=os.path.join(self.dir, "server.log"), cwd=self.dir)

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        storage = os.path.join(self.dir, "data") if self.persistent else ":memory:"
        return [sys.executable, "-c", _LAUNCHER, "127.0.0.1", str(self.port), storage, str(self.ttl_sweep)]

    def ready(self) -> bool:
        return self.ping()

    def start_failed(self, log: str) -> NoReturn:
        pytest.fail(f"secantusd-py on port {self.port} did not start:\n{log}", pytrace=False)

    def close(self) -> None:
        """Stop the server and remove its data directory."""
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ping(self) -> bool:
        """True when the server answers a ``ping`` command."""
        import pymongo
        from pymongo.errors import PyMongoError

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.url, serverSelectionTimeoutMS=300, connectTimeoutMS=300, directConnection=True
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()


@pytest.fixture(scope="session")
def mongo_server_factory() -> Iterator[Callable[..., MongoServer]]:
    """``factory(persistent=False)``: a new, started private server, stopped at session end."""
    with closing_children() as start:

        def factory(*, persistent: bool = False) -> MongoServer:
            return start(MongoServer(persistent=persistent))

        yield factory


@pytest.fixture(scope="session")
def mongo_server(mongo_server_factory: Callable[..., MongoServer]) -> MongoServer:
    """The session's shared server (in-memory storage). Tests that stop it must start it again."""
    return mongo_server_factory(persistent=False)


@pytest.fixture(scope="session")
def mongo_server_url(mongo_server: MongoServer) -> str:
    return mongo_server.url


@pytest.fixture
def mongo_url(mongo_server: MongoServer) -> str:
    """A URL naming a database of its own on the shared server: a new, empty store."""
    mongo_server.start()  # in case an earlier test left it stopped
    return f"{mongo_server.url}/t_{uuid.uuid4().hex[:12]}"
