"""The server under test: python-socketio (+ Delivery) on uvicorn, emitting at fixed rates.

Run as ``python -m delivery_chaos.server '<json config>'`` (the controller does it).
It prints ``{"type": "listening"}`` once uvicorn accepts connections, then reads one
JSON command per line on stdin:

* ``{"cmd": "start", "until": <unix time>}``: emit until then (also ``emit_until`` in
  the config, so a restarted process picks up where the killed one was);
* ``{"cmd": "end"}``: emit the final ``end`` event to everyone;
* ``{"cmd": "dump", "path": ...}``: write the event log and the connect records as JSON;
* ``{"cmd": "stop"}``: shut down cleanly.

With ``CHAOS_PROFILE=/some/prefix`` in the environment the process runs under cProfile and
writes ``/some/prefix.<pid>`` when it stops.

Each connect that is not a recovery joins the rooms the client names in ``auth`` and
records ``{"client", "sid", "rooms", "boundary"}`` in the meta stream, where
``boundary`` is the log position read *after* joining: every event after it that
targets those rooms (or that sid) is owed to the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import socketio
import uvicorn
from socketio_delivery import EventStore, StoreError

from .slowstore import open_maybe_slow

T = TypeVar("T")
NAMESPACE = "/"
#: the stream the plain server logs its emits to (Delivery uses its own stream)
PLAIN_STREAM = "chaos-events"
#: connect records: who joined what, and from which log position on
META_STREAM = "chaos-meta"

log = logging.getLogger("delivery_chaos.server")


async def read_all(store: EventStore, stream: str) -> list[Any]:
    out: list[Any] = []
    offset: str | None = None
    while True:
        page = await store.fetch_since(stream, offset, limit=10_000)
        if not page:
            return out
        out.extend(page)
        offset = page[-1].offset


async def retrying(call: Callable[[], Awaitable[T]], seconds: float = 20.0) -> T:
    """``await call()``, retried on StoreError for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def find_payload(data: Any) -> dict[str, Any] | None:
    """The chaos payload (a dict with ``cx``) inside whatever the store holds for an emit."""
    if isinstance(data, dict):
        if "cx" in data:
            return data
        items: Any = data.values()
    elif isinstance(data, list):
        items = data
    else:
        return None
    for item in items:
        found = find_payload(item)
        if found is not None:
            return found
    return None


