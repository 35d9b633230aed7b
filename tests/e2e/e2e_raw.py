"""A raw Socket.IO v5 / Engine.IO v4 client over one WebSocket, for sending what real clients never send.

::

    async with RawSocket.open(app.port) as raw:
        reply = await raw.connect({"pid": {"$gt": ""}})   # the CONNECT reply packet: "40{...}" or "44{...}"
        assert await raw.echo("hi") == ["hi"]              # the socket still works
        raw.received                                       # every packet, in order
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets

__all__ = ["RawSocket"]

WAIT = 20.0


class RawSocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[str] = []
        self._ack_id = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[RawSocket]:
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(url, max_size=None) as ws:
            raw = cls(ws)
            opening = await asyncio.wait_for(ws.recv(), WAIT)
            assert str(opening).startswith("0{"), opening
            yield raw

    async def next_packet(self) -> str:
        """The next Socket.IO packet (Engine.IO pings answered on the way)."""
        while True:
            message = str(await asyncio.wait_for(self.ws.recv(), WAIT))
            if message == "2":
                await self.ws.send("3")
                continue
            assert message.startswith("4"), f"not an Engine.IO MESSAGE: {message[:200]!r}"
            self.received.append(message[1:])
            return message[1:]

    async def connect(self, payload: Any) -> str:
        """Send CONNECT to ``/`` with ``payload`` (any JSON); the CONNECT or CONNECT_ERROR reply."""
        await self.ws.send("40" + json.dumps(payload))
        while True:
            packet = await self.next_packet()
            if packet[:1] in ("0", "4"):
                return packet

    async def echo(self, *args: Any) -> Any:
        """Emit ``echo`` with an ack; return the ack's arguments (events before it are kept)."""
        self._ack_id += 1
        ack_id = self._ack_id
        await self.ws.send(f"42{ack_id}" + json.dumps(["echo", *args]))
        while True:
            packet = await self.next_packet()
            if packet.startswith(f"3{ack_id}["):
                return json.loads(packet[len(str(ack_id)) + 1 :])[0]

    def events(self) -> list[list[Any]]:
        """Every EVENT packet received on ``/`` (decoded), in order."""
        return [json.loads(p[1:]) for p in self.received if p.startswith("2[")]
