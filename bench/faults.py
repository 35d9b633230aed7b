"""The fault matrix (``make chaos``): store faults and slow client links, what each does to delivery.

    .venv/bin/python bench/faults.py                                  # every row, SQLite and Redis
    .venv/bin/python bench/faults.py --stores sqlite --faults paused,slow-2
    .venv/bin/python bench/faults.py --markdown faults.md

Each row runs the Delivery test app (``tests/support/delivery_app.py``, uvicorn, its own
process) on a fresh store with ``--clients`` Python clients (``DeliveryClient``, WebSocket),
all in one room. The app emits ``tick`` {"id": n} to everyone, one emit after the other,
every 0.1 s; a prober opens a new raw connection every second and checks its CONNECT gets
an answer. After a few seconds the fault is applied for ``--fault-seconds``, then taken
away; the emits go on for a while, then every client must have got every emit that
returned successfully, once, in order.

Faults (the store server is ``redis-server`` with an append-only file, or the MongoDB-compatible
test server (SecantusDB) with a data directory; SQLite is embedded):

* ``paused``: the store server SIGSTOP / SIGCONT; SQLite: another process holds an exclusive lock;
* ``killed``: the store server ``kill -9`` and restart on its data (Redis: ``appendfsync
  always``); SQLite: the app process ``kill -9`` and restart (the store is in the process);
* ``wiped``: killed and restarted WITHOUT its data (a new epoch); for SQLite the database
  file is deleted while the app is down;
* ``disk-full``: the data lives on a tmpfs of its own, shrunk to what it holds (``ENOSPC``),
  then grown again (needs root; otherwise, for SQLite only, the app can no longer grow a
  file: ``RLIMIT_FSIZE`` set with ``prlimit``);
* ``slow-0.9`` / ``slow-2``: one more client (raw Engine.IO, answers pings) behind a TCP
  proxy adding 0.9 s / 2 s each way; another connection presents its ``pid`` twice.

Columns: ``lost`` (an emit that returned successfully and a client never got, and no
``delivery:resync`` told it so), ``duplicated``, ``reordered`` (receptions), ``stalled``
(emits that took more than 12 s to return: the 10 s bound plus 2 s), ``hung connects`` (probes
or reconnects with no CONNECT answer within 12 s), ``sessions taken`` (the slow client's sid handed to the
connection that presented its pid while it was connected). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT / "tests" / "support", ROOT / "tests" / "hostile"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from delay_proxy import DelayProxy  # noqa: E402
from delivery_app import DeliveryAppProcess  # noqa: E402
from hostile_raw import NoAnswer, RawClient  # noqa: E402
from socketio_delivery.client import RESYNC_EVENT, DeliveryClient  # noqa: E402

FAULTS = ("paused", "killed", "wiped", "disk-full", "slow-0.9", "slow-2")
STORES = ("sqlite", "redis", "mongodb")
DEFAULT_STORES = ("sqlite", "redis")
#: an emit slower than this is "stalled"; a CONNECT without an answer by then is "hung": the
#: documented bounds (Delivery's delivery_timeout and connect_timeout, 10 s) plus 2 s for the
#: way there and back through a loaded machine
STALL = 12.0
HUNG = 12.0


@dataclass
class Row:
    store: str
    fault: str
    emits_ok: int = 0
    emits_failed: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    stalled: int = 0
    hung: int = 0
    taken: int = 0
    resyncs: int = 0
    probes: int = 0
    refused: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.stalled or self.hung or self.taken)


@dataclass
class Receiver:
    """What one client got: tick ids in order, and where resyncs came."""

    name: str
    ids: list[int] = field(default_factory=list)
    resync_at: list[int] = field(default_factory=list)  # len(ids) when each resync came

    def check(self, owed: list[int], row: Row) -> None:
        seen: set[int] = set()
        top = 0
        for n in self.ids:
            if n in seen:
                row.duplicated += 1
            elif n < top:
                row.reordered += 1
            seen.add(n)
            top = max(top, n)
        excused_below = 0
        for index in self.resync_at:
            following = self.ids[index:]
            excused_below = max(excused_below, following[0] if following else 1 << 62)
        missing = [n for n in owed if n not in seen and n >= excused_below]
        row.lost += len(missing)
        row.resyncs += len(self.resync_at)
        if missing:
            row.notes.append(f"{self.name} never got {len(missing)} emits (first {missing[:5]})")


#: size of the tmpfs the data of a disk-full row lives on (shrunk to what is used during the fault)
TMPFS_SIZE = 256 * 1024 * 1024


def _mount_tmpfs(path: Path) -> bool:
    """Mount a tmpfs on ``path`` (root only); False when that is not possible here."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _resize_tmpfs(path: Path, size: int | None) -> None:
    """Resize the tmpfs on ``path`` to ``size`` bytes, or to exactly what it uses now (``None``): full."""
    if size is None:
        st = os.statvfs(path)
        size = max((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_frsize)
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], capture_output=True, check=True)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class Stores:
    """The store of one row and the process that writes its data.

    ``tmpfs``: the data lives on a tmpfs of its own (root only), so that a disk-full fault
    is a real ``ENOSPC``; ``tmpfs_mounted`` says whether that worked.
    """

    def __init__(self, kind: str, folder: Path, fsync: str = "always", tmpfs: bool = False) -> None:
        self.kind = kind
        self.folder = folder
        self.server: Any = None
        if kind == "redis":
            from redis_server import RedisServer

            self.server = RedisServer(persistent=True, fsync=fsync)
        elif kind == "mongodb":
            from mongo_server import MongoServer

            self.server = MongoServer(persistent=True)
        self.data = Path(self.server.dir) if self.server is not None else folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.tmpfs_mounted = _mount_tmpfs(self.data) if tmpfs else False

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return self.data / "events.db"

    @property
    def url(self) -> str:
        if self.server is not None:
            return str(self.server.url)
        return f"sqlite:///{self.database}"

    async def start(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.start)

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                os.kill(self.server.process.pid, signal.SIGCONT)
            with contextlib.suppress(Exception):
                self.server.stop(kill=True)
        if self.tmpfs_mounted:
            _umount(self.data)
        if self.server is not None:
            self.server.close()


