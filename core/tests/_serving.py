"""Test plumbing shared by the client and delivery tests in core/tests.

- ``serve_asgi(asgi_app)``: an ASGI app under uvicorn on a free 127.0.0.1 port, for a ``with``::

      async with serve_asgi(socketio.ASGIApp(sio)) as url:
          await client.connect(url)

- ``delivery_clients()``: a factory of ``DeliveryClient`` with fast reconnects, shut down at the end
  (the body of a ``make_client`` fixture).
- ``until(predicate, what)``: wait until ``predicate()`` holds (a hang guard, not a timing assertion).
- ``tag()``: a short unique name for a room or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from socketio_delivery.client import DeliveryClient

ClientFactory = Callable[..., DeliveryClient]


@contextlib.asynccontextmanager
async def serve_asgi(asgi_app: Any) -> AsyncIterator[str]:
    """Serve ``asgi_app`` under uvicorn on a free 127.0.0.1 port; yield its ``http://`` URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            asgi_app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def delivery_clients(shutdown_timeout: float | None = None) -> AsyncIterator[ClientFactory]:
    """Yield a ``DeliveryClient`` factory; shut every client it made down at the end.

    ``shutdown_timeout``: give each shutdown that long and ignore its errors (a long-polling
    client waits for its pending GET on disconnect, python-socketio's own behaviour, up to 30 s;
    the server's shutdown ends that request). ``None``: await each shutdown and let it raise.
    """
    clients: list[DeliveryClient] = []

    def make(**options: Any) -> DeliveryClient:
        options.setdefault("reconnection_delay", 0.05)
        options.setdefault("randomization_factor", 0)
        options.setdefault("handle_sigint", False)
        client = DeliveryClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        if shutdown_timeout is None:
            await client.shutdown()
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown(), shutdown_timeout)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait until ``predicate()`` holds (a hang guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def tag() -> str:
    """A short unique name (a room, a key)."""
    return uuid.uuid4().hex[:10]
