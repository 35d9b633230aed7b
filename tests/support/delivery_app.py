"""A runnable Socket.IO server with :class:`socketio_delivery.Delivery`, for end-to-end tests.

Run it::

    python tests/support/delivery_app.py --port 8123 --store sqlite:////tmp/events.db --mode asgi
    python tests/support/delivery_app.py --port 8123 --store memory:// --mode aiohttp \\
        --redis-manager redis://127.0.0.1:6379/0

It prints ``READY <port>`` on stdout once it accepts connections, logs to stderr, and stops
on SIGTERM / SIGINT (Delivery closed, connected clients see their transport close, as in a
redeploy). ``--store none`` runs the same app without Delivery (plain python-socketio).

Or start it from a test with :class:`DeliveryAppProcess`::

    app = DeliveryAppProcess(store="sqlite:////tmp/x.db", mode="asgi")
    app.start()                       # waits for READY
    await app.control("emit", event="news", args=[{"n": 1}], room="r1")
    app.stop(kill=True)               # kill -9; app.start() again: same port, same store
    app.close()

The app, on the namespaces ``/`` and ``/other``:

* ``connect(sid, environ, auth)``: unless ``delivery.recovered(sid)``, joins the rooms in
  ``auth["rooms"]`` and saves ``auth["data"]`` as session data; records the connect
  (sid, recovered, recovery_failed) for the ``connects`` control op.
* ``disconnect(sid, reason)``: records it (``disconnects`` op); with ``--disconnect-delay S`` it
  then awaits S seconds, like an app that writes to its database when a client leaves.
* client events: ``join`` / ``leave`` (room), ``set_data`` (dict merged into the session;
  acks the session), ``get_data``, ``echo`` (acks its arguments), ``whoami`` (acks the
  ``info`` of the caller), ``drop`` (force-closes the caller's transport, no ack), ``control``
  (acks the result of a control op; ``"@self"`` in ``to`` / ``skip_sid`` / ``sid`` is the caller),
  ``work`` (the processed-once handler, below).
* ``work(payload)``: counts one run per ``payload["idempotencyKey"]`` (or ``payload["tag"]``
  when it has no key) and acks
  ``{"key", "run", "value"}``; on its first run for a key it may wait for a gate
  (``payload["gate"]``, opened by the ``release`` control op) or drop the caller's
  transport before returning (``payload["drop_first"]``), so the ack is lost, or raise
  (``payload["fail_first"]``: no ack).
* control ops (``POST /_control`` with a JSON object ``{"op": ..., ...}``, or the ``control``
  event): ``emit`` (``event``, ``args`` or ``batch`` of args lists, ``to``, ``room``,
  ``skip_sid``, ``namespace``; ``as_bytes``: string arguments go out as binary),
  ``call`` (``event``, ``data``, ``to``, ``timeout``: an emit with
  an ack callback -> ``{"ack"}`` or ``{"error"}``), ``publish`` (``event``, ``data`` or
  ``batch`` of data, ... -> ``{"offset", "offsets"}``),
  ``emit_then_join`` / ``emit_then_leave`` (``event``, ``args``, ``room``, ``sid``), ``drop`` (``sid``),
  ``disconnect`` (``sid``: ``sio.disconnect``), ``info`` (``sid`` ->
  connected, rooms, session, recovered, recovery_failed), ``connects``, ``disconnects``,
  ``runs``, ``work_log``, ``release`` (``gate``),
  ``wait_saved`` (``pid``: waits until the store holds that session, returns its record),
  ``stall_claims`` (from then on a recovering connect hangs right after claiming its session;
  returns how many hang),
  ``trim`` (runs the store's retention now).

Drop = the Engine.IO transport closes without any Engine.IO or Socket.IO goodbye: for a
WebSocket the writer ends and the WebSocket is closed, for long-polling the socket is
aborted; the server sees ``transport close``, the client reconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

from processes import ChildProcess, free_port, port_accepts
from socketio_delivery._compat.server import drop_transport

__all__ = ["NAMESPACES", "DeliveryAppProcess", "TestApp", "free_port", "main"]

NAMESPACES = ("/", "/other")
CONTROL_PATH = "/_control"
_HERE = os.path.abspath(__file__)


# --------------------------------------------------------------------------- the server


class TestApp:
    """The handlers and control ops, bound to one ``AsyncServer`` (and its ``Delivery``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, sio: Any, delivery: Any | None, *, disconnect_delay: float = 0.0) -> None:
        self.sio = sio
        self.delivery = delivery
        #: seconds the disconnect handler awaits (an app that writes to its database on disconnect)
        self.disconnect_delay = disconnect_delay
        self.connects: list[dict[str, Any]] = []
        self.disconnects: list[dict[str, Any]] = []
        self.runs: dict[str, int] = {}
        self.work_log: list[str] = []  # the key of every run of ``work``, in order
        self.gates: dict[str, asyncio.Event] = {}
        for namespace in NAMESPACES:
            self._register(namespace)

    # ---- helpers

    def recovered(self, sid: str, namespace: str) -> bool:
        return bool(self.delivery.recovered(sid, namespace)) if self.delivery else False

    def recovery_failed(self, sid: str, namespace: str) -> str | None:
        if self.delivery is None:
            return None
        reason: str | None = self.delivery.recovery_failed(sid, namespace)
        return reason

    def require_delivery(self) -> Any:
        if self.delivery is None:
            raise RuntimeError("this op needs Delivery (the app runs with --store none)")
        return self.delivery

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def drop(self, sid: str, namespace: str) -> bool:
        """Close ``sid``'s Engine.IO transport without a goodbye (see the module docstring)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is None:
            return False
        # the WebSocket writer ends (or the poll is aborted): the server sees "transport close"
        return await drop_transport(self.sio, eio_sid)

    async def info(self, sid: str, namespace: str) -> dict[str, Any]:
        connected = bool(self.sio.manager.is_connected(sid, namespace))
        rooms: list[str] = []
        session: Any = None
        if connected:
            rooms = sorted(r for r in self.sio.rooms(sid, namespace) if r != sid)
            with contextlib.suppress(KeyError):
                session = await self.sio.get_session(sid, namespace)
        return {
            "sid": sid,
            "namespace": namespace,
            "connected": connected,
            "rooms": rooms,
            "session": session,
            "recovered": self.recovered(sid, namespace) if connected else None,
            "recovery_failed": self.recovery_failed(sid, namespace) if connected else None,
        }

    async def wait_saved(self, pid: str, namespace: str, timeout: float = 10.0) -> Any:
        """Wait until the store holds the session of ``pid`` with its latest changes.

        Saves pending changes now (``delivery.sessions.flush``), then checks the record is there: a
        connected session is leased by this process, so a claim of it is busy (the contract
        has no plain read); uses :func:`socketio_delivery.recovery.session_key`, an internal
        of Delivery. Returns ``{"leased": True}`` or, for a disconnected one, its record.
        """
        from socketio_delivery import SessionBusyError
        from socketio_delivery.recovery import session_key

        delivery = self.require_delivery()
        store, key = delivery.store, session_key(namespace, pid)
        await delivery.sessions.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                record = await store.claim_session(key, lease=5.0)
            except SessionBusyError:
                return {"leased": True}
            if record is not None:
                await store.save_session(key, record, delivery.recovery_window)
                return record
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no session saved for pid {pid!r} on {namespace}")

    def stall_claims(self) -> int:
        """From now on a connect that claims a session hangs right after the claim (before
        saving it back), like a process that dies there; returns how many hang already."""
        store = self.require_delivery().store
        if not hasattr(self, "_stalled"):
            self._stalled: list[str] = []
            claim = store.claim_session

            async def stalled_claim(key: str, *, lease: float | None = None) -> Any:
                record = await claim(key, lease=lease)
                if record is not None and lease is not None:
                    self._stalled.append(key)
                    await asyncio.Event().wait()
                return record

            store.claim_session = stalled_claim  # type: ignore[method-assign]
        return len(self._stalled)

    # ---- control ops

    async def control(self, spec: dict[str, Any], caller: str | None = None) -> Any:
        """Run one control op (see the module docstring) and return its JSON result."""
        spec = {k: (caller if v == "@self" else v) for k, v in spec.items()}
        if isinstance(spec.get("skip_sid"), list):
            spec["skip_sid"] = [caller if s == "@self" else s for s in spec["skip_sid"]]
        op = spec.get("op")
        namespace = spec.get("namespace") or "/"
        if op == "emit":
            batch = spec["batch"] if "batch" in spec else [spec.get("args", [])]
            for args in batch:
                if spec.get("as_bytes"):  # string arguments sent as binary
                    args = [a.encode() if isinstance(a, str) else a for a in args]
                data = args[0] if len(args) == 1 else tuple(args)
                await self.sio.emit(
                    spec["event"],
                    data,
                    to=spec.get("to"),
                    room=spec.get("room"),
                    skip_sid=spec.get("skip_sid"),
                    namespace=namespace,
                )
            return {"emitted": len(batch)}
        if op == "call":
            try:
                ack = await self.sio.call(
                    spec["event"],
                    spec.get("data"),
                    to=spec["to"],
                    namespace=namespace,
                    timeout=spec.get("timeout", 5),
                )
            except Exception as exc:  # socketio.exceptions.TimeoutError, disconnected
                return {"error": type(exc).__name__}
            return {"ack": ack}
        if op == "publish":
            delivery = self.require_delivery()
            offsets = [
                await delivery.publish(
                    spec["event"],
                    data,
                    to=spec.get("to"),
                    room=spec.get("room"),
                    skip_sid=spec.get("skip_sid"),
                    namespace=namespace,
                )
                for data in (spec["batch"] if "batch" in spec else [spec.get("data")])
            ]
            return {"offset": offsets[-1], "offsets": offsets}
        if op == "emit_then_join":  # emit to a room, then (same task, at once) add sid to it
            await self.sio.emit(spec["event"], spec["args"][0], room=spec["room"], namespace=namespace)
            await self.sio.enter_room(spec["sid"], spec["room"], namespace=namespace)
            return {"joined": spec["room"]}
        if op == "emit_then_leave":  # emit to a room, then (same task, at once) take sid out of it
            await self.sio.emit(spec["event"], spec["args"][0], room=spec["room"], namespace=namespace)
            await self.sio.leave_room(spec["sid"], spec["room"], namespace=namespace)
            return {"left": spec["room"]}
        if op == "disconnect":  # the server's own, explicit disconnect
            await self.sio.disconnect(spec["sid"], namespace=namespace)
            return {"disconnected": spec["sid"]}
        if op == "drop":
            return {"dropped": await self.drop(spec["sid"], namespace)}
        if op == "info":
            return await self.info(spec["sid"], namespace)
        if op == "connects":
            return self.connects
        if op == "disconnects":
            return self.disconnects
        if op == "runs":
            return self.runs
        if op == "work_log":
            return self.work_log
        if op == "trim":
            return {"trimmed": await self.require_delivery().store.trim()}
        if op == "wait_saved":
            return await self.wait_saved(spec["pid"], namespace)
        if op == "release":
            self.gate(spec["gate"]).set()
            return {"released": spec["gate"]}
        if op == "stall_claims":
            return {"stalled": self.stall_claims()}
        raise ValueError(f"unknown control op {op!r}")

    # ---- handlers

    def _register(self, namespace: str) -> None:
        sio = self.sio

        def on(event: str) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
            decorator: Callable[[Callable[..., Awaitable[Any]]], Any] = sio.on(event, namespace=namespace)
            return decorator

        @on("connect")
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            auth = auth if isinstance(auth, dict) else {}
            recovered = self.recovered(sid, namespace)
            self.connects.append(
                {
                    "sid": sid,
                    "namespace": namespace,
                    "recovered": recovered,
                    "recovery_failed": self.recovery_failed(sid, namespace),
                    "auth_keys": sorted(str(k) for k in auth),
                }
            )
            if not recovered:
                rooms = auth.get("rooms")
                for room in rooms if isinstance(rooms, list) else []:
                    await sio.enter_room(sid, str(room), namespace=namespace)
                if isinstance(auth.get("data"), dict):
                    await sio.save_session(sid, dict(auth["data"]), namespace=namespace)

        @on("disconnect")
        async def disconnect(sid: str, reason: Any = None) -> None:
            self.disconnects.append({"sid": sid, "namespace": namespace, "reason": str(reason)})
            if self.disconnect_delay:
                await asyncio.sleep(self.disconnect_delay)

        @on("join")
        async def join(sid: str, room: str) -> list[str]:
            await sio.enter_room(sid, room, namespace=namespace)
            return sorted(r for r in sio.rooms(sid, namespace) if r != sid)

        @on("leave")
        async def leave(sid: str, room: str) -> list[str]:
            await sio.leave_room(sid, room, namespace=namespace)
            return sorted(r for r in sio.rooms(sid, namespace) if r != sid)

        @on("set_data")
        async def set_data(sid: str, data: dict[str, Any]) -> Any:
            async with sio.session(sid, namespace=namespace) as session:
                session.update(data)
                return dict(session)

        @on("get_data")
        async def get_data(sid: str, *_: Any) -> Any:
            return dict(await sio.get_session(sid, namespace=namespace))

        @on("echo")
        async def echo(sid: str, *args: Any) -> list[Any]:
            return list(args)

        @on("whoami")
        async def whoami(sid: str, *_: Any) -> dict[str, Any]:
            return await self.info(sid, namespace)

        @on("drop")
        async def drop(sid: str, *_: Any) -> None:
            await self.drop(sid, namespace)

        @on("control")
        async def control(sid: str, spec: dict[str, Any]) -> Any:
            try:
                return await self.control(spec, caller=sid)
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}

        @on("work")
        async def work(sid: str, payload: Any = None, *_: Any) -> dict[str, Any]:
            payload = payload if isinstance(payload, dict) else {}
            key = str(payload.get("idempotencyKey") or payload.get("tag"))
            run = self.runs[key] = self.runs.get(key, 0) + 1
            self.work_log.append(key)
            if run == 1 and isinstance(payload.get("gate"), str):
                await self.gate(payload["gate"]).wait()
            if run == 1 and payload.get("fail_first"):
                raise RuntimeError("work failed on purpose (fail_first)")
            if run == 1 and payload.get("drop_first"):
                await self.drop(sid, namespace)
            return {"key": key, "run": run, "value": payload.get("value")}


def _json_response(result: Any, status: int = 200) -> tuple[int, bytes]:
    return status, json.dumps(result).encode()


async def _control_http(app: TestApp, body: bytes) -> tuple[int, bytes]:
    try:
        spec = json.loads(body)
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        return _json_response(await app.control(spec))
    except Exception as exc:
        logging.getLogger("delivery_app").exception("control op failed")
        return _json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)


def build(args: argparse.Namespace) -> tuple[Any, Any | None, TestApp]:
    """Make the ``AsyncServer``, its ``Delivery`` (None with ``--store none``) and the app."""
    import socketio

    kwargs: dict[str, Any] = {
        "async_mode": args.mode,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "cors_allowed_origins": "*",
    }
    if args.redis_manager:
        kwargs["client_manager"] = socketio.AsyncRedisManager(args.redis_manager)
    sio = socketio.AsyncServer(**kwargs)
    delivery = None
    if args.store != "none":
        from socketio_delivery import Delivery

        options: dict[str, Any] = {
            "recovery_window": args.recovery_window,
            "rerun_connect": not args.no_rerun_connect,
            "session_lease": args.session_lease,
        }
        if args.idempotency_ttl is not None:
            options["idempotency_ttl"] = args.idempotency_ttl
        if args.identity == "session-user":

            async def identity(sid: str, namespace: str) -> str:
                session = await sio.get_session(sid, namespace=namespace)
                return str(session.get("user") or sid)

            options["identity"] = identity
        delivery = Delivery(sio, store=args.store, **options)
    return sio, delivery, TestApp(sio, delivery, disconnect_delay=args.disconnect_delay)


async def _serve_asgi(sio: Any, app: TestApp, port: int, stop: asyncio.Event) -> None:
    import socketio
    import uvicorn

    async def control_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, body = 404, b'{"error": "not found"}'
        if scope["type"] == "http" and scope["path"] == CONTROL_PATH and scope["method"] == "POST":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            status, body = await _control_http(app, b"".join(chunks))
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    asgi = socketio.ASGIApp(sio, other_asgi_app=control_asgi)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # _amain handles the signals
            yield

    config = uvicorn.Config(
        asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=3
    )
    server = Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    _ready(port)
    await stop.wait()
    server.should_exit = True
    await task


async def _serve_aiohttp(sio: Any, app: TestApp, port: int, stop: asyncio.Event) -> None:
    from aiohttp import web

    web_app = web.Application()
    sio.attach(web_app)

    async def control(request: web.Request) -> web.Response:
        status, body = await _control_http(app, await request.read())
        return web.Response(status=status, body=body, content_type="application/json")

    web_app.router.add_post(CONTROL_PATH, control)
    runner = web.AppRunner(web_app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    _ready(port)
    await stop.wait()
    await runner.cleanup()


def _ready(port: int) -> None:
    print(f"READY {port}", flush=True)


async def _amain(args: argparse.Namespace) -> None:
    sio, delivery, app = build(args)
    if delivery is not None:
        await delivery.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serve = _serve_asgi if args.mode == "asgi" else _serve_aiohttp
    try:
        await serve(sio, app, args.port, stop)
    finally:
        if delivery is not None:
            await delivery.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Socket.IO test server with Delivery")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default="memory://", help="store URL, or 'none' for no Delivery")
    parser.add_argument("--mode", choices=["asgi", "aiohttp"], default="asgi")
    parser.add_argument("--redis-manager", default=None, help="AsyncRedisManager URL")
    parser.add_argument("--recovery-window", type=float, default=120.0)
    parser.add_argument(
        "--session-lease",
        type=float,
        default=3.0,
        help="Delivery(session_lease=...): short, so clients of a killed node recover soon",
    )
    parser.add_argument("--idempotency-ttl", type=float, default=None)
    parser.add_argument("--no-rerun-connect", action="store_true", help="Delivery(rerun_connect=False)")
    parser.add_argument(
        "--identity",
        choices=["session", "session-user"],
        default="session",
        help="processed-once scope: the recovery session (default) or the session data's 'user'",
    )
    parser.add_argument("--ping-interval", type=float, default=5.0)
    parser.add_argument("--ping-timeout", type=float, default=4.0)
    parser.add_argument("--log-level", default=os.environ.get("DELIVERY_APP_LOG_LEVEL", "WARNING"))
    parser.add_argument(
        "--disconnect-delay", type=float, default=0.0, help="seconds the app's disconnect handler awaits"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_amain(args))


# --------------------------------------------------------------------------- the launcher


class DeliveryAppProcess(ChildProcess):
    """This app in a subprocess on a fixed loopback port: start, stop (kill -9 too), restart.

    ``extra`` are more command-line arguments (``["--recovery-window", "1"]``). The log
    (stderr) goes to ``self.log_path``; :meth:`log_tail` returns its end. :meth:`start`
    is :meth:`spawn` then :meth:`wait_ready` (for READY), for starting several at once.
    """

    ready_line = b"READY"

    def __init__(
        self,
        *,
        store: str = "memory://",
        mode: str = "asgi",
        port: int | None = None,
        redis_manager: str | None = None,
        extra: list[str] | None = None,
        python: str | None = None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.redis_manager = redis_manager
        self.extra = list(extra or [])
        self.python = python or sys.executable
        fd, log_path = tempfile.mkstemp(prefix="delivery-app-", suffix=".log")
        os.close(fd)
        super().__init__(port=port or free_port(), log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [self.python, _HERE, "--port", str(self.port), "--store", self.store, "--mode", self.mode]
        if self.redis_manager:
            cmd += ["--redis-manager", self.redis_manager]
        return cmd + self.extra

    def start_failed(self, log: str) -> NoReturn:
        raise RuntimeError(f"delivery_app did not start: {self.command()}\n{log}")

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    async def control(self, op: str, **spec: Any) -> Any:
        """POST a control op to the running app and return its JSON result (raises on error)."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}{CONTROL_PATH}", json={"op": op, **spec}) as response,
        ):
            result = await response.json()
        if response.status != 200:
            raise RuntimeError(f"control {op} failed: {result}")
        return result

    def wait_port_free(self, timeout: float = 10.0) -> None:
        """After a kill: wait until nothing listens on the port any more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and port_accepts(self.port, timeout=0.2):
            time.sleep(0.02)


if __name__ == "__main__":
    main()