async def start_app(app: DeliveryAppProcess) -> None:
    app.spawn()
    await asyncio.to_thread(app.wait_ready)


async def kill_app(app: DeliveryAppProcess) -> None:
    await asyncio.to_thread(app.stop, kill=True)
    await asyncio.to_thread(app.wait_port_free)


def _hold_sqlite_lock(path: Path, seconds: float, ready: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _wipe_server_data(folder: Path) -> None:
    """Remove a store server's data (Redis: the append-only files; MongoDB test server: ``data``)."""
    for entry in folder.iterdir():
        if entry.name.startswith("appendonly") or entry.suffix in (".aof", ".rdb") or entry.name == "data":
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _wipe_sqlite_data(database: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            database.with_name(database.name + suffix).unlink()


def _largest_file(folder: Path) -> int:
    return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)


async def apply_fault(fault: str, stores: Stores, app: DeliveryAppProcess, seconds: float) -> None:
    """Apply ``fault`` for ``seconds`` (store faults only; slow links are run by the row itself)."""
    server = stores.server
    if fault == "paused":
        if server is not None:
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
        else:
            ready = threading.Event()
            holder = asyncio.create_task(
                asyncio.to_thread(_hold_sqlite_lock, stores.database, seconds, ready)
            )
            await holder
    elif fault in ("killed", "wiped"):
        if server is not None:
            await asyncio.to_thread(server.stop, kill=True)
            if fault == "wiped":
                await asyncio.to_thread(_wipe_server_data, Path(server.dir))
            await asyncio.sleep(seconds)
            await asyncio.to_thread(server.start)
        else:
            await kill_app(app)
            if fault == "wiped":
                await asyncio.to_thread(_wipe_sqlite_data, stores.database)
            await asyncio.sleep(seconds)
            await start_app(app)
    elif fault == "disk-full":
        if stores.tmpfs_mounted:  # a real ENOSPC: the tmpfs shrinks to what it holds now
            await asyncio.to_thread(_resize_tmpfs, stores.data, None)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.to_thread(_resize_tmpfs, stores.data, TMPFS_SIZE)
        elif server is None:  # not root: the app can no longer grow a file (Python ignores SIGXFSZ)
            pid = app.process.pid  # type: ignore[union-attr]
            size = await asyncio.to_thread(_largest_file, stores.data)
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (max(size, 1), hard))
            try:
                await asyncio.sleep(seconds)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        else:
            raise NotImplementedError("a disk-full store server needs root here (a tmpfs of its own)")
    else:
        raise ValueError(fault)


