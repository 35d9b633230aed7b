"""What one chaos run does: clients, rates, drops, restarts, store."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODES", "Scenario"]

#: ``delivery``: python-socketio + Delivery; ``plain``: python-socketio alone (the baseline).
MODES = ("delivery", "plain")


@dataclass
class Scenario:
    """One run. Defaults are the ``make chaos`` run (200 clients, 60 s).

    ``store`` is ``"sqlite"`` (a fresh file in the run's folder), ``"slow-sqlite"`` (the
    same, every store call made 0..0.2 s slower), ``"memory"`` or a store URL. In ``plain``
    mode the server has no Delivery: it writes the same log itself (persist, then emit, one
    at a time) so the same oracle applies.
    """

    name: str = "chaos"
    mode: str = "delivery"
    store: str = "sqlite"
    py_clients: int = 100
    js_clients: int = 100
    #: seconds the server emits
    duration: float = 60.0
    rooms: int = 20
    rooms_per_client: int = 3
    #: events per second the server emits to a random room / a random client's sid / everyone
    room_rate: float = 20.0
    sid_rate: float = 20.0
    all_rate: float = 4.0
    #: mean seconds between two forced transport drops of one client (exponential); 0: none
    drop_every: float = 10.0
    #: server nodes sharing the store (clients reach them through a round-robin TCP proxy)
    nodes: int = 1
    #: ``kill -9`` of a server node (the last one first), restarted after ``restart_downtime`` s
    server_restarts: int = 0
    restart_downtime: float = 1.0
    #: restarts of the store server (needs a ``store_service``), down for ``store_downtime`` s
    store_restarts: int = 0
    store_downtime: float = 2.0
    #: python-socketio client manager URL (plain multi-node runs use the Redis store's URL)
    manager: str | None = None
    #: processes hosting the Python clients
    py_workers: int = 1
    #: seconds a disconnected session can be recovered (Delivery's ``recovery_window``)
    recovery_window: float = 120.0
    #: seconds a connected session stays locked after its node last renewed it (Delivery's
    #: ``session_lease``): how long the clients of a killed node wait before they recover
    session_lease: float = 3.0
    #: seconds to wait for every client to reconnect and receive the final event
    settle_timeout: float = 30.0
    seed: int = 1
    #: use the project's Python client when it is installed (else a stock AsyncClient)
    project_client: bool = True
    #: every other JS client starts on HTTP long-polling and upgrades (the browser default);
    #: the others, and all Python clients, use WebSocket only. Single-node runs only: with
    #: several nodes long-polling needs a sticky balancer, and the harness's proxy is not one.
    js_upgrade: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)

    def room_names(self) -> list[str]:
        return [f"room-{i}" for i in range(self.rooms)]

    def clients(self) -> list[dict[str, Any]]:
        """Client ids and the rooms each joins (deterministic for a seed)."""
        rng = random.Random(self.seed)
        names = self.room_names()
        out: list[dict[str, Any]] = []
        for kind, count in (("py", self.py_clients), ("js", self.js_clients)):
            for i in range(count):
                rooms = sorted(rng.sample(names, min(self.rooms_per_client, len(names))))
                upgrade = kind == "js" and self.js_upgrade and self.nodes == 1 and i % 2
                transports = "upgrade" if upgrade else "websocket"
                out.append({"id": f"{kind}-{i}", "kind": kind, "rooms": rooms, "transports": transports})
        return out
