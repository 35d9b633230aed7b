"""``make demo``: what socketio-delivery buys, in one table.

A python-socketio server with :class:`socketio_delivery.Delivery` on the embedded SQLite
store emits continuously to rooms, to single clients and to everyone. Python clients
(``socketio_delivery.client.DeliveryClient``) and, when Node is installed (``make js``),
official ``socket.io-client`` clients have their connections cut at random, and the
server process is killed (``kill -9``) and restarted once. Then every client's
receptions are checked against the store's log of what it was owed. The same run
against plain python-socketio shows what is lost without the library.

    .venv/bin/python contrib/examples/demo.py                 # ~1 minute, both runs
    .venv/bin/python contrib/examples/demo.py --no-baseline   # only the Delivery run
    .venv/bin/python contrib/examples/demo.py --clients 40 --duration 60

Exit status 0 when the Delivery run lost, duplicated and reordered nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delivery_chaos import Report, Scenario, render, render_runs, run_scenario
from delivery_chaos.run import js_available

EXPLAIN = """\
What the columns mean (one line per run and client kind):
  expected     events the client was owed: everything addressed to it, its rooms or everyone
               from the moment it first joined, read back from the store's log after the run
  delivered    owed events it received;  lost: owed events it never received
  duplicated   events received more than once;  reordered: events received after a newer one
  recovered / reconnects   reconnects that got the old session back (same sid, rooms and the
               missed events) out of all reconnects (random drops + the server restart)
  resync       reconnects where the server said it could not recover (`delivery:resync`)
  replay p50/p99   from the new connection being open to the recovered session, missed events
               included (reconnect back-off not counted)"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=24, help="clients in all (half Python, half JS)")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds the server emits")
    parser.add_argument(
        "--drop-every", type=float, default=6.0, help="mean seconds between drops, per client"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain python-socketio run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the run folders (logs, store, receptions)")
    return parser.parse_args(argv)


def say(msg: str) -> None:
    print(f"  . {msg}", flush=True)


async def demo(args: argparse.Namespace) -> int:
    js = js_available()
    n_js = args.clients // 2 if js else 0
    base = Scenario(
        name="Delivery + SQLite",
        mode="delivery",
        store="sqlite",
        py_clients=args.clients - n_js,
        js_clients=n_js,
        duration=args.duration,
        rooms=10,
        rooms_per_client=3,
        room_rate=15.0,
        sid_rate=10.0,
        all_rate=3.0,
        drop_every=args.drop_every,
        server_restarts=1,
        seed=args.seed,
    )
    runs = [base]
    if not args.no_baseline:
        runs.append(base.replace(name="plain python-socketio", mode="plain", project_client=False))
    print(
        f"socketio-delivery demo: {base.py_clients} Python + {base.js_clients} JS clients, "
        f"{base.duration:.0f} s of emits, random connection drops, one kill -9 of the server."
    )
    if not js:
        print("  (no JS clients: Node or tests/js/node_modules is missing; `make js` installs them)")
    reports: list[Report] = []
    root = Path(tempfile.mkdtemp(prefix="socketio-delivery-demo-"))
    try:
        for i, scenario in enumerate(runs):
            print(f"\n[{i + 1}/{len(runs)}] {scenario.name}")
            report = await run_scenario(scenario, folder=root / f"run{i + 1}", say=say)
            drops = sum(c.drops for c in report.checks)
            say(
                f"done in {report.elapsed:.0f} s: {report.log_events} events emitted, {drops} forced drops, "
                f"{report.server_restarts} restart"
            )
            for line in report.server_log_errors[:5]:
                say(f"server log: {line}")
            reports.append(report)
    finally:
        if args.keep:
            print(f"\nrun folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(render(reports))
    print()
    print(render_runs(reports))
    print()
    print(EXPLAIN)
    delivery = reports[0]
    print()
    if delivery.errors == 0:
        print(
            "Result: with Delivery every client got every event it was owed, once and in order, through "
            "random drops and a kill -9 of the server."
        )
    else:
        print(f"Result: the Delivery run had {delivery.errors} delivery error(s): see the table above.")
    if len(reports) > 1:
        lost = sum(r.lost for r in reports[1].rows() if r.label != "all")
        print(
            f"Without it (plain python-socketio) {lost} owed events were lost: every reconnect starts a new "
            "session and whatever was sent meanwhile is gone."
        )
    return 0 if delivery.errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(demo(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
