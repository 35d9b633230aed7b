"""Shared pieces of the benchmarks: servers they start, the stores they measure, tables they print.

Nothing here asserts on time. A store that is not installed or does not work is
reported as skipped (with the reason) instead of failing the run::

    async with Stores(["memory", "sqlite", "redis", "mongodb"]) as stores:
        for name, url in stores.urls():        # only the working ones
            ...
        stores.skipped                          # {"redis": "not installed: ..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ALL_STORES = ("memory", "sqlite", "redis", "mongodb")
#: What the stores persist in every benchmark: the shape Delivery writes for ``emit("tick", {...})``.
PAYLOAD: dict[str, Any] = {"event": "tick", "args": [{"text": "hello world", "n": 1}]}


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child is killed when the bench process dies (even by kill -9).

    SIGKILL, not SIGTERM: a server whose graceful shutdown waits on something would outlive
    the bench. Its normal stop is :func:`stop_process` (SIGTERM, then SIGKILL after 10 s).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Server:
    """A server process the bench starts on a free loopback port and stops at the end."""

    name = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"sd-bench-{self.name}-")
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        log = open(os.path.join(self.dir, "server.log"), "wb")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        log.close()
        try:
            wait_port(self.port, self.process)
        except RuntimeError as exc:
            tail = Path(self.dir, "server.log").read_text(errors="replace")[-1500:]
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}\n{tail}") from None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Server):
    name = "redis"

    def command(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make services)")
        return [
            exe,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir),
            *("--save", "", "--protected-mode", "no", "--loglevel", "warning"),
            *("--appendonly", "yes", "--appendfsync", "everysec"),  # durable, as in production
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class SecantusServer(Server):
    """SecantusDB, the MongoDB-compatible server (a Python package in the dev group)."""

    name = "mongodb"

    def command(self) -> list[str]:
        exe = Path(sys.executable).with_name("secantusd-py")
        if not exe.exists():
            found = shutil.which("secantusd-py")
            if found is None:
                raise RuntimeError("secantusd-py is not installed (make setup)")
            exe = Path(found)
        return [
            str(exe),
            *("--host", "127.0.0.1", "--port", str(self.port), "--storage-path", ":memory:"),
            *("--log-level", "WARNING"),
        ]

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/bench"


# -- stores ----------------------------------------------------------------------------


async def probe(url: str) -> str | None:
    """``None`` when a store opens, persists and reads back at ``url``; else why not."""
    from socketio_delivery import open_store

    try:
        store = open_store(url)
        await store.open()
        try:
            event = await store.persist("probe", {"ok": True})
            await store.fetch_since("probe", None)
            assert event.offset
        finally:
            await close_store(store)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"[:100]
    return None


@dataclass
class Stores:
    """The stores a benchmark measures: starts their servers, probes them, stops them.

    ``urls()`` yields ``(name, url)`` for the working ones; every call of
    :meth:`fresh` gives a URL of a new, empty store of that kind.
    """

    names: Sequence[str]
    servers: dict[str, Server] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    working: list[str] = field(default_factory=list)
    tmp: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="sd-bench-"))

    async def __aenter__(self) -> Stores:
        for name in self.names:
            if name not in ALL_STORES:
                raise SystemExit(f"unknown store {name!r}; known: {', '.join(ALL_STORES)}")
            try:
                if name == "redis":
                    self.servers[name] = server = RedisServer()
                    server.start()  # from this thread: PR_SET_PDEATHSIG follows the creating thread
                elif name == "mongodb":
                    self.servers[name] = server = SecantusServer()
                    server.start()  # from this thread: PR_SET_PDEATHSIG follows the creating thread
            except Exception as exc:
                self.skipped[name] = f"server did not start: {exc}".splitlines()[0][:100]
                continue
            why = await probe(self.fresh(name))
            if why is None:
                self.working.append(name)
            else:
                self.skipped[name] = why
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def urls(self) -> list[tuple[str, str]]:
        return [(name, self.fresh(name)) for name in self.working]

    def fresh(self, name: str) -> str:
        tag = uuid.uuid4().hex[:10]
        if name == "memory":
            return "memory://"
        if name == "sqlite":
            return f"sqlite:///{self.tmp}/{tag}.db"
        if name == "redis":
            return f"{self.servers[name].url}?prefix=b{tag}"
        if name == "mongodb":
            return f"{self.servers[name].url}_{tag}"
        raise ValueError(name)

    def server_pid(self, name: str) -> int | None:
        server = self.servers.get(name)
        return server.pid if server else None


#: stores whose close() did not return in time (reported in the tables' notes)
HUNG_CLOSES: list[str] = []


async def close_store(store: Any, timeout: float = 20.0) -> None:
    """``await store.close()``, giving up after ``timeout`` seconds (noted, not fatal)."""
    try:
        await asyncio.wait_for(store.close(), timeout)
    except asyncio.TimeoutError:
        HUNG_CLOSES.append(f"{store!r}: close() did not return in {timeout:.0f} s")
        print(f"WARNING: {HUNG_CLOSES[-1]}", file=sys.stderr, flush=True)


def store_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    return list(ALL_STORES) if names == ["all"] else names


# -- smaller sizes for a slow store ------------------------------------------------------------

SCALE_HELP = (
    "STORE=FACTOR,...: that store's sizes times FACTOR, noted in the table "
    "(bench/run.py gives the slowest store, SecantusDB, a fraction; --big runs every store at full size)"
)


def store_scales(text: str) -> dict[str, float]:
    """``"mongodb=0.1,redis=0.5"`` -> ``{"mongodb": 0.1, "redis": 0.5}`` (the ``--scale`` option).

    A slow store measured on smaller sizes keeps a quick run quick without time limits
    cutting its cells short: ``scaled(5000, scales.get("mongodb", 1.0))`` -> 500.
    """
    scales: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, factor = item.partition("=")
        if not sep or name.strip() not in ALL_STORES:
            raise SystemExit(
                f"--scale wants STORE=FACTOR with STORE one of {', '.join(ALL_STORES)}: {item!r}"
            )
        value = float(factor)
        if not 0 < value <= 1:
            raise SystemExit(f"--scale factors are in (0, 1]: {item!r}")
        scales[name.strip()] = value
    return scales


def scaled(n: int, factor: float) -> int:
    """``n`` times ``factor``, rounded, at least 1 (0 stays 0)."""
    return 0 if n <= 0 else max(1, round(n * factor))


def scale_note(name: str, factor: float, sizes: str) -> str:
    """The table note of a store measured on scaled sizes."""
    return (
        f"{name}: smaller sizes in this run ({sizes}; --scale {name}={factor:g}); "
        "bench/run.py --big measures it at full size"
    )


# -- memory ------------------------------------------------------------------------------


class RssSampler:
    """Samples the resident memory of some processes every ``interval`` seconds in a thread.

    ::

        with RssSampler([pid], interval=0.05) as rss:
            ...
        rss.peak_mb(pid), rss.samples[pid]
    """

    def __init__(self, pids: Iterable[int], interval: float = 0.05) -> None:
        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.interval = interval
        self.samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in self.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _sample(self) -> None:
        now = time.perf_counter() - self._t0
        for pid, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.samples[pid].append((now, proc.memory_info().rss / 2**20))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def first_mb(self, pid: int) -> float:
        return self.samples[pid][0][1] if self.samples[pid] else float("nan")

    def peak_mb(self, pid: int) -> float:
        return max((mb for _, mb in self.samples[pid]), default=float("nan"))


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


# -- output --------------------------------------------------------------------------------


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(
    title: str, header: Sequence[str], rows: Iterable[Sequence[object]], notes: Sequence[str] = ()
) -> str:
    """A Markdown table (readable as plain text too), printed and returned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    text = [f"### {title}", "", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(r) for r in cells]
    text += [""] + [f"{n}" for n in notes] + ([""] if notes else [])
    out = "\n".join(text)
    print(out, flush=True)
    return out


def skipped_notes(stores: Stores) -> list[str]:
    notes = [f"skipped {name}: {why}" for name, why in stores.skipped.items()]
    return notes + [f"BUG: {hung}" for hung in HUNG_CLOSES]


def ratio(a: float, b: float) -> str:
    return f"{100 * a / b:.0f} %" if b else "-"


def machine() -> str:
    """nproc, memory, CPU model, Python and OS: what the tables ran on."""
    model = "?"
    with contextlib.suppress(OSError):
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB memory, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def run_main(main: Callable[[], Any]) -> None:
    """``asyncio.run(main())`` with Ctrl-C ending quietly."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_then_exit_if_hung(main))


async def _then_exit_if_hung(main: Callable[[], Any]) -> None:
    await main()
    if HUNG_CLOSES:  # a store task that ignores cancellation would hang asyncio.run's shutdown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
