"""End-to-end emit throughput over real WebSockets: plain python-socketio vs Delivery on each store.

    .venv/bin/python bench/e2e.py [--events 500] [--clients 1,10,100] [--stores all] [--node]
                                  [--scale mongodb=0.2]

Each target is a server in its own process (uvicorn, python-socketio 5; ``--node`` adds
the Node socket.io 4.8 peer with connectionStateRecovery). The clients (python-socketio
``AsyncClient`` over WebSocket) run in this process, all in one room. A control client asks
the server to emit ``--events`` ``tick`` events to the room from ``--emitters`` concurrent
tasks; the time runs from that request until every client got every event. All servers run
at once and the runs go round them (3 rounds; 1 at 100 clients), so a burst of load on the
machine hits them alike; a cell is the median of its runs. A run stops emitting after
``--seconds`` (a slow store): its rate counts the events sent, and CPU is scaled to
``--events`` events. Both servers use a 60 s ping interval
and a 120 s ping timeout, so a client that is far behind is not dropped as dead.

Columns: ev/s = events emitted per second (each one reaches every client); deliveries/s =
ev/s x clients; vs plain = ev/s against plain python-socketio with the same clients, same
run; server CPU s / client CPU s = CPU seconds the server process / this (client) process
used for the measured events; CPU vs plain = server CPU against plain's. On 2 cores the one
client process is the bottleneck at 100 clients (its CPU ~ the elapsed time): there the
server's CPU is the cost to compare. ``--scale STORE=F``: that store's runs emit F times
``--events`` (noted; its CPU columns are still per ``--events`` events). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _common import (
    SCALE_HELP,
    Stores,
    run_main,
    scale_note,
    scaled,
    skipped_notes,
    store_list,
    store_scales,
    table,
)
from _sio import Client, Target, blast, close_all, connect_clients, control


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


def _failed(count: int, exc: BaseException) -> list[object]:
    return [count, None, None, None, None, f"{type(exc).__name__}: {exc or 'no answer in time'}"[:90]]


#: a blast stops emitting after this many seconds (a slow store); the cell says how many went
CELL_SECONDS = 20.0


async def _one_run(
    target: Target,
    ctl: Client,
    clients: list[Client],
    events: int,
    emitters: int,
    publish: bool,
    cpu_per: int,
) -> tuple[float, float, float, int]:
    """(events/s, server CPU s, client CPU s, events sent) of one blast; CPU scaled to ``cpu_per`` events."""
    me = psutil.Process()
    server_cpu, client_cpu = target.cpu_seconds(), sum(me.cpu_times()[:2])
    seconds, _, sent = await blast(
        ctl, clients, events, emitters=emitters, publish=publish, seconds=CELL_SECONDS
    )
    server_cpu = target.cpu_seconds() - server_cpu
    client_cpu = sum(me.cpu_times()[:2]) - client_cpu
    return sent / seconds, server_cpu * cpu_per / sent, client_cpu * cpu_per / sent, sent


async def measure(
    found: list[Target],
    counts: list[int],
    events: int,
    emitters: int,
    publish: bool = False,
    repeat: int = 3,
    sizes: Mapping[str, int] | None = None,
) -> list[tuple[str, list[list[object]]]]:
    """Rows per target, one per client count: [clients, ev/s, deliveries/s, server CPU s, client CPU s, note].

    Every target runs at once; for each client count, every target gets its clients, then
    the runs go round the targets ``repeat`` times (so load on the machine hits them alike)
    and each cell is the median. A cell that fails gets its error as the note. ``sizes``:
    events per run of some targets (by label) instead of ``events``; their CPU columns are
    still per ``events`` events.
    """
    sizes = sizes or {}
    rows: dict[str, list[list[object]]] = {t.label: [] for t in found}
    with contextlib.ExitStack() as stack:
        for target in found:
            stack.enter_context(target)
        ctls = {t.label: await control(t.url) for t in found}
        for count in counts:
            clients: dict[str, list[Client]] = {}
            runs: dict[str, list[tuple[float, float, float, int]]] = {t.label: [] for t in found}
            failed: dict[str, BaseException] = {}
            try:
                for target in found:
                    clients[target.label] = await connect_clients(target.url, count)
                    warm = min(50, sizes.get(target.label, events))
                    await blast(
                        ctls[target.label],
                        clients[target.label],
                        warm,
                        emitters=emitters,
                        publish=publish,
                        seconds=CELL_SECONDS,
                    )
                for _ in range(repeat if count < 100 else 1):
                    for target in found:
                        if target.label in failed:
                            continue
                        try:
                            run = await _one_run(
                                target,
                                ctls[target.label],
                                clients[target.label],
                                sizes.get(target.label, events),
                                emitters,
                                publish,
                                cpu_per=events,
                            )
                            runs[target.label].append(run)
                        except Exception as exc:
                            failed[target.label] = exc
            except Exception as exc:
                for target in found:
                    failed.setdefault(target.label, exc)
            finally:
                for group in clients.values():
                    await close_all(group)
                await asyncio.sleep(0.2)
            for target in found:
                if target.label in failed:
                    rows[target.label].append(_failed(count, failed[target.label]))
                    continue
                rate, server_cpu, client_cpu, sent = sorted(runs[target.label])[len(runs[target.label]) // 2]
                n = sizes.get(target.label, events)
                note = "" if sent == n else f"time limit: {sent} of {n} events sent"
                rows[target.label].append([count, rate, rate * count, server_cpu, client_cpu, note])
        for ctl in ctls.values():
            await ctl.disconnect()
    return list(rows.items())


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
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit of one run (default 20)")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--node", action="store_true", help="add the Node socket.io 4.8 peer")
    parser.add_argument("--publish", action="store_true", help="Delivery rows use delivery.publish")
    parser.add_argument("--scale", default="", help=SCALE_HELP)
    args = parser.parse_args()
    scales = store_scales(args.scale)
    global CELL_SECONDS
    CELL_SECONDS = args.seconds
    counts = [int(x) for x in args.clients.split(",")]
    notes: list[str] = []
    start = time.perf_counter()
    async with Stores(store_list(args.stores)) as stores:
        found = targets(stores, notes, node=args.node)
        sizes: dict[str, int] = {}
        for name in stores.working:
            if name in scales:
                sizes[f"Delivery + {name}"] = n = scaled(args.events, scales[name])
                notes.append(scale_note(name, scales[name], f"{n:,} events per run, CPU per {args.events:,}"))
        results = await measure(found, counts, args.events, args.emitters, args.publish, sizes=sizes)
    print_table(results, args.events, args.emitters, [*notes, f"({time.perf_counter() - start:.0f} s)"])


if __name__ == "__main__":
    run_main(main)
