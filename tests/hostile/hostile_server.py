"""The server the hostile suite attacks: ``AsyncServer`` + ``Delivery`` under uvicorn, in-process.

::

    async with serve("sqlite:////tmp/x.db") as h:
        observer = await h.observer()             # a well-behaved raw client on "/"
        await h.tick()                            # the app emits ["tick", {"id": n}] to everyone
        ...attack...
        await h.tick()
        await h.check_observer(observer)          # every app emit, in order, once

The app (namespaces ``/`` and ``/other``):

* ``connect``: records the call (``h.connect_calls``); unless recovered, joins the rooms in
  ``auth["rooms"]`` (strings only) and saves ``auth["data"]`` (a dict) as session data;
* ``disconnect``: records the call (``h.disconnect_calls``);
* ``echo``: acks its arguments;
* ``relay(data)``: ``await sio.emit("relayed", {"id": n, "data": data})`` to everyone; acks
  ``{"ok": n}``, or ``{"refused": "..."}`` when the emit raised a ``ValueError`` (an event
  that cannot be stored or sent: ``socketio_delivery.InvalidArgumentError``);
* ``work(payload)``: a processed-once handler (the client puts an ``idempotencyKey`` in
  ``payload``): counts its runs per key (``h.runs``) and acks ``payload["ack"]``, or bytes
  when ``payload["bytes"]`` is true, or ``"y" * payload["ack_size"]``;
* ``connect_error`` and ``delivery:resync`` handlers that only record a call (``h.reserved_calls``):
  a client's event of a reserved name must never reach them.

Every app emit that returned records its id in ``h.emitted`` (in order); refused ones in
``h.refused``. Log records of ``socketio_delivery``, ``socketio`` and ``engineio`` are kept in
``h.logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
import uvicorn
from hostile_raw import RawClient
from socketio_delivery import Delivery
from socketio_delivery.wire import RESYNC_EVENT

__all__ = ["CONNECT_DEADLINE", "EMIT_DEADLINE", "Harness", "serve"]

#: a CONNECT must be answered within this (Delivery's own deadline, connect_timeout, is 10 s)
CONNECT_DEADLINE = 5.0
#: an ``await sio.emit`` of a plain event must return within this
EMIT_DEADLINE = 5.0
#: how long the well-behaved client may take to get every event
DELIVERY_DEADLINE = 8.0

NAMESPACES = ("/", "/other")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.lines.append(text)


class Harness:
    """The running server, what its app recorded, and helpers to check a case."""

    def __init__(self, sio: socketio.AsyncServer, delivery: Delivery) -> None:
        self.sio = sio
        self.delivery = delivery
        self.port = 0
        self.connect_calls: list[dict[str, Any]] = []
        self.disconnect_calls: list[dict[str, Any]] = []
        self.runs: dict[str, int] = {}
        #: calls of the app's handlers for reserved names (connect_error, delivery:resync)
        self.reserved_calls: list[dict[str, Any]] = []
        self.emitted: list[int] = []
        self.ticks: list[int] = []
        self.refused: list[int] = []
        self.clients: list[RawClient] = []
        self.records = _Records()
        self._next = 0
        for namespace in NAMESPACES:
            self._register(namespace)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs(self) -> list[str]:
        return self.records.lines

    def next_id(self) -> int:
        self._next += 1
        return self._next

    def _register(self, namespace: str) -> None:
        sio, h = self.sio, self

        @sio.on("connect", namespace=namespace)
        async def connect(sid: str, environ: Any, auth: Any = None) -> None:
            recovered = h.delivery.recovered(sid, namespace)
            h.connect_calls.append(
                {
                    "sid": sid,
                    "namespace": namespace,
                    "recovered": recovered,
                    "auth_type": type(auth).__name__,
                    "environ_type": type(environ).__name__,
                }
            )
            if recovered or not isinstance(auth, dict):
                return
            rooms = auth.get("rooms")
            for room in rooms if isinstance(rooms, list) else []:
                if isinstance(room, str) and len(room) < 100:
                    await sio.enter_room(sid, room, namespace=namespace)
            if isinstance(auth.get("data"), dict):
                await sio.save_session(sid, dict(auth["data"]), namespace=namespace)

        @sio.on("disconnect", namespace=namespace)
        async def disconnect(sid: str, *args: Any) -> None:
            h.disconnect_calls.append({"sid": sid, "namespace": namespace, "args": repr(args)[:200]})

        for name in ("connect_error", RESYNC_EVENT):

            async def reserved(sid: str, *args: Any, _name: str = name) -> None:
                h.reserved_calls.append({"sid": sid, "event": _name, "namespace": namespace})

            sio.on(name, namespace=namespace)(reserved)

        @sio.on("echo", namespace=namespace)
        async def echo(sid: str, *args: Any) -> Any:
            return args

        @sio.on("relay", namespace=namespace)
        async def relay(sid: str, data: Any = None, *rest: Any) -> Any:
            n = h.next_id()
            try:
                await sio.emit("relayed", {"id": n, "data": data}, namespace=namespace)
            except ValueError as exc:
                h.refused.append(n)
                return {"refused": str(exc)[:200]}
            if namespace == "/":
                h.emitted.append(n)
            return {"ok": n}

        @sio.on("work", namespace=namespace)
        async def work(sid: str, payload: Any = None, *rest: Any) -> Any:
            key = str(payload.get("idempotencyKey")) if isinstance(payload, dict) else "-"
            h.runs[key] = h.runs.get(key, 0) + 1
            if isinstance(payload, dict) and payload.get("bytes"):
                return b"\x00\x01binary ack"
            if isinstance(payload, dict) and isinstance(payload.get("ack_size"), int):
                return "y" * min(payload["ack_size"], 4 * 1024 * 1024)
            return payload.get("ack") if isinstance(payload, dict) else None

    # -- clients ----------------------------------------------------------------------
    async def raw(self, port: int | None = None) -> RawClient:
        """A raw client (closed at the end of the case)."""
        client = await RawClient.open(port or self.port)
        self.clients.append(client)
        return client

    async def observer(self, namespace: str = "/") -> RawClient:
        """A well-behaved client: a plain CONNECT, answered with a new session."""
        client = await self.raw()
        answer = await client.connect({}, namespace=namespace, deadline=CONNECT_DEADLINE)
        assert answer.kind == "connect", f"the observer could not connect: {answer}"
        return client

    # -- the app's emits ------------------------------------------------------------------
    async def tick(self) -> int:
        """The app emits ``["tick", {"id": n}]`` to everyone on ``/``; fails when the emit stalls."""
        n = self.next_id()
        try:
            await asyncio.wait_for(self.sio.emit("tick", {"id": n}), EMIT_DEADLINE)
        except asyncio.TimeoutError:
            raise AssertionError(f"await sio.emit('tick') did not return within {EMIT_DEADLINE} s") from None
        self.emitted.append(n)
        self.ticks.append(n)
        return n

    async def check_observer(self, observer: RawClient, *, timeout: float = DELIVERY_DEADLINE) -> None:
        """The observer got every app emit that returned, in offset order, each once, nothing else."""

        def app_events() -> list[tuple[int, str]]:
            got = []
            for event in observer.events():
                if event[0] in ("tick", "relayed") and len(event) >= 3 and isinstance(event[1], dict):
                    got.append((event[1].get("id"), event[-1]))
            return got

        wanted = set(self.emitted)
        await observer.wait_for(lambda: wanted <= {n for n, _ in app_events()}, timeout)
        got = app_events()
        ids = [n for n, _ in got]
        missing = sorted(wanted - set(ids))
        duplicated = sorted({n for n in ids if ids.count(n) > 1})
        offsets = [o for _, o in got]
        # offsets compare within one epoch (a wiped store starts a new one: "delivery:resync" says so)
        reordered = [
            i
            for i in range(1, len(offsets))
            if offsets[i - 1].split("-")[0] == offsets[i].split("-")[0] and not offsets[i - 1] < offsets[i]
        ]
        unknown = sorted(set(ids) - wanted - set(self.refused))
        ticks = [n for n, _ in got if n in self.ticks]
        assert not observer.closed, "the well-behaved client's connection was closed"
        assert not missing, f"the well-behaved client never got app emits {missing} (got {ids})"
        assert not duplicated, f"the well-behaved client got {duplicated} more than once"
        assert not reordered, f"the well-behaved client got events out of offset order: {offsets}"
        assert not unknown, f"the well-behaved client got events the app never emitted: {unknown}"
        assert ticks == sorted(ticks), f"ticks (emitted one after the other) out of order: {ticks}"

    def check_no_pid_logged(self, pids: list[str]) -> None:
        text = "\n".join(self.logs)
        leaked = [pid for pid in pids if pid and pid in text]
        assert not leaked, "a pid (a bearer secret) reached the log"


async def _serve_asgi(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
            ws_max_size=16 * 1024 * 1024,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.005)
    return server, serving, server.servers[0].sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def serve(store: Any, **delivery_options: Any) -> AsyncIterator[Harness]:
    """Serve the app on ``store`` (a URL or a store object); yield its :class:`Harness`."""
    sio_options = delivery_options.pop("sio_options", {})
    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False, **sio_options)
    delivery = Delivery(sio, store=store, **delivery_options)
    h = Harness(sio, delivery)
    loggers = [logging.getLogger(name) for name in ("socketio_delivery", "socketio", "engineio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(h.records)
        logger.setLevel(logging.INFO)
    await delivery.open()
    server, serving, h.port = await _serve_asgi(socketio.ASGIApp(sio))
    try:
        yield h
    finally:
        for client in h.clients:
            await client.close()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, 5)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(delivery.close(), 5)
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(h.records)
            logger.setLevel(level)