async def run_row(
    store: str,
    fault: str,
    *,
    clients: int = 8,
    fault_seconds: float = 12.0,
    warmup: float = 3.0,
    after: float = 5.0,
    settle: float = 20.0,
    folder: Path | None = None,
    say: Any = print,
) -> Row:
    row = Row(store, fault)
    folder = folder or Path(tempfile.mkdtemp(prefix="faults-"))
    folder.mkdir(parents=True, exist_ok=True)
    stores = Stores(
        store, folder, fsync="everysec" if fault == "disk-full" else "always", tmpfs=fault == "disk-full"
    )
    # python-socketio's default heartbeat (the test app's short one would time out a 2 s link itself)
    app = DeliveryAppProcess(
        store=stores.url, mode="asgi", extra=["--ping-interval", "25", "--ping-timeout", "20"]
    )
    receivers: list[Receiver] = []
    pyclients: list[DeliveryClient] = []
    raws: list[RawClient] = []
    stop = asyncio.Event()
    ok: list[int] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        await stores.start()
        await start_app(app)
        for i in range(clients):
            receiver = Receiver(f"client {i}")
            receivers.append(receiver)
            client = DeliveryClient(reconnection_delay=0.2, randomization_factor=0.2, handle_sigint=False)

            def on_tick(data: Any, _r: Receiver = receiver) -> None:
                if isinstance(data, dict) and isinstance(data.get("id"), int):
                    _r.ids.append(data["id"])

            def on_resync(info: Any, _r: Receiver = receiver) -> None:
                _r.resync_at.append(len(_r.ids))

            client.on("tick", on_tick)
            client.on(RESYNC_EVENT, on_resync)
            await client.connect(app.url, auth={"rooms": ["all"]}, transports=["websocket"])
            pyclients.append(client)

        slow_delay = {"slow-0.9": 0.9, "slow-2": 2.0}.get(fault)
        proxy_context = DelayProxy.start(app.port, slow_delay) if slow_delay else contextlib.nullcontext()
        async with proxy_context as proxy:
            victim: RawClient | None = None
            victim_reply: dict[str, Any] = {}
            if proxy is not None:
                victim = await RawClient.open(proxy.port, timeout=30)
                raws.append(victim)
                answer = await victim.connect({"rooms": ["all"]}, deadline=HUNG + 4 * slow_delay)
                assert answer.kind == "connect", answer
                victim_reply = answer.data

            async def emitter() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.monotonic()
                    try:
                        await asyncio.wait_for(app.control("emit", event="tick", args=[{"id": n}]), 60)
                        ok.append(n)
                    except Exception:
                        row.emits_failed += 1
                    if time.monotonic() - started > STALL:
                        row.stalled += 1
                    await asyncio.sleep(0.1)

            async def probe() -> None:
                started = time.monotonic()
                try:
                    client = await RawClient.open(app.port, timeout=HUNG)
                except (OSError, asyncio.TimeoutError):
                    if time.monotonic() - started >= HUNG:
                        row.hung += 1
                    else:
                        row.refused += 1  # nothing listening (the app is down): not a hung connect
                    return
                except Exception:
                    row.refused += 1
                    return
                raws.append(client)
                try:
                    await client.connect({}, deadline=HUNG)
                    row.probes += 1
                except NoAnswer:
                    row.hung += 1
                finally:
                    await client.close()

            async def prober() -> None:
                pending: list[asyncio.Task[None]] = []
                while not stop.is_set():
                    pending.append(asyncio.create_task(probe()))
                    await asyncio.sleep(1.0)
                await asyncio.gather(*pending, return_exceptions=True)

            tasks = [asyncio.create_task(emitter()), asyncio.create_task(prober())]
            await asyncio.sleep(warmup)
            say(f"{store} {fault}: fault on")
            if victim is not None:
                for wait in (1.0, 3.0):
                    await asyncio.sleep(wait)
                    taker = await RawClient.open(app.port)
                    raws.append(taker)
                    try:
                        got = await taker.connect({"pid": victim_reply["pid"]}, deadline=HUNG)
                    except NoAnswer:
                        row.hung += 1
                        continue
                    if got.kind == "connect" and got.data.get("sid") == victim_reply["sid"]:
                        row.taken += 1
                await asyncio.sleep(max(0.0, fault_seconds - 4.0))
            else:
                await apply_fault(fault, stores, app, fault_seconds)
            say(f"{store} {fault}: fault off")
            await asyncio.sleep(after)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            owed = list(ok)
            everyone = [*receivers]
            if victim is not None:
                victim_receiver = Receiver("slow client")
                everyone.append(victim_receiver)
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline:
                if victim is not None:
                    victim_receiver.ids = [
                        e[1]["id"] for e in victim.events() if e[0] == "tick" and isinstance(e[1], dict)
                    ]
                    victim_receiver.resync_at = [
                        i for i, e in enumerate(victim.events()) if e[0] == RESYNC_EVENT
                    ][:1]
                if all(set(owed) <= set(r.ids) for r in everyone):
                    break
                await asyncio.sleep(0.2)
            for receiver in everyone:
                receiver.check(owed, row)
        row.emits_ok = len(ok)
        for line in app.log_tail(2_000_000).splitlines():
            if "Traceback" in line or " ERROR " in line:
                row.notes.append(f"server: {line.strip()[:160]}")
                break
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for raw in raws:
            await raw.close()
        for client in pyclients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown(), 5)
        await asyncio.to_thread(app.close)
        stores.close()
    return row


