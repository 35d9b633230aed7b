"""Session fixtures for a real redis-server (see adapters/redis).

The server is started lazily, the first time a test asks for it, from ``redis-server`` on
PATH (``make services`` / ``scripts/install-services.sh`` installs it), on a free loopback
port, and stopped at the end of the session (finalizer + atexit; on Linux the server also
gets SIGTERM if the test process dies).

Fixtures:

``redis_server``          the shared :class:`RedisServer` (``.url``, ``.stop()``, ``.start()``,
                          ``.restart()``); append-only file in a temp dir, so a graceful
                          restart keeps the data.
``redis_server_url``      its URL, ``redis://127.0.0.1:PORT/0``.
``redis_url``             per test: the shared server's URL with a new key prefix
                          (``redis://127.0.0.1:PORT/0?prefix=t-<hex>``): a new, empty store.
``redis_server_factory``  ``factory(persistent=True, fsync="everysec", unix_socket=False,
                          tls=False)`` starts a private server for tests that stop, kill or
                          flush it (``tls=True``: TLS only, see :class:`RedisServer`); all are
                          stopped at session end.
``redis_cluster``         a three-primary Redis Cluster (:class:`RedisClusterNodes`, ``.url``
                          is the first node's ``redis://`` URL), started on first use.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn
from urllib.parse import quote

import pytest
from processes import ChildProcess, closing_children, free_port

__all__ = ["RedisClusterNodes", "RedisSentinel", "RedisServer"]

_START_TIMEOUT = 10.0


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port() -> int:
    """A free port <= 55535 whose cluster bus port (port + 10000) is free too."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis cluster node")


def _self_signed_certificate(directory: str) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (its own CA) and its key: ``(cert, key)`` paths.

    Made with the ``openssl`` command (``make services`` installs it). The address is in
    the subject alternative name, so clients can keep checking the host name.
    """
    cert, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail(
            "openssl is not installed: run `make services` (scripts/install-services.sh)", pytrace=False
        )
    args = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    args += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"]
    made = subprocess.run(
        [*args, "-keyout", key, "-out", cert],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if made.returncode != 0:
        pytest.fail(f"openssl could not make a test certificate:\n{made.stderr}", pytrace=False)
    return cert, key


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server is not installed: run `make services` (scripts/install-services.sh)",
            pytrace=False,
        )
    return found


class RedisServer(ChildProcess):
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port and data dir.

    ::

        server = RedisServer(persistent=True)
        server.start()
        server.url         # 'redis://127.0.0.1:PORT/0'
        server.stop()      # graceful: the append-only file is flushed; kill=True: SIGKILL
        server.start()     # same port, same data (when persistent)

    ``persistent``: append-only file on (else no persistence at all: a restart loses
    everything, like a cache-only Redis). ``fsync``: ``appendfsync`` (``always`` makes
    every write survive SIGKILL). ``unix_socket``: also listen on ``.unix_socket``
    (``.unix_url`` is ``unix://PATH?db=0``). ``tls``: TLS only (``--port 0 --tls-port PORT``,
    no client certificates) with a throwaway self-signed certificate for 127.0.0.1;
    ``.url`` is then ``rediss://127.0.0.1:PORT/0?ssl_ca_certs=CERT`` (``.ca_file``: CERT).
    """

    start_timeout = _START_TIMEOUT
    stop_timeout = 10.0
    poll_interval = 0.02

    def __init__(
        self,
        *,
        persistent: bool = True,
        fsync: str = "everysec",
        unix_socket: bool = False,
        cluster: bool = False,
        tls: bool = False,
        executable: str | None = None,
    ) -> None:
        self.executable: str = executable or _redis_server()
        self.persistent = persistent
        self.fsync = fsync
        self.cluster = cluster
        self.dir = tempfile.mkdtemp(prefix="sd-redis-")
        self.unix_socket = os.path.join(self.dir, "redis.sock") if unix_socket else None
        self.tls: tuple[str, str] | None = _self_signed_certificate(self.dir) if tls else None
        port = _free_cluster_port() if cluster else free_port()
        super().__init__(port=port, log_path=os.path.join(self.dir, "redis.log"))

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={quote(self.tls[0], safe='')}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The certificate clients trust (a TLS server's own, self-signed)."""
        if self.tls is None:
            raise ValueError("this server was started without tls=True")
        return self.tls[0]

    @property
    def unix_url(self) -> str:
        if self.unix_socket is None:
            raise ValueError("this server was started without unix_socket=True")
        return f"unix://{self.unix_socket}?db=0"

    def command(self) -> list[str]:
        args = [self.executable, "--bind", "127.0.0.1", "--dir", self.dir]
        if self.tls is not None:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert]
            args += ["--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        args += ["--save", "", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"]
        args += ["--logfile", self.log_path]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", self.fsync]
        else:
            args += ["--appendonly", "no"]
        if self.unix_socket is not None:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "5000"]
        return args

    def ready(self) -> bool:
        return self.ping()

    def start_failed(self, log: str) -> NoReturn:
        pytest.fail(f"redis-server on port {self.port} did not start:\n{log}", pytrace=False)

    def close(self) -> None:
        """Stop the server and remove its data directory."""
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                sock = raw
                if self.tls is not None:
                    context = ssl.create_default_context(cafile=self.tls[0])
                    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:  # ssl.SSLError is one
            return False


