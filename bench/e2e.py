"""End-to-end emit throughput over real WebSockets: plain python-socketio vs Delivery on each store.

    .venv/bin/python bench/e2e.py [--events 500] [--clients 1,10,100] [--stores all] [--node]

Each target is a server in its own process (uvicorn, python-socketio 5; ``--node`` adds
the Node socket.io 4.8 peer with connectionStateRecovery). The clients (python-socketio
``AsyncClient`` over WebSocket) run in this process, all in one room. A control client asks
the server to emit ``--events`` ``tick`` events to the room from ``--emitters`` concurrent
tasks; the time runs from that request until every client got every event. A cell is the
median of 3 runs (1 run when it takes more than 2 s). Both servers use a 60 s ping interval
and a 120 s ping timeout, so a client that is far behind is not dropped as dead.

Columns: ev/s = events emitted per second (each one reaches every client); deliveries/s =
ev/s x clients; vs plain = ev/s against plain python-socketio with the same clients, same
run; server CPU s / client CPU s = CPU seconds the server process / this (client) process
used for the measured events; CPU vs plain = server CPU against plain's. On 2 cores the one
client process is the bottleneck at 100 clients (its CPU ~ the elapsed time): there the
server's CPU is the cost to compare. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import Stores, run_main, skipped_notes, store_list, table
from _sio import Target, blast, close_all, connect_clients, control


def delivery_missing() -> str | None:
    try:
        from socketio_delivery import Delivery  # type: ignore[attr-defined]  # noqa: F401
    except ImportError as exc:
        return f"socketio_delivery.Delivery not importable ({exc})"
    return None


def _pct(value: object, base: object) -> str:
    if isinstance(value, float) and isinstance(base, float) and base:
        return f"{100 * value / base:.0f} %"
    return "-"


async def run_target(
    target: Target, counts: list[int], events: int, emitters: int, publish: bool = False
) -> list[list[object]]:
    """One row per client count: [clients, ev/s, deliveries/s, server CPU s, client CPU s, note]."""
    rows: list[list[object]] = []
    me = psutil.Process()
    with target:
        ctl = await control(target.url)
        for count in counts:
            clients = await connect_clients(target.url, count)
            try:
                await blast(ctl, clients, min(50, events), emitters=emitters, publish=publish)  # warm-up
                runs: list[tuple[float, float, float]] = []
                while len(runs) < 3:  # the median of 3 runs, or 1 run when it takes long
                    server_cpu, client_cpu = target.cpu_seconds(), sum(me.cpu_times()[:2])
                    seconds, _ = await blast(ctl, clients, events, emitters=emitters, publish=publish)
                    server_cpu = target.cpu_seconds() - server_cpu
                    client_cpu = sum(me.cpu_times()[:2]) - client_cpu
                    runs.append((seconds, server_cpu, client_cpu))
                    if seconds > 2.0:
                        break
                seconds, server_cpu, client_cpu = sorted(runs)[len(runs) // 2]
                rate = events / seconds
                rows.append([count, rate, rate * count, server_cpu, client_cpu, ""])
            except Exception as exc:
                rows.append(
                    [
                        count,
                        None,
                        None,
                        None,
                        None,
                        f"{type(exc).__name__}: {exc or 'no answer in time'}"[:90],
                    ]
                )
            finally:
                await close_all(clients)
                await asyncio.sleep(0.2)
        await ctl.disconnect()
    return rows


def targets(
    stores: Stores, notes: list[str], *, plain: bool = True, node: bool = False, **kw: int
) -> list[Target]:
    """plain python-socketio, Delivery on each working store, the Node peer; skipped ones noted."""
    found = [Target.python("plain python-socketio", None)] if plain else []
    missing = delivery_missing()
    if missing:
        notes.append(f"skipped Delivery rows: {missing}")
    else:
        found += [Target.python(f"Delivery + {name}", url, **kw) for name, url in stores.urls()]
    notes += skipped_notes(stores)
    if node:
        why = Target.node_missing()
        if why:
            notes.append(f"skipped node peer: {why}")
        else:
            found.append(Target.node())
    return found


async def measure(
    found: list[Target], counts: list[int], events: int, emitters: int, publish: bool = False
) -> list[tuple[str, list[list[object]]]]:
    return [(t.label, await run_target(t, counts, events, emitters, publish)) for t in found]


def print_table(
    results: list[tuple[str, list[list[object]]]], events: int, emitters: int, notes: list[str]
) -> str:
    plain = {row[0]: row for label, rows in results if label.startswith("plain") for row in rows}
    out: list[list[object]] = []
    for label, target_rows in results:
        for count, rate, deliveries, scpu, ccpu, note in target_rows:
            base = plain.get(count, [None] * 6)
            out.append(
                [label, count, rate, deliveries, _pct(rate, base[1]), scpu, _pct(scpu, base[3]), ccpu, note]
            )
    header = ["server", "clients", "ev/s", "deliveries/s", "vs plain", "server CPU s", "CPU vs plain"]
    return table(
        f"End-to-end emit throughput, {events} events per cell, {emitters} server emit tasks",
        [*header, "client CPU s", "note"],
        out,
        notes=notes,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500, help="events per measurement (default 500)")
    parser.add_argument("--clients", default="1,10,100", help="connected clients (default 1,10,100)")
    parser.add_argument("--emitters", type=int, default=16, help="concurrent server emit tasks (default 16)")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--node", action="store_true", help="add the Node socket.io 4.8 peer")
    parser.add_argument("--publish", action="store_true", help="Delivery rows use delivery.publish")
    args = parser.parse_args()
    counts = [int(x) for x in args.clients.split(",")]
    notes: list[str] = []
    start = time.perf_counter()
    async with Stores(store_list(args.stores)) as stores:
        found = targets(stores, notes, node=args.node)
        results = await measure(found, counts, args.events, args.emitters, args.publish)
    print_table(results, args.events, args.emitters, [*notes, f"({time.perf_counter() - start:.0f} s)"])


if __name__ == "__main__":
    run_main(main)
