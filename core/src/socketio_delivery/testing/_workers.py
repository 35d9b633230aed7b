"""Worker processes for the multi-process tests of the conformance suite.

The parent runs this file as a script (``python .../_workers.py JOB``, so that
importing the worker does not import pytest and hypothesis) once per worker
(``JOB`` is JSON). Each worker opens the store with
``open_store(url, **options)``, prints ``ready``, waits for ``go`` on stdin (so
all workers start the operation together), runs it, prints one JSON line with
the result and closes the store.

Operations: ``persist`` (``stream``, ``tasks`` concurrent writers of ``count``
events each; result: the offsets), ``claim`` (``keys``: claimed concurrently;
result: the records or ``null``), ``reserve`` (``keys``, ``lease``; result: the
:class:`~socketio_delivery.KeyState` values).

::

    results = await run_workers(
        "sqlite:////tmp/x.db", {}, [{"op": "claim", "keys": ["k"]}] * 3
    )
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["run_workers"]

READY = b"ready\n"
_SCRIPT = os.path.abspath(__file__)


async def run_workers(
    url: str,
    options: Mapping[str, Any],
    jobs: Sequence[Mapping[str, Any]],
    *,
    imports: Sequence[str] = (),
    timeout: float = 60.0,
) -> list[Any]:
    """Run one worker process per job against ``url``; return their results in job order.

    ``imports`` are modules every worker imports first (for stores made available
    with :func:`~socketio_delivery.register` rather than an entry point).
    Raises ``AssertionError`` with the worker's stderr when a worker fails.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for job in jobs:
            payload = json.dumps({"url": url, "options": dict(options), "imports": list(imports), **job})
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    _SCRIPT,
                    payload,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
        for proc in procs:
            await asyncio.wait_for(_until_ready(proc), timeout)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        results = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            if proc.returncode != 0:
                raise AssertionError(f"worker failed ({proc.returncode}):\n{err.decode(errors='replace')}")
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _until_ready(proc: asyncio.subprocess.Process) -> None:
    """Skip what the store may print while opening, up to the ``ready`` line."""
    assert proc.stdout is not None
    said: list[bytes] = []
    while (line := await proc.stdout.readline()) != READY:
        if not line:
            await _fail(proc, f"worker exited before it was ready (said {b''.join(said)[-500:]!r})")
        said.append(line)


async def _fail(proc: asyncio.subprocess.Process, why: str) -> None:
    proc.kill()
    _, err = await proc.communicate()
    raise AssertionError(f"{why}:\n{err.decode(errors='replace')}")


async def _work(job: dict[str, Any]) -> Any:
    from socketio_delivery.errors import SessionBusyError
    from socketio_delivery.registry import open_store
    from socketio_delivery.store import Reservation

    for name in job.get("imports", []):
        importlib.import_module(name)
    store = open_store(job["url"], **job.get("options", {}))
    await store.open()
    try:
        sys.stdout.buffer.write(READY)
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        op = job["op"]
        if op == "persist":
            stream, tag = job["stream"], job.get("tag", os.getpid())

            async def writer(task: int) -> list[str]:
                offsets = []
                for i in range(job["count"]):
                    event = await store.persist(stream, {"w": tag, "t": task, "i": i})
                    offsets.append(event.offset)
                    if i % 3 == 0:
                        await asyncio.sleep(0)
                return offsets

            per_task = await asyncio.gather(*(writer(t) for t in range(job.get("tasks", 1))))
            return [offset for offsets in per_task for offset in offsets]
        if op == "claim":
            lease = job.get("lease")

            async def claim(key: str) -> Any:
                try:
                    return (
                        await store.claim_session(key, lease=lease)
                        if lease
                        else await store.claim_session(key)
                    )
                except SessionBusyError:
                    return "busy"

            return await asyncio.gather(*(claim(k) for k in job["keys"]))
        if op == "reserve":
            got: list[Reservation] = await asyncio.gather(
                *(store.reserve_key(k, job["lease"]) for k in job["keys"])
            )
            return [r.state.value for r in got]
        raise ValueError(f"unknown worker op {op!r}")
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    result = asyncio.run(_work(json.loads(args[0])))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    # Run as a script: this folder is not a place to import top-level modules from.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    main()
