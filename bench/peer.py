"""Peer: the same end-to-end and replay workloads on the Node socket.io 4.8 server.

    .venv/bin/python bench/peer.py [--events 500] [--clients 1,10,100] [--missed 1000,10000]
                                   [--stores memory,sqlite]

The Node server (bench/peer_server.js) runs socket.io 4.8 with ``connectionStateRecovery``
and its in-memory adapter; socket.io comes from tests/js (``make js`` installs it from npm
with the lock file). It answers the same events as the python-socketio server, so the same
python-socketio clients drive both. Our rows (plain python-socketio and Delivery on
``--stores``) are measured in the same run, next to it. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e
import replay
from _common import Stores, run_main, store_list


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500, help="events per e2e measurement (default 500)")
    parser.add_argument("--clients", default="1,10,100", help="connected clients (default 1,10,100)")
    parser.add_argument("--missed", default="1000,10000", help="missed events to replay (default 1000,10000)")
    parser.add_argument("--emitters", type=int, default=16, help="concurrent server emit tasks (default 16)")
    parser.add_argument(
        "--stores", default="memory,sqlite", help="stores of our rows (default memory,sqlite)"
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.clients.split(",")]
    sizes = [int(x) for x in args.missed.split(",")]
    notes: list[str] = []
    start = time.perf_counter()
    async with Stores(store_list(args.stores)) as stores:
        found = e2e.targets(stores, notes, node=True)
        if not any(t.label.startswith("node") for t in found):
            print("\n".join(notes))
            raise SystemExit("the Node peer cannot run (see above)")
        results = await e2e.measure(found, counts, args.events, args.emitters)
        e2e.print_table(results, args.events, args.emitters, ["(peer run)", *notes])
        notes = []
        found = e2e.targets(stores, notes, plain=False, node=True, max_events=replay.keep_for(sizes))
        replayed = [(t.label, await replay.run_target(t, sizes, args.emitters)) for t in found]
        replay.print_table(replayed, [*notes, f"(peer run: {time.perf_counter() - start:.0f} s)"])


if __name__ == "__main__":
    run_main(main)