class RedisClusterNodes:
    """Three cluster-enabled ``redis-server`` processes joined into one cluster (no replicas).

    ::

        nodes = RedisClusterNodes()
        nodes.start()
        nodes.url      # 'redis://127.0.0.1:PORT/0' of the first node (clients discover the rest)
        nodes.close()
    """

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisServer(persistent=False, cluster=True) for _ in range(size)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not installed: run `make services`", pytrace=False)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            self.close()
            pytest.fail(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}", pytrace=False
            )
        deadline = time.monotonic() + _START_TIMEOUT * 3
        while time.monotonic() < deadline:
            if all(self._state_ok(cli, node) for node in self.nodes):
                return
            time.sleep(0.1)
        self.close()
        pytest.fail("the Redis cluster did not reach cluster_state:ok", pytrace=False)

    @staticmethod
    def _state_ok(cli: str, node: RedisServer) -> bool:
        info = subprocess.run(
            [cli, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True, timeout=10
        )
        return "cluster_state:ok" in info.stdout

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class RedisSentinel(ChildProcess):
    """One ``redis-server --sentinel`` watching a primary (a :class:`RedisServer`) as ``mymaster``.

    ::

        sentinel = RedisSentinel(primary)
        sentinel.start()
        sentinel.address   # ('127.0.0.1', PORT), for redis.asyncio.sentinel.Sentinel([...])
        sentinel.close()
    """

    service = "mymaster"
    start_timeout = _START_TIMEOUT
    stop_timeout = 10.0

    def __init__(self, primary: RedisServer) -> None:
        self.primary = primary
        self.dir = tempfile.mkdtemp(prefix="sd-sentinel-")
        super().__init__(port=free_port(), log_path=os.path.join(self.dir, "sentinel.log"))

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def command(self) -> list[str]:
        return [self.primary.executable, os.path.join(self.dir, "sentinel.conf"), "--sentinel"]

    def spawn(self) -> None:
        if self.running:
            return
        with open(self.command()[1], "w", encoding="utf-8") as f:  # sentinel rewrites its config file
            f.write(
                f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
                f"logfile {self.log_path}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {self.service} 5000\n"
            )
        super().spawn()

    def ready(self) -> bool:
        return self._knows_primary()

    def start_failed(self, log: str) -> NoReturn:
        self.close()
        pytest.fail(f"redis sentinel did not start:\n{log}", pytrace=False)

    def _knows_primary(self) -> bool:
        query = f"SENTINEL get-master-addr-by-name {self.service}\r\n".encode()
        try:
            with socket.create_connection(self.address, timeout=0.5) as sock:
                sock.sendall(query)
                return str(self.primary.port).encode() in sock.recv(256)
        except OSError:
            return False

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """``factory(persistent=True, tls=False, ...)``: a new, started private server, stopped at session end."""
    with closing_children() as start:

        def factory(
            *, persistent: bool = True, fsync: str = "everysec", unix_socket: bool = False, tls: bool = False
        ) -> RedisServer:
            server = RedisServer(persistent=persistent, fsync=fsync, unix_socket=unix_socket, tls=tls)
            return start(server)

        yield factory


@pytest.fixture(scope="session")
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """The session's shared redis-server. Tests that stop it must start it again."""
    return redis_server_factory(persistent=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A three-primary Redis Cluster on loopback ports, for the whole session."""
    nodes = RedisClusterNodes()
    nodes.start()
    yield nodes
    nodes.close()


@pytest.fixture(scope="session")
def redis_server_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A URL on the shared server with a key prefix of its own: a new, empty store."""
    redis_server.start()  # in case an earlier test left it stopped
    return f"{redis_server.url}?prefix=t-{uuid.uuid4().hex[:12]}"
