"""``make chaos``: does it really lose nothing? Random drops, killed nodes, a restarted store.

    .venv/bin/python bench/chaos.py                               # every variant, 200 clients, 60 s each
    .venv/bin/python bench/chaos.py --variants sqlite --clients 50 --duration 20
    .venv/bin/python bench/chaos.py --markdown chaos.md --json chaos.json

Each variant runs twice with the same clients, rates, drops and kills: with
``socketio_delivery.Delivery`` and with plain python-socketio (the baseline: what is lost
without the library). Half the clients are Python (``DeliveryClient``; a stock
``socketio.AsyncClient`` in the baseline), half the official ``socket.io-client`` 4.x in
Node. Each joins 3 of 20 rooms; the server emits to random rooms, single sids and everyone
at fixed rates; every client's transport is aborted at random (TCP abort, no goodbye).
Afterwards every client's receptions are checked against the store's log of what it was
owed (``contrib/examples/delivery_chaos/oracle.py`` explains how).

Variants:

* ``sqlite``: one server on the SQLite store; the process is killed (``kill -9``) mid-run
  and restarted;
* ``redis-nodes``: three nodes on one Redis store behind a round-robin TCP balancer; one
  node is killed mid-run (its clients land on the others) and restarted (the baseline uses
  python-socketio's ``AsyncRedisManager``, with one node emitting);
* ``redis-store``: one server on Redis; the Redis server is restarted mid-run (clean
  shutdown, append-only file); the baseline has no store to restart;
* ``mongodb``: one server on the MongoDB store (SecantusDB, the MongoDB-compatible server
  in the dev environment); the server process is killed mid-run and restarted;
* ``slow-sqlite``: as ``sqlite``, with every store call made 0..0.2 s slower (a wrapper):
  widens every race window between connects, disconnects, saves and replays;
* ``memory``: one server on the in-memory store, drops only.

Prints a table per run; asserts nothing. Exit status 1 when a Delivery run lost,
duplicated or reordered an event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contrib" / "examples"))

from _chaos_redis import RedisService, redis_available
from _common import SecantusServer, machine
from delivery_chaos import Report, Scenario, render, render_runs, run_scenario
from delivery_chaos.run import HarnessError, js_available

VARIANTS = ("sqlite", "redis-nodes", "redis-store", "mongodb", "slow-sqlite", "memory")
DEFAULT_VARIANTS = ("sqlite", "redis-nodes", "redis-store")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help=f"any of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--clients", type=int, default=200, help="clients per run (half Python, half JS)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of emits per run")
    parser.add_argument(
        "--drop-every", type=float, default=10.0, help="mean seconds between drops, per client"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="multiplies the emit rates (20+20+4 /s)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain python-socketio runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    return args


def base_scenario(args: argparse.Namespace) -> Scenario:
    n_js = args.clients // 2 if js_available() else 0
    n_py = args.clients - n_js
    return Scenario(
        py_clients=n_py,
        js_clients=n_js,
        py_workers=max(1, -(-n_py // 60)),
        duration=args.duration,
        drop_every=args.drop_every,
        room_rate=20.0 * args.rate,
        sid_rate=20.0 * args.rate,
        all_rate=4.0 * args.rate,
        seed=args.seed,
        settle_timeout=60.0,
    )


def say(msg: str) -> None:
    print(f"  . {msg}", flush=True)


async def run_variant(
    variant: str, args: argparse.Namespace, root: Path, stack: contextlib.AsyncExitStack
) -> list[tuple[str, Report | str]]:
    """The Delivery run and its baseline; a string instead of a report says why it was skipped."""
    base = base_scenario(args)
    service: RedisService | None = None
    if variant.startswith("redis"):
        if not redis_available():
            return [(variant, "skipped: redis-server is not installed (make services)")]
        service = await stack.enter_async_context(RedisService())
    mongo_url = ""
    if variant == "mongodb":
        mongo = SecantusServer()
        try:
            await asyncio.to_thread(mongo.start)
        except RuntimeError as exc:
            return [(variant, f"skipped: {exc}")]
        stack.callback(mongo.stop)
        mongo_url = mongo.url
    if variant == "sqlite":
        delivery = base.replace(name="sqlite, kill -9", store="sqlite", server_restarts=1)
        plain = delivery.replace(name="plain, kill -9")
    elif variant == "redis-nodes":
        assert service is not None
        delivery = base.replace(
            name="redis 3 nodes, 1 killed",
            store=service.url,
            nodes=3,
            server_restarts=1,
            restart_downtime=3.0,
        )
        plain = delivery.replace(name="plain 3 nodes, 1 killed")
    elif variant == "redis-store":
        assert service is not None
        delivery = base.replace(name="redis, store restart", store=service.url, store_restarts=1)
        plain = base.replace(name="plain (no store)", store="sqlite")
    elif variant == "slow-sqlite":
        delivery = base.replace(name="slow sqlite, kill -9", store="slow-sqlite", server_restarts=1)
        plain = delivery.replace(name="plain, kill -9", store="sqlite")
    elif variant == "mongodb":
        delivery = base.replace(name="mongodb, kill -9", store=mongo_url, server_restarts=1)
        plain = delivery.replace(name="plain, kill -9", store="sqlite")
    else:
        delivery = base.replace(name="memory, drops", store="memory")
        plain = delivery.replace(name="plain, drops")
    runs = [(delivery.replace(mode="delivery"), service)]
    if not args.no_baseline:
        runs.append((plain.replace(mode="plain", project_client=False), None))
    out: list[tuple[str, Report | str]] = []
    for scenario, store_service in runs:
        print(f"\n{scenario.name} ({scenario.mode})", flush=True)
        if scenario.mode == "plain" and scenario.store.startswith("redis"):
            # a fresh database for the baseline's log (the Delivery run used db 0)
            scenario = scenario.replace(store=scenario.store.rsplit("/", 1)[0] + "/1")
            if scenario.manager is None and scenario.nodes > 1:
                scenario = scenario.replace(manager=scenario.store)
        folder = root / f"{variant}-{scenario.mode}"
        try:
            report = await run_scenario(scenario, folder=folder, say=say, store_service=store_service)
        except HarnessError as exc:  # this run could not run; the others still do
            out.append((variant, f"{scenario.name} ({scenario.mode}) did not complete: {exc}"))
            print(f"  ! {exc}", flush=True)
            continue
        drops = sum(c.drops for c in report.checks)
        say(
            f"done in {report.elapsed:.0f} s: {report.log_events} events emitted "
            f"({report.planned_events} planned), {drops} forced drops, "
            f"{len(report.server_log_errors)} server errors"
        )
        for line in report.server_log_errors[:5]:
            say(line)
        out.append((variant, report))
    return out


def markdown(args: argparse.Namespace, reports: list[Report], skipped: list[str]) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Ran {when} on {machine()}; Node {node_version()}.",
        "",
        f"Command: `.venv/bin/python bench/chaos.py --variants {','.join(args.variants)} "
        f"--clients {args.clients} --duration {args.duration:g}`",
        "",
        render(reports),
        "",
        render_runs(reports),
    ]
    lines += [f"\n{note}" for note in skipped]
    return "\n".join(lines) + "\n"


def node_version() -> str:
    import subprocess

    node = shutil.which("node")
    if node is None:
        return "not installed"
    return subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()


async def main(args: argparse.Namespace) -> int:
    if not js_available():
        print("(no JS clients: Node or tests/js/node_modules is missing; `make js` installs them)")
    root = Path(tempfile.mkdtemp(prefix="socketio-delivery-chaos-"))
    reports: list[Report] = []
    skipped: list[str] = []
    try:
        for variant in args.variants:
            async with contextlib.AsyncExitStack() as stack:
                for name, result in await run_variant(variant, args, root, stack):
                    if isinstance(result, str):
                        skipped.append(f"{name}: {result}")
                        print(f"{name}: {result}")
                    else:
                        reports.append(result)
    finally:
        if args.keep:
            print(f"\nrun folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(render(reports))
    print()
    print(render_runs(reports))
    for note in skipped:
        print(note)
    if args.markdown:
        args.markdown.write_text(markdown(args, reports, skipped))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in reports], indent=2))
    bad = [r for r in reports if r.scenario.mode == "delivery" and r.errors]
    for r in bad:
        print(
            f"DELIVERY ERRORS in {r.scenario.name}: {r.errors} (lost, duplicated, reordered or wrong offsets)"
        )
    return 1 if bad else 0


def run(argv: list[str] | None = None) -> int:
    args: Any = parse_args(argv)
    return asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(run())
