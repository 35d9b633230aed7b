"""Replay: time from reconnect to the last missed event, per store, and the server's memory meanwhile.

    .venv/bin/python bench/replay.py [--missed 1000,10000] [--stores all] [--node]
    .venv/bin/python bench/replay.py --missed 1000,10000,100000     # the big size
    .venv/bin/python bench/replay.py --scale mongodb=0.1            # a slow store: 100, 1000

For each target (Delivery on each store; ``--node``: the Node socket.io 4.8 peer with
connectionStateRecovery) and each number N of missed events:

1. a python-socketio client connects (joins room ``replay``) and receives one event, so it
   has a session id (``pid``) and an offset;
2. live: the server emits N events to the room while the client is connected (the time to
   the last one is the live rate the replay is compared with);
3. the client's transport is closed without a goodbye; the server emits N more events;
4. a new client connects with ``auth={"pid": ..., "offset": ...}``: the time from the
   connect call to the N-th missed event received is the replay time.

A batch stops after ``--seconds`` (a slow store): then N is what was sent (noted).
Columns: replay ev/s, live ev/s, replay/live; recovered (same pid back, no resync, exactly N
events); server RSS before the reconnect and its peak during the replay (sampled every 20 ms).
``--scale STORE=F``: that store replays F times each ``--missed`` count (noted). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    SCALE_HELP,
    RssSampler,
    Stores,
    run_main,
    scale_note,
    scaled,
    store_list,
    store_scales,
    table,
)
from _sio import Client, Target, blast, control
from e2e import targets

#: the server stops emitting a batch after this many seconds (a slow store); noted
SECONDS = 60.0


async def replay_once(target: Target, ctl: Client, n: int, emitters: int) -> list[object]:
    """[replay s, replay ev/s, live ev/s, recovered, RSS before MB, RSS peak MB, note]."""
    room = f"replay-{n}"
    first = Client()
    await first.connect(target.url, {"room": room})
    await blast(ctl, [first], 1, room=room, emitters=1)
    limit = SECONDS
    live_seconds, _, live = await blast(ctl, [first], n, room=room, emitters=emitters, seconds=limit)
    pid, offset = first.pid, first.offset
    await first.drop()
    await asyncio.sleep(0.5)  # the server notices the closed transport and keeps the session
    _, _, missed = await blast(ctl, [], n, room=room, emitters=emitters, seconds=limit)
    again = Client()
    done = again.expect(missed)
    note = "" if missed == n else f"time limit: {missed} missed"
    with RssSampler([target.pid], interval=0.02) as rss:
        start = time.perf_counter()
        try:
            await again.connect(target.url, {"pid": pid, "offset": offset, "room": room})
            end = await asyncio.wait_for(done, 60 + missed / 20)
        except Exception as exc:  # reported in the table
            end = float("nan")
            note = f"{type(exc).__name__}: {exc} ({again.count} of {missed} arrived)"[:90]
    await asyncio.sleep(0.2)  # duplicates, if any, arrive
    same = again.pid is not None and again.pid == pid
    recovered = same and again.resync is None and again.count == missed
    if not recovered and not note:
        note = f"pid {'same' if same else 'new'}, resync={again.resync}, got {again.count} of {missed}"
    await again.disconnect()
    seconds = end - start
    return [
        seconds,
        missed / seconds,
        live / live_seconds,
        "yes" if recovered else "NO",
        rss.first_mb(target.pid),
        rss.peak_mb(target.pid),
        note,
    ]


async def run_target(target: Target, sizes: list[int], emitters: int) -> list[list[object]]:
    rows: list[list[object]] = []
    with target:
        ctl = await control(target.url)
        for n in sizes:
            try:
                rows.append([n, *await replay_once(target, ctl, n, emitters)])
            except Exception as exc:
                rows.append(
                    [
                        n,
                        None,
                        None,
                        None,
                        "NO",
                        None,
                        None,
                        f"{type(exc).__name__}: {exc or 'no answer in time'}"[:90],
                    ]
                )
        await ctl.disconnect()
    return rows


def keep_for(sizes: list[int]) -> int:
    """Retention for the replay servers: never trims what a client missed."""
    return max(1_000_000, 3 * max(sizes) + 1000)


def print_table(results: list[tuple[str, list[list[object]]]], notes: list[str]) -> str:
    rows = [[label, *row] for label, target_rows in results for row in target_rows]
    for row in rows:
        replay_rate, live_rate = row[3], row[4]
        ok = isinstance(replay_rate, float) and isinstance(live_rate, float) and live_rate
        row.insert(5, f"{100 * replay_rate / live_rate:.0f} %" if ok else "-")  # type: ignore[operator]
    header = ["server", "missed", "replay s", "replay ev/s", "live ev/s", "replay/live", "recovered"]
    return table(
        "Replay after reconnect (connection state recovery, pid + offset)",
        [*header, "RSS before MB", "RSS peak MB", "note"],
        rows,
        notes=notes,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--missed", default="1000,10000", help="missed events (default 1000,10000)")
    parser.add_argument("--emitters", type=int, default=16, help="concurrent server emit tasks (default 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit of one batch (default 60)")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--node", action="store_true", help="add the Node socket.io 4.8 peer")
    parser.add_argument("--scale", default="", help=SCALE_HELP)
    args = parser.parse_args()
    global SECONDS
    SECONDS = args.seconds
    sizes = [int(x) for x in args.missed.split(",")]
    scales = store_scales(args.scale)
    notes: list[str] = []
    async with Stores(store_list(args.stores)) as stores:
        found = targets(stores, notes, plain=False, node=args.node, max_events=keep_for(sizes))
        own: dict[str, list[int]] = {}
        for name in stores.working:
            if name in scales:
                own[f"Delivery + {name}"] = ns = [scaled(n, scales[name]) for n in sizes]
                notes.append(scale_note(name, scales[name], f"{', '.join(f'{n:,}' for n in ns)} missed"))
        results = [(t.label, await run_target(t, own.get(t.label, sizes), args.emitters)) for t in found]
    print_table(results, notes)


if __name__ == "__main__":
    run_main(main)
