"""The official ``socket.io-client`` (tests/js/node_modules) in a Node process, driven from a test.

::

    async with NodeClient.start() as node:
        await node.connect(app.url, auth={"rooms": ["r1"]})
        first = await node.wait_connect()
        await node.call("echo", 1)                       # -> [1]
        event = await node.wait_event("news")
        assert event["args"][-1] == offset               # the offset is the last argument

Every line the driver prints (tests/js/client_driver.js) is kept in ``node.messages``;
``wait_*`` return the first matching message after a cursor, so a test reads the stream in
order and never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

__all__ = ["DRIVER", "JS_DIR", "Message", "NodeClient", "node_available"]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
DRIVER = JS_DIR / "client_driver.js"
WAIT = 20.0

Message = dict[str, Any]


def node_available() -> str | None:
    """Why the Node tests cannot run, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed (make js)"
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        return "tests/js/node_modules is missing (make js)"
    return None


class NodeClient:
    """One ``node client_driver.js`` process; sockets inside it are named (default ``main``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.messages: list[Message] = []
        self.cursors: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._req = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self.stderr = b""

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls) -> AsyncIterator[NodeClient]:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            cwd=str(JS_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(JS_DIR / "node_modules")},
        )
        client = cls(process)
        try:
            yield client
        finally:
            await client.close()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"type": "garbage", "line": line.decode(errors="replace")}
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()
        async with self._changed:
            self.messages.append({"type": "exited"})
            self._changed.notify_all()

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send({"cmd": "exit"})
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        if self.process.stderr is not None:
            self.stderr = await self.process.stderr.read()

    # ---- commands

    async def send(self, cmd: dict[str, Any]) -> int:
        req = next(self._req)
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({**cmd, "req": req}) + "\n").encode())
        await self.process.stdin.drain()
        return req

    async def command(self, cmd: str, name: str = "main", **fields: Any) -> Message:
        req = await self.send({"cmd": cmd, "name": name, **fields})
        reply = await self.wait(lambda m: m["type"] == "reply" and m.get("req") == req, cursor=None)
        if reply.get("error"):
            raise RuntimeError(f"driver {cmd}: {reply['error']}")
        return reply

    async def connect(
        self, url: str, *, name: str = "main", namespace: str = "/", auth: Any = None, **opts: Any
    ) -> None:
        if auth is not None:
            opts["auth"] = auth
        await self.command("connect", name, url=url, namespace=namespace, opts=opts)

    async def emit(self, event: str, *args: Any, name: str = "main") -> None:
        await self.command("emit", name, event=event, args=list(args))

    async def emit_with_ack(self, event: str, *args: Any, name: str = "main") -> int:
        """Emit with an ack callback; returns the request number for :meth:`wait_ack`."""
        reply = await self.command("emit", name, event=event, args=list(args), ack=True)
        req: int = reply["req"]
        return req

    async def wait_ack(self, req: int, timeout: float = WAIT) -> list[Any]:
        ack = await self.wait(
            lambda m: m["type"] == "ack" and m.get("req") == req, cursor=None, timeout=timeout
        )
        args: list[Any] = ack["args"]
        return args

    async def call(self, event: str, *args: Any, name: str = "main", timeout: float = WAIT) -> Any:
        """Emit with an ack and return the ack's first argument."""
        args_back = await self.wait_ack(await self.emit_with_ack(event, *args, name=name), timeout)
        return args_back[0] if args_back else None

    async def state(self, name: str = "main") -> Message:
        return await self.command("state", name)

    # ---- reading

    async def wait(
        self,
        predicate: Callable[[Message], bool],
        *,
        cursor: str | None,
        timeout: float = WAIT,
    ) -> Message:
        """The first message after ``cursor`` that matches (the cursor moves past it).

        ``cursor=None`` searches every message and moves no cursor.
        """

        def find() -> Message | None:
            start = self.cursors.get(cursor, 0) if cursor is not None else 0
            for index in range(start, len(self.messages)):
                message = self.messages[index]
                if predicate(message):
                    if cursor is not None:
                        self.cursors[cursor] = index + 1
                    return message
                if message["type"] == "exited":
                    raise RuntimeError(f"node driver exited: {self.stderr.decode(errors='replace')}")
            return None

        async def found() -> Message:
            async with self._changed:
                while (message := find()) is None:
                    await self._changed.wait()
                return message

        try:
            return await asyncio.wait_for(found(), timeout)
        except asyncio.TimeoutError:
            tail = "\n".join(json.dumps(m) for m in self.messages[-30:])
            raise AssertionError(
                f"no matching message from the JS client within {timeout}s; last:\n{tail}"
            ) from None

    # each kind of message has its own cursor per socket, so waits for one never skip another

    async def wait_connect(self, name: str = "main") -> Message:
        return await self.wait(
            lambda m: m["type"] == "connect" and m["name"] == name, cursor=f"{name}:connect"
        )

    async def wait_disconnect(self, name: str = "main") -> Message:
        return await self.wait(
            lambda m: m["type"] == "disconnect" and m["name"] == name, cursor=f"{name}:disconnect"
        )

    async def wait_event(self, event: str, name: str = "main") -> Message:
        return await self.wait(
            lambda m: m["type"] == "event" and m["name"] == name and m["event"] == event,
            cursor=f"{name}:event:{event}",
        )

    def index(self, message: Message) -> int:
        """Where ``message`` is in :attr:`messages` (arrival order)."""
        return next(i for i, m in enumerate(self.messages) if m is message)

    def events(self, event: str | None = None, name: str = "main", since: int = 0) -> list[Message]:
        """Every event message received so far (optionally of one event name)."""
        return [
            m
            for m in self.messages[since:]
            if m["type"] == "event" and m["name"] == name and (event is None or m["event"] == event)
        ]

    def connects(self, name: str = "main") -> list[Message]:
        return [m for m in self.messages if m["type"] == "connect" and m["name"] == name]

    def sent(self, event: str, name: str = "main") -> list[Message]:
        return [m for m in self.messages if m["type"] == "sent" and m["name"] == name and m["event"] == event]
