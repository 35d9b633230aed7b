"""The chaos harness behind ``make demo``, ``make chaos`` and ``tests/test_chaos_short.py``.

One engine runs one scenario: a python-socketio server (with or without
:class:`socketio_delivery.Delivery`) in a subprocess, Python and official JS clients
in worker processes, emits at fixed rates to rooms, to single sids and to everyone,
forced transport drops and optional ``kill -9`` restarts of the server. At the end
every client's received events are checked against the store's log of what it was
entitled to (see :mod:`delivery_chaos.oracle`).

    from delivery_chaos import Scenario, run_scenario, render

    report = asyncio.run(run_scenario(Scenario(py_clients=10, js_clients=10, duration=20)))
    print(render([report]))
"""

from .report import Report, render, render_runs
from .run import run_scenario
from .scenario import Scenario

__all__ = ["Report", "Scenario", "render", "render_runs", "run_scenario"]
