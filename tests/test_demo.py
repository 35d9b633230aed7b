"""``make demo`` (``contrib/examples/demo.py``) runs and reports nothing lost, duplicated or reordered.

A short run: 4 clients (half of them the JS client when Node is installed), 3 s of emits,
random drops and one kill -9 of the server, without the plain python-socketio baseline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "contrib" / "examples" / "demo.py"


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of the demo's result table (Markdown), keyed by its header's column names."""
    header: list[str] = []
    rows = []
    for line in output.splitlines():
        if not line.startswith("| "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "run":
            header = cells
        elif header:
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_demo_reports_nothing_lost_duplicated_or_reordered(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's run folders (store, logs) go here
    env.pop("SOCKETIO_DELIVERY_STORE_URL", None)
    done = subprocess.run(
        [sys.executable, str(DEMO), "--clients", "4", "--duration", "3", "--no-baseline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[1/1] Delivery + SQLite" in out
    rows = [row for row in table_rows(out) if row["run"] == "Delivery + SQLite"]
    total = next(row for row in rows if row["clients"].startswith("all"))
    assert total["clients"] == "all 4", out
    assert int(total["expected"]) > 0, out
    assert total["delivered"] == total["expected"], out
    assert (total["lost"], total["duplicated"], total["reordered"]) == ("0", "0", "0"), out
    assert "Result: with Delivery every client got every event it was owed, once and in order" in out
    assert list(tmp_path.iterdir()) == [], "the demo leaves no files behind"
