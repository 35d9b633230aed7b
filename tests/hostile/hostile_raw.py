"""A raw Engine.IO v4 / Socket.IO v5 client over one WebSocket that can send anything.

Unlike a real client it sends whatever it is told (forged pids, reserved event names, binary
packets whose attachment counts lie) and records every packet it gets. A background reader
answers Engine.IO pings (so the connection stays alive however slowly the test goes) and
keeps every Socket.IO packet in :attr:`RawClient.packets`::

    raw = await RawClient.open(port)
    answer = await raw.connect({"pid": "forged"}, deadline=5)   # Answer("connect" | "error" | "closed", ...)
    await raw.send_event(["echo", 1])
    raw.events()                                                 # decoded EVENT packets on "/"
    await raw.close()                                            # abort: no goodbye at all

:meth:`RawClient.connect` never waits longer than its ``deadline``: no answer by then raises
:class:`NoAnswer`. A transport that closes before an answer counts as an answer (the server's
way of saying "busy" or "store unavailable": the client retries with back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import websockets

__all__ = ["Answer", "NoAnswer", "Packet", "RawClient", "parse_packet"]


class NoAnswer(AssertionError):
    """A CONNECT got neither a CONNECT reply, a CONNECT_ERROR nor a transport close in time."""


@dataclass
class Packet:
    """One Socket.IO packet as received (``data`` decoded; ``None`` when it has none or is not JSON)."""

    type: int
    namespace: str
    data: Any
    ack_id: int | None = None
    attachments: int = 0
    raw: str = ""


@dataclass
class Answer:
    """What a CONNECT got: ``kind`` is ``"connect"``, ``"error"`` or ``"closed"``; ``seconds`` it took."""

    kind: str
    data: Any
    seconds: float


def parse_packet(text: str) -> Packet:
    """Decode a Socket.IO packet (the Engine.IO MESSAGE prefix ``4`` already removed)."""
    kind, rest = int(text[0]), text[1:]
    attachments = 0
    if kind in (5, 6) and "-" in rest:
        count, rest = rest.split("-", 1)
        attachments = int(count) if count.isdigit() else -1
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    digits = ""
    while rest[:1].isdigit():
        digits, rest = digits + rest[0], rest[1:]
    data: Any = None
    if rest:
        try:
            data = json.loads(rest)
        except ValueError:
            data = None
    return Packet(kind, namespace, data, int(digits) if digits else None, attachments, text)


def encode(kind: int, data: Any = None, namespace: str = "/", ack_id: int | None = None) -> str:
    """A Socket.IO packet as an Engine.IO MESSAGE (``4...``); ``data`` is JSON-encoded."""
    text = f"4{kind}"
    if namespace != "/":
        text += namespace + ","
    if ack_id is not None:
        text += str(ack_id)
    if data is not None:
        text += json.dumps(data)
    return text


class RawClient:
    """One Engine.IO connection over WebSocket; see the module docstring."""

    def __init__(self, ws: Any, port: int) -> None:
        self.ws = ws
        self.port = port
        self.packets: list[Packet] = []
        self.closed = False
        #: when set, Engine.IO pings go unanswered (a half-open connection, as the server sees it)
        self.muted = False
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ack_id = 0

    @classmethod
    async def open(cls, port: int, *, timeout: float = 10.0) -> RawClient:
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ws = await asyncio.wait_for(
            websockets.connect(url, max_size=None, open_timeout=timeout, ping_interval=None), timeout
        )
        opening = await asyncio.wait_for(ws.recv(), timeout)
        if not str(opening).startswith("0{"):
            await ws.close()
            raise AssertionError(f"no Engine.IO OPEN: {opening!r}")
        raw = cls(ws, port)
        raw._reader = asyncio.create_task(raw._read())
        return raw

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    continue  # a binary attachment
                if message == "2":
                    if self.muted:
                        continue
                    with contextlib.suppress(Exception):
                        await self.ws.send("3")
                    continue
                if message.startswith("4") and len(message) > 1:
                    self.packets.append(parse_packet(message[1:]))
                    self._changed.set()
        except Exception:
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until ``predicate()`` holds (True) or ``timeout`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            if predicate():
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    def mute(self) -> None:
        """Stop answering pings (the packets the server sends are still recorded)."""
        self.muted = True

    async def send(self, text: str | bytes) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(text)

    async def connect(self, payload: Any = None, *, namespace: str = "/", deadline: float = 5.0) -> Answer:
        """Send CONNECT with ``payload`` (any JSON, or a raw string when it starts with ``{`` or ``[``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen = len(self.packets)
        if isinstance(payload, str) and payload[:1] in "{[":
            text = "40" + ("" if namespace == "/" else namespace + ",") + payload
        else:
            text = encode(0, payload, namespace)
        await self.send(text)

        def answered() -> Packet | None:
            for packet in self.packets[seen:]:
                if packet.namespace == namespace and packet.type in (0, 4):
                    return packet
            return None

        await self.wait_for(lambda: answered() is not None or self.closed, deadline)
        packet = answered()
        took = loop.time() - started
        if packet is not None:
            return Answer("connect" if packet.type == 0 else "error", packet.data, took)
        if self.closed:
            return Answer("closed", None, took)
        raise NoAnswer(f"CONNECT {text[:120]!r} got no answer within {deadline} s")

    async def send_event(self, data: list[Any], *, namespace: str = "/", ack: bool = False) -> int | None:
        ack_id = None
        if ack:
            self._ack_id += 1
            ack_id = self._ack_id
        await self.send(encode(2, data, namespace, ack_id))
        return ack_id

    async def call(self, data: list[Any], *, namespace: str = "/", timeout: float = 5.0) -> Any:
        """Emit with an ack id; the ack's arguments, or ``None`` when none came in time."""
        ack_id = await self.send_event(data, namespace=namespace, ack=True)

        def ack() -> Packet | None:
            for packet in self.packets:
                if packet.type in (3, 6) and packet.ack_id == ack_id and packet.namespace == namespace:
                    return packet
            return None

        await self.wait_for(lambda: ack() is not None or self.closed, timeout)
        packet = ack()
        return None if packet is None else packet.data

    def events(self, namespace: str = "/") -> list[list[Any]]:
        """Every EVENT packet received on ``namespace`` (decoded), in order."""
        return [
            p.data
            for p in self.packets
            if p.type == 2 and p.namespace == namespace and isinstance(p.data, list) and p.data
        ]

    def connect_reply(self, namespace: str = "/") -> dict[str, Any] | None:
        """The data of the last CONNECT reply on ``namespace``."""
        for packet in reversed(self.packets):
            if packet.type == 0 and packet.namespace == namespace and isinstance(packet.data, dict):
                return packet.data
        return None

    async def close(self, *, abort: bool = True) -> None:
        """Abort the TCP connection (no WebSocket close frame, no goodbye), or close it politely."""
        if abort:
            with contextlib.suppress(Exception):
                self.ws.transport.abort()
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        self.closed = True
