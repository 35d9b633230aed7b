"""The short fault matrix: two rows of ``bench/faults.py`` (``make chaos`` runs them all), for CI.

Each row runs the Delivery test app in its own process on SQLite with a few ``DeliveryClient``
clients, applies one fault, and counts what went wrong (see ``bench/faults.py``): every
count must be zero. About 20 s per row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from faults import Row, render, run_row


def summary(row: Row) -> str:
    return "\n" + render([row]) + "\n" + "\n".join(row.notes)


async def run_short(store: str, fault: str, tmp_path: Path) -> Row:
    return await run_row(
        store,
        fault,
        clients=3,
        fault_seconds=5.0,
        warmup=2.0,
        after=2.0,
        settle=12.0,
        folder=tmp_path / "row",
        say=lambda message: None,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_locked_sqlite_store_loses_stalls_and_hangs_nothing(tmp_path: Path) -> None:
    row = await run_short("sqlite", "paused", tmp_path)
    assert row.emits_ok > 0, summary(row)
    assert row.clean, summary(row)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_client_on_a_slow_link_keeps_its_session_and_its_events(tmp_path: Path) -> None:
    row = await run_short("sqlite", "slow-2", tmp_path)
    assert row.emits_ok > 0, summary(row)
    assert row.clean, summary(row)
