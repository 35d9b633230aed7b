"""The short chaos run: nothing lost, duplicated or reordered under drops and a kill -9.

30 clients (Python ``DeliveryClient`` and the official ``socket.io-client`` in Node),
each in 3 of 10 rooms, for 20 s of emits to rooms, single sids and everyone; every
client's transport is aborted at random (TCP abort, no goodbye) and the server process
is killed with ``kill -9`` and restarted once. Every client's receptions are checked
against the SQLite store's log (see ``contrib/examples/delivery_chaos/oracle.py``).
The full-size run is ``make chaos`` (``bench/chaos.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contrib" / "examples"))

from delivery_chaos import Report, Scenario, render, run_scenario
from delivery_chaos.oracle import check_run
from delivery_chaos.run import js_available


def describe_failures(report: Report) -> str:
    lines = []
    for check in report.checks:
        bad = check.lost or check.duplicated or check.reordered or check.phantom or check.bad_offset
        if bad or check.problems or check.resyncs:
            lines.append(
                f"{check.id}: lost {check.lost} {check.lost_sample}, duplicated {check.duplicated}, "
                f"reordered {check.reordered}, phantom {check.phantom}, wrong offset {check.bad_offset}, "
                f"resyncs {check.resync_reasons}, problems {check.problems}"
            )
    return "\n".join(lines)


@pytest.mark.node
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_no_event_lost_duplicated_or_reordered_under_drops_and_a_server_kill(tmp_path: Path) -> None:
    if not js_available():
        pytest.skip("Node or tests/js/node_modules missing (make js)")
    scenario = Scenario(
        name="short",
        mode="delivery",
        store="sqlite",
        py_clients=15,
        js_clients=15,
        duration=20.0,
        rooms=10,
        rooms_per_client=3,
        room_rate=15.0,
        sid_rate=10.0,
        all_rate=3.0,
        drop_every=5.0,
        server_restarts=1,
        seed=3,
    )
    report = await run_scenario(scenario, folder=tmp_path / "run")
    table = render([report])
    summary = f"\n{table}\n{describe_failures(report)}\nrun folder: {report.folder}"
    assert all(check.expected > 0 for check in report.checks), summary
    assert sum(check.drops for check in report.checks) > 0, summary
    assert report.server_restarts == 1, summary
    assert report.errors == 0, summary
    assert all(check.got_end for check in report.checks), summary


@pytest.mark.node
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_same_chaos_loses_events_on_plain_python_socketio(tmp_path: Path) -> None:
    """The harness is not blind: without Delivery, drops lose events and the run says so."""
    if not js_available():
        pytest.skip("Node or tests/js/node_modules missing (make js)")
    scenario = Scenario(
        name="plain",
        mode="plain",
        store="sqlite",
        py_clients=5,
        js_clients=5,
        duration=10.0,
        rooms=4,
        rooms_per_client=2,
        room_rate=15.0,
        sid_rate=10.0,
        all_rate=5.0,
        drop_every=2.0,
        project_client=False,
        seed=5,
    )
    report = await run_scenario(scenario, folder=tmp_path / "run")
    summary = f"\n{render([report])}\nrun folder: {report.folder}"
    assert sum(check.drops for check in report.checks) > 0, summary
    assert sum(check.lost for check in report.checks) > 0, summary
    assert sum(check.recovered for check in report.checks) == 0, summary


def test_oracle_counts_lost_duplicated_reordered_and_sid_windows() -> None:
    """The checker itself: a green chaos run means something only if it sees every kind of fault."""
    events = [
        {"offset": "e-01", "rooms": [], "cx": "a"},  # before the client joined: not owed
        {"offset": "e-02", "rooms": ["r1"], "cx": "b"},
        {"offset": "e-03", "rooms": ["r2"], "cx": "c"},  # another room: not owed
        {"offset": "e-04", "rooms": [], "cx": "d"},
        {"offset": "e-05", "rooms": ["sid-1"], "cx": "e"},  # its first sid: owed
        {"offset": "e-06", "rooms": ["r1"], "cx": "f"},
        {"offset": "e-07", "rooms": ["sid-1"], "cx": "g"},  # old sid after the new one: not owed
        {"offset": "e-08", "rooms": ["sid-2"], "cx": "h"},
        {"offset": "e-09", "rooms": [], "cx": "i"},
    ]
    metas = [
        {"client": "c1", "sid": "sid-1", "rooms": ["r1"], "boundary": "e-01"},
        {"client": "c1", "sid": "sid-2", "rooms": ["r1"], "boundary": "e-06"},
    ]
    received = ["a", "b", "d", "d", "f", "e", "h", "zz"]  # e lost in place, d twice, e late, zz unknown
    result = {
        "id": "c1",
        "kind": "py",
        "received": received,
        "offsets": [None, "e-02", "e-04", "e-04", "e-06", "e-05", "e-99", None],
        "reconnects": 1,
        "recovered": 0,
        "resyncs": 1,
        "drops": 1,
        "got_end": True,
        "latencies": [],
    }
    (check,) = check_run({"events": events, "metas": metas}, [result])
    assert check.expected == 6  # b d e f h i
    assert check.delivered == 5
    assert check.lost == 1  # i
    assert check.duplicated == 1
    assert check.reordered == 1  # e after f
    assert check.phantom == 1
    assert check.bad_offset == 1  # h came with e-99
