"""What each client was owed, from the store's log, and how what it got compares.

The log is the stream the emits were persisted to, read back after the run in
offset order (Delivery's own stream; in the plain baseline the server persists
each event itself, then emits it, one at a time, so log order is send order).
Each event carries the rooms it was addressed to (a room, a sid, or none: everyone).

The server writes a connect record for every connection that is not a recovery:
``{"client", "sid", "rooms", "boundary"}``, ``boundary`` being the log position read
*after* the connect handler joined the rooms. An event whose offset is after a
boundary became visible after the join, so the server must get it to that client.
Client *c* with connect records r1, r2, ... (in log order) is owed event *e* when

* *e* is after r1's boundary and is addressed to everyone or to one of c's rooms
  (c asks for the same rooms on every connection and stays until the end); or
* *e* is addressed to sid(ri) and lies after ri's boundary and, if there is a later
  record, not after r(i+1)'s boundary (from then on nobody answers to that sid).

Events before r1's boundary may arrive too (emitted while the client was joining):
they are neither owed nor errors. Then, per client:

* **delivered**: owed events received at least once;
* **lost**: owed events never received;
* **duplicated**: receptions of an event already received;
* **reordered**: receptions of an event older (in log order) than one received before;
* **phantom**: receptions of an event the log does not hold (must be 0);
* **bad offset**: events whose wire offset differs from the log's (Delivery only).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientCheck", "check_client", "check_run"]


@dataclass
class ClientCheck:
    id: str
    kind: str
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    phantom: int = 0
    bad_offset: int = 0
    reconnects: int = 0
    recovered: int = 0
    resyncs: int = 0
    resync_reasons: list[str] = field(default_factory=list)
    drops: int = 0
    got_end: bool = False
    latencies: list[float] = field(default_factory=list)
    #: a few lost event ids with their log index, for bug reports
    lost_sample: list[tuple[int, str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Log:
    def __init__(self, dump: dict[str, Any]) -> None:
        self.events: list[dict[str, Any]] = dump["events"]
        self.offsets = [e["offset"] for e in self.events]
        self.index = {e["cx"]: i for i, e in enumerate(self.events) if e["cx"] is not None}
        self.metas: dict[str, list[dict[str, Any]]] = {}
        for meta in dump["metas"]:
            self.metas.setdefault(meta["client"], []).append(meta)
        for records in self.metas.values():
            records.sort(key=lambda m: self.position(m["boundary"]))

    def position(self, boundary: str) -> int:
        """How many log events lie at or before ``boundary`` (offsets compare as strings)."""
        return bisect.bisect_right(self.offsets, boundary)


def check_client(log: Log, result: dict[str, Any]) -> ClientCheck:
    check = ClientCheck(
        id=result["id"],
        kind=result["kind"],
        reconnects=result["reconnects"],
        recovered=result["recovered"],
        resyncs=result["resyncs"],
        resync_reasons=list(result.get("resync_reasons", [])),
        drops=result["drops"],
        got_end=result["got_end"],
        latencies=list(result["latencies"]),
    )
    records = log.metas.get(result["id"])
    if not records:
        check.problems.append("no connect record in the log")
        return check
    rooms = set(records[0]["rooms"])
    start = log.position(records[0]["boundary"])
    sid_windows: dict[str, list[tuple[int, int]]] = {}
    for i, rec in enumerate(records):
        lo = log.position(rec["boundary"])
        hi = log.position(records[i + 1]["boundary"]) if i + 1 < len(records) else len(log.events)
        sid_windows.setdefault(rec["sid"], []).append((lo, hi))

    owed: list[int] = []
    for i, ev in enumerate(log.events):
        if ev["cx"] is None:
            continue
        targets = ev["rooms"]
        if i >= start and (not targets or rooms.intersection(targets)):
            owed.append(i)
            continue
        for sid in targets:
            if any(lo <= i < hi for lo, hi in sid_windows.get(sid, ())):
                owed.append(i)
                break
    owed_set = set(owed)
    check.expected = len(owed)

    seen: set[int] = set()
    highest = -1
    for cx, offset in zip(result["received"], result["offsets"], strict=True):
        idx = log.index.get(cx)
        if idx is None:
            check.phantom += 1
            continue
        if offset is not None and offset != log.offsets[idx]:
            check.bad_offset += 1
        if idx in seen:
            check.duplicated += 1
            continue
        seen.add(idx)
        if idx < highest:
            check.reordered += 1
        highest = max(highest, idx)
    check.delivered = len(owed_set & seen)
    missing = sorted(owed_set - seen)
    check.lost = len(missing)
    check.lost_sample = [(i, log.events[i]["cx"], log.events[i]["rooms"]) for i in missing[:5]]
    return check


def check_run(dump: dict[str, Any], results: list[dict[str, Any]]) -> list[ClientCheck]:
    log = Log(dump)
    return [check_client(log, r) for r in results]