HEADER = (
    "| store | fault | emits ok / failed | lost | duplicated | reordered | stalled | hung connects "
    "| sessions taken | resyncs | probes answered |"
)


def render(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r.store} | {r.fault} | {r.emits_ok} / {r.emits_failed} | {r.lost} | {r.duplicated} "
            f"| {r.reordered} | {r.stalled} | {r.hung} | {r.taken} | {r.resyncs} | {r.probes} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stores",
        default=",".join(DEFAULT_STORES),
        help=f"any of {', '.join(STORES)} (mongodb: SecantusDB, the MongoDB-compatible test server)",
    )
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"any of {', '.join(FAULTS)}")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fault-seconds", type=float, default=12.0)
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    args.stores = [s for s in args.stores.split(",") if s]
    args.faults = [f for f in args.faults.split(",") if f]
    bad = (set(args.stores) - set(STORES)) | (set(args.faults) - set(FAULTS))
    if bad:
        parser.error(f"unknown: {', '.join(sorted(bad))}")
    return args


async def main(args: argparse.Namespace) -> int:
    rows: list[Row] = []
    root = Path(tempfile.mkdtemp(prefix="socketio-delivery-faults-"))
    started = time.monotonic()
    try:
        for store in args.stores:
            if store == "redis" and shutil.which("redis-server") is None:
                print("redis: skipped (redis-server is not installed: make services)")
                continue
            for fault in args.faults:
                try:
                    row = await run_row(
                        store,
                        fault,
                        clients=args.clients,
                        fault_seconds=args.fault_seconds,
                        folder=root / f"{store}-{fault}",
                        say=lambda m: print(f"  . {m}", flush=True),
                    )
                except NotImplementedError as exc:
                    print(f"{store} {fault}: skipped ({exc})")
                    continue
                rows.append(row)
                print(render([row]).splitlines()[-1], flush=True)
                for note in row.notes[:4]:
                    print(f"      {note}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = render(rows)
    print()
    print(table)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s, {when}")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


def run(argv: list[str] | None = None) -> int:
    return asyncio.run(main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run())
