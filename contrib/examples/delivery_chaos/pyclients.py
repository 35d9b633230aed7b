"""A worker process hosting many Python Socket.IO clients.

Run as ``python -m delivery_chaos.pyclients``. The first stdin line is the config
(``url``, ``clients``, ``drop_every``, ``seed``, ``results``, ``project_client``); then
one command per line: ``stop_drops``, ``status``, ``finish``. Replies are JSON lines on
stdout. The worker shares the protocol of ``jsclients.cjs``.

A forced drop aborts the client's TCP connection (no WebSocket close frame, no
Engine.IO or Socket.IO goodbye): the server sees the transport vanish, the client
sees a transport error and reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import socketio

log = logging.getLogger("delivery_chaos.pyclients")


def project_client_class() -> type[socketio.AsyncClient] | None:
    """The project's Python client, when it is installed."""
    try:
        from socketio_delivery import client as mod
    except ImportError:
        return None
    for name in ("AsyncClient", "DeliveryClient", "Client"):
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, socketio.AsyncClient):
            return cls
    return None


class ChaosClient:
    """One client: what it received, in order, and how its reconnects went."""

    def __init__(self, spec: dict[str, Any], url: str, rng: random.Random, base: type[Any] | None) -> None:
        self.id: str = spec["id"]
        self.rooms: list[str] = spec["rooms"]
        self.url = url
        self.rng = rng
        self.received: list[str] = []
        self.offsets: list[str | None] = []
        self.pid: str | None = None
        self.sent_pid: str | None = None
        self.last_offset: str | None = None
        self.connects = 0
        self.reconnects = 0
        self.recovered = 0
        self.resyncs = 0
        self.resync_reasons: list[str] = []
        self.drops = 0
        self.latencies: list[float] = []
        self.transport_open_at = 0.0
        self.got_end = asyncio.Event()
        self.dropping = True
        self.project = base is not None
        #: (unix time, what happened): drops, transports opened, connects, resyncs; for bug reports
        self.timeline: list[tuple[float, str]] = []
        self.sio = self._make(base)

    # -- the client object --------------------------------------------------------
    def _make(self, base: type[Any] | None) -> socketio.AsyncClient:
        owner = self
        parent: type[Any] = base or socketio.AsyncClient

        class Instrumented(parent):  # type: ignore[misc]
            async def _handle_eio_connect(self) -> None:
                owner.transport_open_at = time.monotonic()
                owner.timeline.append((time.time(), "transport open"))
                await super()._handle_eio_connect()

            async def _handle_connect(self, namespace: str, data: Any) -> None:
                owner.on_connect_reply(data)
                await super()._handle_connect(namespace, data)

        kwargs: dict[str, Any] = {
            "reconnection": True,
            "reconnection_attempts": 0,
            "reconnection_delay": 0.2,
            "reconnection_delay_max": 1.0,
            "randomization_factor": 0.5,
        }
        sio = Instrumented(**kwargs)
        sio.on("*", self.on_event)
        return sio

    def auth(self) -> dict[str, Any]:
        """The CONNECT payload: who we are, our rooms; the stock client adds pid/offset by hand."""
        data: dict[str, Any] = {"client": self.id, "rooms": self.rooms}
        if not self.project:
            self.sent_pid = self.pid
            if self.pid:
                data["pid"] = self.pid
                if self.last_offset is not None:
                    data["offset"] = self.last_offset
        return data

    def on_connect_reply(self, data: Any) -> None:
        pid = data.get("pid") if isinstance(data, dict) else None
        if self.connects:
            self.reconnects += 1
            # recovered: the server gave back the pid the client presented
            sent = self.pid if self.project else self.sent_pid
            ok = pid is not None and pid == sent
            if ok:
                self.recovered += 1
                self.latencies.append(time.monotonic() - self.transport_open_at)
        self.timeline.append(
            (time.time(), f"connect pid={pid} sent={self.pid if self.project else self.sent_pid}")
        )
        self.connects += 1
        self.pid = pid

    async def on_event(self, event: str, *args: Any) -> None:
        if event == "delivery:resync":
            self.resyncs += 1
            info = args[0] if args else None
            self.resync_reasons.append(str(info.get("reason")) if isinstance(info, dict) else "?")
            self.timeline.append((time.time(), f"resync {self.resync_reasons[-1]}"))
            return
        offset: str | None
        if self.project:  # the project's client strips the offset and keeps it
            got = self.sio.get_offset("/")
            offset = str(got) if got is not None else None
        else:
            offset = args[-1] if len(args) >= 2 and isinstance(args[-1], str) else None
            if offset is not None:
                self.last_offset = offset
        payload = args[0] if args else None
        if isinstance(payload, dict) and "cx" in payload:
            self.received.append(payload["cx"])
            self.offsets.append(offset)
        if event == "end":
            self.got_end.set()

    # -- life --------------------------------------------------------------------
    async def start(self) -> None:
        await self.sio.connect(
            self.url, transports=["websocket"], auth=self.auth, wait_timeout=10, retry=True
        )

    def kill_transport(self) -> bool:
        """Abort the TCP connection under the WebSocket: no goodbye of any kind."""
        eio = self.sio.eio
        ws = getattr(eio, "ws", None)
        if eio.state != "connected" or ws is None:
            return False
        conn = getattr(getattr(ws, "_response", None), "connection", None)
        transport = getattr(conn, "transport", None)
        if transport is None:
            return False
        transport.abort()
        return True

    async def drop_loop(self, mean: float) -> None:
        while self.dropping:
            await asyncio.sleep(self.rng.expovariate(1.0 / mean))
            if self.dropping and self.sio.connected and self.kill_transport():
                self.drops += 1
                self.timeline.append((time.time(), "drop"))

    async def finish(self) -> None:
        try:
            await self.sio.disconnect()
        except Exception:
            log.exception("disconnect of %s failed", self.id)

    def result(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "py",
            "received": self.received,
            "offsets": self.offsets,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "recovered": self.recovered,
            "resyncs": self.resyncs,
            "resync_reasons": self.resync_reasons,
            "timeline": self.timeline,
            "drops": self.drops,
            "latencies": self.latencies,
            "got_end": self.got_end.is_set(),
        }


def write_json(path: str, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj))


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = json.loads(await reader.readline())
    rng = random.Random(config["seed"])
    base = project_client_class() if config.get("project_client", True) else None
    clients = [
        ChaosClient(spec, config["url"], random.Random(rng.random()), base) for spec in config["clients"]
    ]
    await asyncio.gather(*(c.start() for c in clients))
    drops: list[asyncio.Task[None]] = []
    if config["drop_every"] > 0:
        drops = [asyncio.create_task(c.drop_loop(config["drop_every"])) for c in clients]
    reply({"type": "ready", "client": "project" if base else "stock"})
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        if cmd["cmd"] == "stop_drops":
            for c in clients:
                c.dropping = False
            for task in drops:
                task.cancel()
            reply({"type": "drops_stopped"})
        elif cmd["cmd"] == "status":
            reply({"type": "status", "connected": sum(1 for c in clients if c.sio.connected)})
        elif cmd["cmd"] == "finish":
            waits = [asyncio.wait_for(c.got_end.wait(), cmd["timeout"]) for c in clients]
            await asyncio.gather(*waits, return_exceptions=True)
            await asyncio.gather(*(c.finish() for c in clients))
            write_json(config["results"], [c.result() for c in clients])
            reply({"type": "finished"})
            return


if __name__ == "__main__":
    asyncio.run(main())
