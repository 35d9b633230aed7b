"""Smoke test: every benchmark runs to the end with tiny sizes and prints its table.

    .venv/bin/python -m pytest -q -p no:randomly bench/test_bench_smoke.py

Checks that the scripts work (exit 0, tables printed, every replay recovered, no cell failed);
never looks at a number.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent
STORES = ["--stores", "memory,sqlite"]
RECOVERED = re.compile(r"\|\s*yes\s*\|")


def run(part: str, *args: str, timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{part}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def rows(output: str, first: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"| {first}")]


def test_persist_prints_store_and_raw_rates() -> None:
    out = run("persist", "--events", "200", "--emitters", "1,16", *STORES, "--scale", "sqlite=0.5")
    assert "### Persist throughput" in out
    assert len(rows(out, "memory")) == 2
    assert len(rows(out, "sqlite")) == 2
    assert "sqlite: smaller sizes in this run (100 events per cell" in out
    assert "memory: smaller" not in out


def test_e2e_measures_plain_and_delivery() -> None:
    out = run("e2e", "--events", "20", "--clients", "1,3", *STORES, "--scale", "sqlite=0.5")
    assert "### End-to-end emit throughput" in out
    measured = rows(out, "plain") + rows(out, "Delivery")
    assert len(measured) == 6
    assert not [r for r in measured if "Error" in r]
    assert "sqlite: smaller sizes in this run (10 events per run" in out


def test_replay_recovers_every_session() -> None:
    out = run("replay", "--missed", "50", *STORES, "--scale", "sqlite=0.5")
    measured = rows(out, "Delivery")
    assert len(measured) == 2
    assert all(RECOVERED.search(r) for r in measured), out
    assert re.search(r"\| Delivery \+ sqlite\s*\|\s*25 \|", out), out


def test_soak_samples_memory() -> None:
    out = run(
        "soak", "--events", "3000", "--keep", "500", "--seconds", "30", *STORES, "--scale", "sqlite=0.5"
    )
    assert len(rows(out, "memory")) >= 2
    assert "500 retained" in out
    assert "250 retained" in out  # sqlite: --keep scaled


def test_growth_prints_three_tables() -> None:
    out = run(
        *("growth", "--lengths", "0,300", "--rooms", "1,10", "--room-events", "200", "--missed", "100"),
        *(*STORES, "--scale", "sqlite=0.5"),
    )
    assert out.count("### Growth") == 3
    assert re.search(r"\| sqlite\s*\|\s*150 \|", out), out  # lengths scaled


def test_default_run_keeps_every_part_and_big_has_full_sizes() -> None:
    sys.path.insert(0, str(BENCH))
    import run as bench_run

    assert list(bench_run.SMALL) == list(bench_run.BIG)
    assert not any("--scale" in args for args in bench_run.BIG.values())


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_peer_runs_the_node_server() -> None:
    if not (BENCH.parent / "tests" / "js" / "node_modules" / "socket.io").is_dir():
        pytest.skip("tests/js/node_modules missing (make js)")
    out = run("peer", "--events", "20", "--clients", "1", "--missed", "50", "--stores", "memory")
    node = rows(out, "node")
    assert len(node) == 2, out
    assert RECOVERED.search(node[1]), out