class ChaosServer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.mode: str = config["mode"]
        self.rooms: list[str] = config["rooms"]
        manager = socketio.AsyncRedisManager(config["manager"]) if config.get("manager") else None
        self.sio = socketio.AsyncServer(
            async_mode="asgi", client_manager=manager, logger=False, engineio_logger=False
        )
        self.app = socketio.ASGIApp(self.sio)
        self.delivery: Any = None
        self.store: EventStore = open_maybe_slow(config["store"])
        self.stream = PLAIN_STREAM
        self.targets: dict[str, str] = {}  # client id -> its current sid
        self.boot = secrets.token_hex(3)
        self.counter = 0
        self.lock = asyncio.Lock()
        self.emit_until: float | None = config.get("emit_until")
        self.emitters: list[asyncio.Task[None]] = []
        self.rng = random.Random()
        self.sio.on("connect", self.on_connect)

    async def open(self) -> None:
        await self.store.open()
        if self.mode == "delivery":
            from socketio_delivery import Delivery

            self.delivery = Delivery(
                self.sio,
                store=self.store,
                recovery_window=self.config["recovery_window"],
                session_lease=self.config["session_lease"],
            )
            await self.delivery.open()
            self.stream = NAMESPACE  # Delivery's stream of a namespace is the namespace (emitter.py)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        client = str(auth.get("client") or sid)
        rooms = [r for r in auth.get("rooms") or [] if isinstance(r, str)]
        recovered = self.delivery is not None and self.delivery.recovered(sid)
        if not recovered:
            for room in rooms:
                await self.sio.enter_room(sid, room)
            # the harness's own bookkeeping rides out a store restart (it is not what is tested)
            boundary = await retrying(lambda: self.store.last_offset(self.stream))
            record = {"client": client, "sid": sid, "rooms": rooms, "boundary": boundary, "t": time.time()}
            await retrying(lambda: self.store.persist(META_STREAM, record))
        self.targets[client] = sid

    # -- emitting --------------------------------------------------------------
    def start(self, until: float) -> None:
        self.emit_until = until
        if self.emitters:
            return
        rates = (("room", self.config["room_rate"]), ("sid", self.config["sid_rate"]))
        for kind, rate in (*rates, ("all", self.config["all_rate"])):
            if rate > 0:
                self.emitters.append(asyncio.create_task(self.emit_loop(kind, rate)))

    async def emit_loop(self, kind: str, rate: float) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / rate
        next_at = loop.time()
        while self.emit_until is not None and time.time() < self.emit_until:
            target: str | None = None
            if kind == "room":
                target = self.rng.choice(self.rooms)
            elif kind == "sid":
                if not self.targets:
                    await asyncio.sleep(period)
                    continue
                target = self.rng.choice(list(self.targets.values()))
            try:
                await self.send("tick", kind, target)
            except Exception as exc:  # a store outage must not stop the run
                log.warning("emit failed: %r", exc)
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()

    async def send(self, event: str, kind: str, target: str | None) -> None:
        self.counter += 1
        payload = {"cx": f"{self.boot}.{self.counter}", "k": kind}
        if self.mode == "delivery":
            await self.sio.emit(event, payload, to=target)
            return
        async with self.lock:  # log order == send order
            await self.store.persist(self.stream, payload, rooms=[target] if target else [])
            await self.sio.emit(event, payload, to=target)

    async def stop_emitting(self) -> None:
        self.emit_until = None
        for task in self.emitters:
            task.cancel()
        await asyncio.gather(*self.emitters, return_exceptions=True)
        self.emitters.clear()

    # -- dump ------------------------------------------------------------------
    async def dump(self, path: str) -> None:
        events = []
        for ev in await read_all(self.store, self.stream):
            payload = find_payload(ev.data)
            events.append(
                {
                    "offset": ev.offset,
                    "rooms": list(ev.rooms),
                    "exclude": list(ev.exclude),
                    "cx": payload["cx"] if payload else None,
                    "k": payload.get("k") if payload else None,
                }
            )
        metas = [ev.data for ev in await read_all(self.store, META_STREAM)]
        write_json(path, {"events": events, "metas": metas})

    async def close(self) -> None:
        await self.stop_emitting()
        if self.delivery is not None:
            await self.delivery.close()
        await self.store.close()


def write_json(path: str, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj))


def dump_tasks() -> None:
    """SIGUSR1: print every asyncio task's stack to stderr (sent before a hung node is killed)."""
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(config: dict[str, Any]) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    chaos = ChaosServer(config)
    await chaos.open()
    server = uvicorn.Server(
        uvicorn.Config(
            chaos.app,
            host="127.0.0.1",
            port=config["port"],
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit("uvicorn stopped")
        await asyncio.sleep(0.02)
    if chaos.emit_until is not None:
        chaos.start(chaos.emit_until)
    reply({"type": "listening", "boot": chaos.boot})

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "start":
            chaos.start(float(cmd["until"]))
            reply({"type": "started"})
        elif cmd["cmd"] == "end":
            await chaos.stop_emitting()
            await chaos.send("end", "end", None)
            reply({"type": "ended"})
        elif cmd["cmd"] == "dump":
            await chaos.dump(cmd["path"])
            reply({"type": "dumped"})
        elif cmd["cmd"] == "stop":
            break
    server.should_exit = True
    await serving
    await chaos.close()
    reply({"type": "stopped"})


if __name__ == "__main__":
    profile = os.environ.get("CHAOS_PROFILE")  # a file name: cProfile the server into it
    if profile:
        import cProfile

        cProfile.run("asyncio.run(main(json.loads(sys.argv[1])))", f"{profile}.{os.getpid()}")
    else:
        asyncio.run(main(json.loads(sys.argv[1])))
