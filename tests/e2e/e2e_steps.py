"""Steps the end-to-end tests share: connect, emit numbered events, go away and come back, check order.

Numbered events are ``tick`` events (by default) whose first argument is ``{"n": n}``; a test
emits ``n`` in increasing order and checks that a client got exactly the numbers it should,
in order, each once, each with an offset (a string, the last argument) greater than the one
before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from delivery_app import DeliveryAppProcess
from e2e_node import Message, NodeClient
from e2e_proxy import TcpProxy

__all__ = [
    "come_back",
    "connect_js",
    "emit_numbered",
    "go_away",
    "numbers",
    "offsets",
    "wait_numbered",
]


async def connect_js(
    node: NodeClient,
    url: str,
    *,
    rooms: Iterable[str] = (),
    data: dict[str, Any] | None = None,
    name: str = "main",
    namespace: str = "/",
    **opts: Any,
) -> Message:
    """Connect a JS socket whose connect handler joins ``rooms`` and saves ``data``; its connect message."""
    auth = {"rooms": list(rooms), "data": data or {}}
    await node.connect(url, name=name, namespace=namespace, auth=auth, **opts)
    return await node.wait_connect(name)


async def emit_numbered(
    app: DeliveryAppProcess, numbers: Iterable[int], *, event: str = "tick", **target: Any
) -> None:
    """Server emits ``event({"n": n})`` for each n, in order (``target``: room, to, skip_sid, namespace)."""
    await app.control("emit", event=event, batch=[[{"n": n}] for n in numbers], **target)


async def wait_numbered(node: NodeClient, n: int, *, event: str = "tick", name: str = "main") -> Message:
    """Wait until the JS socket got ``event`` number ``n``."""
    while True:
        message = await node.wait_event(event, name)
        if message["args"][0].get("n") == n:
            return message


def numbers(events: list[Message]) -> list[int]:
    return [m["args"][0]["n"] for m in events]


def offsets(events: list[Message]) -> list[str]:
    """The offsets (last argument) of ``events``; asserts each is a string and they increase."""
    found = [m["args"][-1] for m in events]
    assert all(isinstance(o, str) and o for o in found), found
    assert all(a < b for a, b in itertools.pairwise(found)), f"offsets do not increase: {found}"
    return found


async def go_away(node: NodeClient, proxy: TcpProxy, *, name: str = "main") -> Message:
    """The server drops the socket's transport; the proxy keeps the client out until :func:`come_back`."""
    proxy.hold()
    await node.emit("drop", name=name)
    return await node.wait_disconnect(name)


async def come_back(node: NodeClient, proxy: TcpProxy, *, name: str = "main") -> Message:
    """Let the client's own reconnection through; its next connect message."""
    proxy.release()
    return await node.wait_connect(name)
