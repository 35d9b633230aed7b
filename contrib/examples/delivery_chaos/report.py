"""The per-run summary and the table a user reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .oracle import ClientCheck
from .scenario import Scenario

__all__ = ["Report", "Row", "render", "render_runs"]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Row:
    """The totals for one kind of client in one run."""

    label: str
    clients: int = 0
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
    drops: int = 0
    missing_end: int = 0
    problems: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, check: ClientCheck) -> None:
        self.clients += 1
        for name in (
            "expected",
            "delivered",
            "lost",
            "duplicated",
            "reordered",
            "phantom",
            "bad_offset",
            "reconnects",
            "recovered",
            "resyncs",
            "drops",
        ):
            setattr(self, name, getattr(self, name) + getattr(check, name))
        self.missing_end += 0 if check.got_end else 1
        self.problems += len(check.problems)
        self.latencies.extend(check.latencies)

    @property
    def errors(self) -> int:
        """Everything a delivery guarantee forbids."""
        return self.lost + self.duplicated + self.reordered + self.phantom + self.bad_offset + self.problems


@dataclass
class Report:
    scenario: Scenario
    checks: list[ClientCheck]
    elapsed: float = 0.0
    server_restarts: int = 0
    server_log_errors: list[str] = field(default_factory=list)
    client_impl: dict[str, str] = field(default_factory=dict)
    folder: str = ""
    #: events in the store's log, and how many the rates asked for (fewer: the server fell behind)
    log_events: int = 0
    planned_events: int = 0

    def rows(self) -> list[Row]:
        rows: dict[str, Row] = {}
        for check in self.checks:
            label = {"py": "Python", "js": "JS"}.get(check.kind, check.kind)
            rows.setdefault(check.kind, Row(label)).add(check)
        out = [rows[k] for k in ("py", "js") if k in rows]
        if len(out) > 1:
            total = Row("all")
            for check in self.checks:
                total.add(check)
            out.append(total)
        return out

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rows() if r.label != "all")

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "mode": self.scenario.mode,
            "rows": [
                {k: v for k, v in vars(r).items() if k != "latencies"}
                | {"p50_ms": _ms(percentile(r.latencies, 50)), "p99_ms": _ms(percentile(r.latencies, 99))}
                for r in self.rows()
            ],
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def render(reports: list[Report]) -> str:
    """A Markdown table: one line per run and client kind."""
    head = (
        "| run | clients | expected | delivered | lost | duplicated | reordered "
        "| recovered / reconnects | resync | replay p50 | replay p99 |"
    )
    lines = [head, "|" + "|".join(["---"] * 11) + "|"]
    for report in reports:
        name = report.scenario.name
        for row in report.rows():
            lines.append(
                f"| {name} | {row.label} {row.clients} | {row.expected} | {row.delivered} | {row.lost} "
                f"| {row.duplicated} | {row.reordered} | {row.recovered} / {row.reconnects} | {row.resyncs} "
                f"| {_fmt_ms(percentile(row.latencies, 50))} | {_fmt_ms(percentile(row.latencies, 99))} |"
            )
            if row.phantom or row.bad_offset or row.problems or row.missing_end:
                lines.append(
                    f"|   ({name} {row.label}) | phantom {row.phantom}, wrong offset {row.bad_offset}, "
                    f"harness problems {row.problems}, no final event {row.missing_end} |" + " |" * 9
                )
    return "\n".join(lines)


def render_runs(reports: list[Report]) -> str:
    """One line per run: what happened to it (events, drops, kills, server errors)."""
    lines = []
    for r in reports:
        s = r.scenario
        chaos = [f"{sum(c.drops for c in r.checks)} forced drops"]
        if s.server_restarts:
            chaos.append(f"{r.server_restarts} kill -9" + (f" (of {s.nodes} nodes)" if s.nodes > 1 else ""))
        if s.store_restarts:
            chaos.append(f"{s.store_restarts} store restart")
        lines.append(
            f"- {s.name} ({s.mode}): {s.py_clients + s.js_clients} clients, {s.duration:g} s, "
            f"{r.log_events} events emitted ({r.planned_events} planned), {', '.join(chaos)}, "
            f"{len(r.server_log_errors)} server errors"
        )
    return "\n".join(lines)
