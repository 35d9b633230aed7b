"""A redis-server the chaos runs own: started in a temporary folder, restartable with its data."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["RedisService", "redis_available"]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisService:
    """``redis-server`` with an append-only file, so a restart keeps every acknowledged write.

    ::

        async with RedisService() as redis:
            url = redis.url
            await redis.restart(downtime=2.0)   # SIGTERM, wait, start again on the same port
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-redis-"))
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make services)")
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                exe,
                *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
                *("--save", "", "--protected-mode", "no", "--loglevel", "warning"),
                *("--appendonly", "yes", "--appendfsync", "everysec"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError(f"redis-server did not start (see {self.dir / 'redis.log'})")

    async def stop(self) -> None:
        """A clean shutdown (SIGTERM): Redis writes its append-only file first."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def restart(self, downtime: float) -> None:
        await self.stop()
        await asyncio.sleep(downtime)
        await self.start()

    async def __aenter__(self) -> RedisService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
