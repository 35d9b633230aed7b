"""The controller: runs one scenario end to end and returns its :class:`Report`.

Timeline of a run:

1. start the server process on a free loopback port, then the client workers
   (Python processes and one Node process); wait until every client is connected;
2. tell the server to emit for ``duration`` seconds; meanwhile clients drop their
   transports at random and the server is ``kill -9``-ed and restarted on schedule;
3. stop the drops, wait until every client is connected again, have the server emit
   a final ``end`` event to everyone, and let each client wait for it;
4. dump the store's log and the clients' receptions, and check them (:mod:`.oracle`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .oracle import check_run
from .proxy import Proxy
from .report import Report
from .scenario import Scenario

__all__ = ["HarnessError", "StoreService", "js_available", "node_modules", "run_scenario"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


class StoreService(Protocol):
    """A store server the harness may restart mid-run (``Scenario.store_restarts``)."""

    async def restart(self, downtime: float) -> None:
        """Stop the store server, wait ``downtime`` seconds, start it again (same data)."""


class HarnessError(RuntimeError):
    """The harness itself could not run the scenario (not a delivery failure)."""


def node_modules() -> Path:
    return ROOT / "tests" / "js" / "node_modules"


def js_available() -> bool:
    """Node and the official client are installed (``make js``)."""
    return shutil.which("node") is not None and (node_modules() / "socket.io-client").is_dir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def store_url(scenario: Scenario, folder: Path, name: str) -> str:
    if scenario.store == "sqlite":
        return f"sqlite:///{folder / name}"
    if scenario.store == "slow-sqlite":  # every store call 0..0.2 s slower (see slowstore.py)
        return f"slow+sqlite:///{folder / name}"
    if scenario.store == "memory":
        return "memory://"
    return scenario.store


class Proc:
    """A child process spoken to in JSON lines (stdin commands, stdout replies)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self.env,
                limit=1 << 24,
            )

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"{self.name}: no {kind!r} within {timeout:.0f} s (see {self.log_path})")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except asyncio.TimeoutError:
                continue
            if not line:
                raise HarnessError(f"{self.name} exited before {kind!r} (see {self.log_path})")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == kind:
                return msg

    async def request(self, cmd: dict[str, Any], kind: str, timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return await self.expect(kind, timeout)

    async def dump_and_kill(self) -> None:
        """Ask a hung process for its task stacks (SIGUSR1), then kill it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(1.0)
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()  # SIGKILL: no cleanup of any kind

    async def wait(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await self.proc.wait()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Cluster:
    """The server nodes of a run; with several nodes, clients reach them through a :class:`Proxy`."""

    def __init__(self, scenario: Scenario, folder: Path, env: dict[str, str]) -> None:
        self.scenario = scenario
        self.folder = folder
        self.env = env
        store = store_url(scenario, folder, "events.db" if scenario.mode == "delivery" else "log.db")
        manager = scenario.manager
        if manager is None and scenario.mode == "plain" and scenario.nodes > 1 and store.startswith("redis"):
            manager = store  # plain python-socketio needs a pub/sub manager to reach other nodes
        # plain: one node emits (log order == send order); Delivery: every node emits its share
        emitting = scenario.nodes if scenario.mode == "delivery" else 1
        self.configs: list[dict[str, Any]] = []
        for i in range(scenario.nodes):
            share = 1.0 / emitting if (scenario.mode == "delivery" or i == 0) else 0.0
            self.configs.append(
                {
                    "node": i,
                    "mode": scenario.mode,
                    "port": free_port(),
                    "store": store,
                    "manager": manager,
                    "rooms": scenario.room_names(),
                    "room_rate": scenario.room_rate * share,
                    "sid_rate": scenario.sid_rate * share,
                    "all_rate": scenario.all_rate * share,
                    "recovery_window": scenario.recovery_window,
                    "session_lease": scenario.session_lease,
                    "emit_until": None,
                }
            )
        self.nodes: list[Proc] = [self._proc(i) for i in range(scenario.nodes)]
        self.proxy = Proxy([c["port"] for c in self.configs]) if scenario.nodes > 1 else None

    def _proc(self, i: int) -> Proc:
        argv = [sys.executable, "-m", "delivery_chaos.server", json.dumps(self.configs[i])]
        return Proc(f"node-{i}", argv, self.folder / f"server-{i}.log", self.env)

    @property
    def url(self) -> str:
        port = self.proxy.port if self.proxy else self.configs[0]["port"]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
        for node in self.nodes:
            await node.expect("listening", 60)
        if self.proxy:
            await self.proxy.start()

    async def emit_until(self, until: float) -> None:
        for config in self.configs:
            config["emit_until"] = until
        for node in self.nodes:
            await node.request({"cmd": "start", "until": until}, "started", 30)

    async def kill_and_restart(self, i: int, downtime: float) -> None:
        self.nodes[i].kill()
        await self.nodes[i].wait()
        await asyncio.sleep(downtime)
        self.nodes[i] = self._proc(i)
        await self.nodes[i].start()
        await self.nodes[i].expect("listening", 60)

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    async def wait_all(self) -> None:
        for node in self.nodes:
            await node.wait()
        if self.proxy:
            await self.proxy.close()

    def log_errors(self) -> list[str]:
        errors: list[str] = []
        for i in range(len(self.nodes)):
            path = self.folder / f"server-{i}.log"
            if path.exists():
                text = path.read_text(errors="replace")
                errors += [f"node-{i}: {line.rstrip()}" for line in text.splitlines() if " ERROR " in line]
                errors += [
                    f"node-{i}: Traceback" for line in text.splitlines() if line.startswith("Traceback")
                ]
        return errors


async def start_workers(scenario: Scenario, folder: Path, env: dict[str, str], url: str) -> list[Proc]:
    specs = scenario.clients()
    py_specs = [s for s in specs if s["kind"] == "py"]
    js_specs = [s for s in specs if s["kind"] == "js"]
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    n_py = max(1, scenario.py_workers)
    for i in range(n_py):
        chunk = py_specs[i::n_py]
        if chunk:
            groups.append((f"py-worker-{i}", chunk))
    if js_specs:
        groups.append(("js-worker", js_specs))
    workers: list[Proc] = []
    for name, chunk in groups:
        if name.startswith("js"):
            argv = ["node", str(HERE / "jsclients.cjs"), str(node_modules())]
        else:
            argv = [sys.executable, "-m", "delivery_chaos.pyclients"]
        worker = Proc(name, argv, folder / f"{name}.log", env)
        await worker.start()
        worker.send(
            {
                "url": url,
                "clients": chunk,
                "drop_every": scenario.drop_every,
                "seed": scenario.seed * 1000 + len(workers),
                "results": str(folder / f"{name}.json"),
                "project_client": scenario.project_client,
            }
        )
        workers.append(worker)
    return workers


async def run_scenario(
    scenario: Scenario,
    *,
    folder: Path | None = None,
    say: Callable[[str], None] = lambda _msg: None,
    store_service: StoreService | None = None,
) -> Report:
    """Run ``scenario`` and check every client. ``say`` gets progress lines.

    ``store_service`` is needed when ``scenario.store_restarts`` > 0.
    """
    if scenario.js_clients and not js_available():
        raise HarnessError("JS clients need Node and tests/js/node_modules: run `make js`")
    if scenario.store_restarts and store_service is None:
        raise HarnessError("store_restarts needs a store_service to restart")
    folder = folder or Path(tempfile.mkdtemp(prefix=f"chaos-{scenario.name}-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env()
    started = time.monotonic()
    cluster = Cluster(scenario, folder, env)
    workers: list[Proc] = []
    restarts = 0
    dump_path = folder / "log.json"
    stop_failures: list[str] = []
    try:
        await cluster.start()
        workers = await start_workers(scenario, folder, env, cluster.url)
        impl: dict[str, str] = {}
        for worker in workers:
            ready = await worker.expect("ready", 120)
            impl["js" if worker.name.startswith("js") else "py"] = ready.get("client", "?")
        total = scenario.py_clients + scenario.js_clients
        say(f"{total} clients connected; emitting for {scenario.duration:.0f} s")

        t0 = time.time()
        until = t0 + scenario.duration
        await cluster.emit_until(until)
        # the chaos: kill -9 of server nodes and restarts of the store, spread over the run
        actions: list[tuple[float, str, int]] = []
        for i in range(scenario.server_restarts):
            at = t0 + scenario.duration * (i + 1) / (scenario.server_restarts + 1)
            actions.append((at, "node", (scenario.nodes - 1 - i) % scenario.nodes))
        for i in range(scenario.store_restarts):
            at = t0 + scenario.duration * (i + 0.6) / (scenario.store_restarts + 0.6)
            actions.append((at, "store", 0))
        timeline: list[tuple[float, str]] = [(t0, "emitting")]
        for at, what, index in sorted(actions):
            await asyncio.sleep(max(0.0, at - time.time()))
            if what == "node":
                name = f"node {index}" if scenario.nodes > 1 else "the server process"
                say(f"kill -9 of {name} at t={time.time() - t0:.1f} s")
                timeline.append((time.time(), f"kill -9 node {index}"))
                await cluster.kill_and_restart(index, scenario.restart_downtime)
                restarts += 1
                timeline.append((time.time(), f"node {index} listening"))
                say(f"{name} restarted at t={time.time() - t0:.1f} s")
            else:
                assert store_service is not None
                say(f"store restart at t={time.time() - t0:.1f} s")
                timeline.append((time.time(), "store stopping"))
                await store_service.restart(scenario.store_downtime)
                timeline.append((time.time(), "store back"))
                say(f"store back at t={time.time() - t0:.1f} s")
        await asyncio.sleep(max(0.0, until - time.time()))

        timeline.append((time.time(), "emitting stopped"))
        (folder / "controller.json").write_text(json.dumps(timeline))
        for worker in workers:
            await worker.request({"cmd": "stop_drops"}, "drops_stopped", 30)
        deadline = time.monotonic() + scenario.settle_timeout
        while True:
            connected = 0
            for worker in workers:
                connected += (await worker.request({"cmd": "status"}, "status", 30))["connected"]
            if connected == total or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        if connected < total:
            say(f"only {connected}/{total} clients reconnected within {scenario.settle_timeout:.0f} s")
        first = cluster.nodes[0]
        await first.request({"cmd": "end"}, "ended", 60)
        for worker in workers:
            worker.send({"cmd": "finish", "timeout": scenario.settle_timeout})
        for worker in workers:
            await worker.expect("finished", scenario.settle_timeout + 60)
        await first.request({"cmd": "dump", "path": str(dump_path)}, "dumped", 120)
        for node in cluster.nodes:
            try:
                await node.request({"cmd": "stop"}, "stopped", 30)
            except HarnessError:
                await node.dump_and_kill()
                stop_failures.append(f"{node.name}: did not stop within 30 s (task stacks in its log)")
        await cluster.wait_all()
        for worker in workers:
            await worker.wait()
    finally:
        cluster.kill_all()
        for worker in workers:
            worker.kill()
        await cluster.wait_all()
        for worker in workers:
            await worker.wait()

    dump = json.loads(dump_path.read_text())
    results: list[dict[str, Any]] = []
    for worker in workers:
        results.extend(json.loads((folder / f"{worker.name}.json").read_text()))
    return Report(
        scenario=scenario,
        checks=check_run(dump, results),
        elapsed=time.monotonic() - started,
        server_restarts=restarts,
        server_log_errors=stop_failures + cluster.log_errors(),
        client_impl=impl,
        folder=str(folder),
        log_events=len(dump["events"]),
        planned_events=int(scenario.duration * (scenario.room_rate + scenario.sid_rate + scenario.all_rate)),
    )
