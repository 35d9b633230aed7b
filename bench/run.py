"""Every benchmark, one after the other, with small defaults; prints every table.

    make bench                                   # = .venv/bin/python bench/run.py  (about 5 min, 2 cores)
    .venv/bin/python bench/run.py --big          # the big sizes (1M-event soak, 100k replays, ...)
    .venv/bin/python bench/run.py --only persist,replay --output /tmp/bench.md

Parts (each one also runs alone: ``.venv/bin/python bench/<part>.py --help``):

1. persist  persist throughput per store next to the raw driver (1, 16, 256 emitters)
2. e2e      end-to-end emit throughput over WebSockets, 1/10/100 clients: plain python-socketio,
            Delivery on each store and (5.) the Node socket.io 4.8 peer with connectionStateRecovery
3. replay   time from reconnect to the last missed event, server memory meanwhile (with the peer)
4. soak     many events through each store with retention on, resident memory sampled
6. growth   persist and replay cost against stream length, rooms and missed events

(``bench/peer.py`` runs part 5 alone; here its rows are in the e2e and replay tables.)
Stores that are not installed or do not work are skipped with a note. Nothing asserts on time.
The default run gives the slowest store (mongodb rows: SecantusDB, a MongoDB-compatible server
written in Python) a fraction of the sizes (``--scale mongodb=...``, noted under each table)
and shortens the soak; ``--big`` runs every store at the big sizes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH, machine

#: the default run: about 5 minutes on 2 cores. SecantusDB (the mongodb rows, a MongoDB-compatible
#: server written in Python) is 10 to 100 times slower than the other stores: it gets a fraction of
#: the sizes (``--scale``, noted under each table) instead of running into every time limit.
SMALL: dict[str, list[str]] = {
    "persist": ["--scale", "mongodb=0.2"],
    "e2e": ["--node", "--scale", "mongodb=0.2"],
    "replay": ["--node", "--scale", "mongodb=0.1"],
    "soak": ["--events", "100000", "--keep", "2000", "--seconds", "15", "--scale", "mongodb=0.1"],
    "growth": ["--fill-seconds", "20", "--scale", "mongodb=0.1"],
}
#: ``--big``: every store at the full sizes
BIG: dict[str, list[str]] = {
    "persist": ["--events", "20000"],
    "e2e": ["--node", "--events", "5000"],
    "replay": ["--node", "--missed", "1000,10000,100000"],
    "soak": ["--events", "1000000", "--seconds", "900"],
    "growth": [
        *("--lengths", "0,10000,100000,1000000", "--missed", "1000,10000,100000"),
        *("--fill-seconds", "300"),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--big", action="store_true", help="the big sizes (takes much longer)")
    parser.add_argument("--only", default="", help=f"comma-separated parts of: {', '.join(SMALL)}")
    parser.add_argument("--stores", default="all", help="comma-separated: memory,sqlite,redis,mongodb")
    parser.add_argument("--output", default="", help="also write everything printed to this file")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()] or list(SMALL)
    for part in parts:
        if part not in SMALL:
            raise SystemExit(f"unknown part {part!r}; parts: {', '.join(SMALL)}")
    sizes = BIG if args.big else SMALL
    command = " ".join(["bench/run.py", *sys.argv[1:]])
    header = [
        f"# socketio-delivery benchmarks, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}",
        f"Load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"Command: {command}",
        "",
    ]
    out = ["\n".join(header)]
    print(out[0], flush=True)
    failed = []
    for part in parts:
        argv = [sys.executable, str(BENCH / f"{part}.py"), *sizes[part], "--stores", args.stores]
        print(f"## {part}: {' '.join(['bench/' + part + '.py', *argv[2:]])}\n", flush=True)
        out.append(f"## {part}: {' '.join(['bench/' + part + '.py', *argv[2:]])}\n")
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=BENCH.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.append(line.rstrip("\n"))
        code = proc.wait()
        took = f"({part} took {time.perf_counter() - start:.0f} s{'' if code == 0 else f', EXIT {code}'})\n"
        print(took, flush=True)
        out.append(took)
        if code:
            failed.append(part)
    if args.output:
        Path(args.output).write_text("\n".join(out) + "\n")
    if failed:
        raise SystemExit(f"parts that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
