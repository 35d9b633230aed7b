"""The python-socketio server the end-to-end benchmarks drive (run in its own process by them).

    .venv/bin/python bench/_app.py --port 8000 [--store plain|memory://|sqlite:///x.db|...]

``--store plain`` is python-socketio alone; any store URL adds ``socketio_delivery.Delivery``.
Events it answers (the benchmark client sends them, with an ack):

* CONNECT ``auth={"room": "r"}``: a new (not recovered) client joins room ``r``.
* ``blast {"n", "room", "emitters", "publish", "seconds"}``: ``emitters`` tasks emit ``n`` ``tick``
  events in all to ``room`` (``sio.emit``, or ``delivery.publish`` when ``publish``), stopping
  early after ``seconds``; acks ``{"seconds": ..., "sent": ...}`` once every emit returned.
* ``ping``: acks ``"pong"`` (the bench uses it to know the server is up).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import socketio
import uvicorn


def build(store: str, recovery_window: float, max_events: int | None) -> socketio.ASGIApp:
    # long ping timeouts: a client that is many seconds behind on a blast is slow, not gone
    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins="*", ping_interval=60, ping_timeout=120
    )
    delivery: Any = None
    if store != "plain":
        from socketio_delivery import Delivery  # type: ignore[attr-defined]

        options: dict[str, Any] = {"max_events": max_events} if max_events else {}
        delivery = Delivery(sio, store={"url": store, "options": options}, recovery_window=recovery_window)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        recovered = delivery is not None and delivery.recovered(sid)
        if not recovered and isinstance(auth, dict) and auth.get("room"):
            await sio.enter_room(sid, auth["room"])

    @sio.event
    async def ping(sid: str, *args: Any) -> str:
        return "pong"

    @sio.event
    async def blast(sid: str, spec: dict[str, Any]) -> dict[str, Any]:
        n, room = int(spec["n"]), spec.get("room")
        emitters = max(1, min(int(spec.get("emitters", 1)), n))
        publish = bool(spec.get("publish")) and delivery is not None

        sent = 0
        start = time.perf_counter()
        deadline = start + float(spec.get("seconds") or 1e9)

        async def emitter(k: int) -> None:
            nonlocal sent
            for i in range(k, n, emitters):
                if time.perf_counter() > deadline:
                    return
                data = {"text": "hello world", "n": i}
                if publish:
                    await delivery.publish("tick", data, room=room)
                else:
                    await sio.emit("tick", data, room=room)
                sent += 1

        await asyncio.gather(*(emitter(k) for k in range(emitters)))
        return {"seconds": time.perf_counter() - start, "sent": sent}

    async def startup() -> None:
        if delivery is not None:
            await delivery.open()

    async def shutdown() -> None:
        if delivery is not None:
            await delivery.close()

    return socketio.ASGIApp(sio, on_startup=startup, on_shutdown=shutdown)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default="plain", help="'plain' or a store URL")
    parser.add_argument("--recovery-window", type=float, default=300.0)
    parser.add_argument("--max-events", type=int, default=None, help="store retention (events per stream)")
    args = parser.parse_args()
    app = build(args.store, args.recovery_window, args.max_events)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
