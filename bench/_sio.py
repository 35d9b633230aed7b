"""Socket.IO servers under test (each in its own process) and the benchmark's clients.

A :class:`Target` is one server: python-socketio alone (``plain``), python-socketio with
``Delivery`` on a store, or the Node socket.io peer. :class:`Client` is a python-socketio
``AsyncClient`` over WebSocket that counts ``tick`` events and remembers the session's
``pid`` and the last offset (the two things connection state recovery needs)::

    with Target.python("delivery/sqlite", "sqlite:///x.db") as target:
        clients = await connect_clients(target.url, 10, room="bench")
        seconds = await blast(target.url, clients, n=1000)
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import socketio
from _common import BENCH, ROOT, die_with_parent, free_port, stop_process, wait_port

NODE_MODULES = ROOT / "tests" / "js" / "node_modules"

# the clients' "packet queue is empty, aborting" on every disconnect is noise here
for _name in ("engineio.client", "socketio.client"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


@dataclass
class Target:
    """A server process on a free port, started on ``__enter__`` and stopped on ``__exit__``."""

    label: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @classmethod
    def python(cls, label: str, store: str | None, *, max_events: int | None = None) -> Target:
        port = free_port()
        command = [sys.executable, str(BENCH / "_app.py"), "--port", str(port), "--store", store or "plain"]
        if max_events:
            command += ["--max-events", str(max_events)]
        return cls(label, command, port)

    @classmethod
    def node(cls) -> Target:
        port = free_port()
        return cls("node socket.io 4.8 (CSR)", ["node", str(BENCH / "peer_server.js"), str(port)], port)

    @staticmethod
    def node_missing() -> str | None:
        if shutil.which("node") is None:
            return "node is not installed"
        if not (NODE_MODULES / "socket.io").is_dir():
            return "tests/js/node_modules/socket.io missing (make js)"
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.log = Path(os.environ.get("TMPDIR", "/tmp"), f"sd-bench-server-{self.port}.log")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                preexec_fn=die_with_parent,
            )
        try:
            wait_port(self.port, self.process)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.label}: {exc}\n{self.log_tail()}") from None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:] if self.log else ""
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.log:
            self.log.unlink(missing_ok=True)

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss / 2**20)

    def __enter__(self) -> Target:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _RecordingClient(socketio.AsyncClient):  # type: ignore[misc]
    """Remembers the CONNECT reply (``pid``) of the default namespace."""

    connect_data: dict[str, Any]

    async def _handle_connect(self, namespace: str | None, data: Any) -> None:
        if isinstance(data, dict):
            self.connect_data = data
        await super()._handle_connect(namespace, data)


class Client:
    """One benchmark client: counts ``tick`` events, keeps the last offset and the pid."""

    def __init__(self) -> None:
        self.sio = _RecordingClient(reconnection=False)
        self.sio.connect_data = {}
        self.count = 0
        self.target = 0
        self.offset: str | None = None
        self.done: asyncio.Future[float] | None = None
        self.last_at = 0.0
        self.sio.on("tick", self._on_tick)
        self.sio.on("delivery:resync", self._on_resync)
        self.sio.on("disconnect", self._on_disconnect)
        self.resync: Any = None
        self.disconnects = 0
        self.closing = False

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self.closing:
            self.disconnects += 1

    async def _on_resync(self, info: Any = None) -> None:
        self.resync = info

    async def _on_tick(self, *args: Any) -> None:
        self.count += 1
        self.last_at = time.perf_counter()
        if len(args) > 1 and isinstance(args[-1], str):
            self.offset = args[-1]
        if self.done is not None and self.count >= self.target and not self.done.done():
            self.done.set_result(self.last_at)

    def expect(self, n: int) -> asyncio.Future[float]:
        """A future resolved (with the time) when ``n`` more ticks have arrived."""
        self.target = self.count + n
        self.done = asyncio.get_running_loop().create_future()
        if n <= 0:
            self.done.set_result(time.perf_counter())
        return self.done

    def expect_fewer(self, n: int, fewer: int) -> None:
        """The server sent ``fewer`` of the ``n`` ticks :meth:`expect` was told of."""
        self.target -= n - fewer
        if self.done is not None and self.count >= self.target and not self.done.done():
            self.done.set_result(self.last_at)

    @property
    def pid(self) -> str | None:
        pid = self.sio.connect_data.get("pid")
        return pid if isinstance(pid, str) else None

    async def connect(self, url: str, auth: dict[str, Any] | None = None) -> None:
        await self.sio.connect(url, transports=["websocket"], auth=auth or {}, wait_timeout=30)

    async def disconnect(self) -> None:
        self.closing = True
        await self.sio.disconnect()

    async def drop(self) -> None:
        """Close the transport without a goodbye (as a network failure would)."""
        self.closing = True
        eio = self.sio.eio
        if eio.ws is not None:
            await eio.ws.close()
        for _ in range(200):
            if not self.sio.connected:
                break
            await asyncio.sleep(0.01)
        await self.sio.disconnect()  # cleans the client up; nothing more goes on the wire


async def connect_clients(url: str, count: int, room: str | None = "bench") -> list[Client]:
    clients = [Client() for _ in range(count)]
    for first in range(0, count, 25):
        await asyncio.gather(
            *(c.connect(url, {"room": room} if room else None) for c in clients[first : first + 25])
        )
    return clients


async def control(url: str) -> Client:
    """A client in no room, for sending ``blast``."""
    ctl = Client()
    await ctl.connect(url)
    return ctl


async def blast(
    ctl: Client,
    clients: Sequence[Client],
    n: int,
    *,
    room: str | None = "bench",
    emitters: int = 16,
    publish: bool = False,
    seconds: float | None = None,
    timeout: float = 120.0,
) -> tuple[float, float, int]:
    """Make the server emit ``n`` ticks to ``room``; wait until every client has them all.

    The server stops early after ``seconds`` (``None``: never). Returns (seconds from the
    request to the last client's last tick, seconds the server's emits took, ticks sent).
    Raises :class:`TimeoutError` naming how many ticks arrived.
    """
    waits = [c.expect(n) for c in clients]
    start = time.perf_counter()
    spec = {"n": n, "room": room, "emitters": emitters, "publish": publish, "seconds": seconds}
    reply = await ctl.sio.call("blast", spec, timeout=timeout + (seconds or 0))
    sent = int(reply.get("sent", n))
    if sent < n:
        for c in clients:
            c.expect_fewer(n, sent)
    try:
        ends = await asyncio.wait_for(asyncio.gather(*waits), timeout)
    except asyncio.TimeoutError:
        got = sum(c.count - (c.target - sent) for c in clients)
        lost = sum(1 for c in clients if c.disconnects)
        why = f"; {lost} clients were disconnected by the server" if lost else ""
        raise TimeoutError(f"{got} of {sent * len(clients)} ticks arrived in {timeout:.0f} s{why}") from None
    done = max(ends) if ends else time.perf_counter()
    return done - start, float(reply["seconds"]), sent


async def close_all(clients: Sequence[Client]) -> None:
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
