"""Child processes for the tests: servers and apps on loopback ports, started and stopped.

:class:`ChildProcess` is the common part of :class:`redis_server.RedisServer`,
:class:`mongo_server.MongoServer` and :class:`delivery_app.DeliveryAppProcess`: a subclass
says how to run the child (:meth:`~ChildProcess.command`) and how to tell it is ready (a
line on its stdout, :attr:`~ChildProcess.ready_line`, or a probe, :meth:`~ChildProcess.ready`)::

    class EchoServer(ChildProcess):
        def __init__(self) -> None:
            super().__init__(port=free_port(), log_path="/tmp/echo.log")

        def command(self) -> list[str]:
            return ["my-echo-server", "--port", str(self.port)]

        # ready(): the default waits until the port accepts connections

    server = EchoServer()
    server.start()            # spawn + wait until ready (else: stopped, start_failed())
    server.stop(kill=True)    # SIGKILL; stop(): SIGTERM, SIGKILL after stop_timeout
    server.start()            # same port
    server.log_tail()         # the end of its stderr (and stdout, unless ready_line is set)
    server.close()

The child gets SIGTERM when the test process dies, even by kill -9 (Linux,
``PR_SET_PDEATHSIG``), when it was started from the main thread: Linux sends that signal
when the *thread* that forked the child ends, so a start from a worker thread goes without
it. Every child still running is closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, NoReturn, TypeVar

__all__ = ["ChildProcess", "closing_children", "free_port", "port_accepts", "stop_process"]

_open: list[ChildProcess] = []
C = TypeVar("C", bound="ChildProcess")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved in the parent (the child must not import after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when the thread that started it ends (see the module doc)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 15.0) -> None:
    """SIGTERM (``kill=True``: SIGKILL) unless it has exited; SIGKILL after ``timeout`` s; reap it."""
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _first_line(stdout: IO[bytes], timeout: float) -> bytes:
    """The first line the child writes on ``stdout`` (b"" when it closes it or after ``timeout``)."""
    if not select.select([stdout], [], [], timeout)[0]:
        return b""
    return stdout.readline()


class ChildProcess:
    """One child process on 127.0.0.1:``port``: start, stop (SIGTERM or SIGKILL), restart.

    ``log_path``: the child's stderr is appended to it (its stdout too, unless
    :attr:`ready_line` is set: then stdout is a pipe read for that line). Subclasses
    implement :meth:`command` and either set :attr:`ready_line` or override :meth:`ready`.
    """

    #: seconds :meth:`wait_ready` waits
    start_timeout: float = 30.0
    #: seconds :meth:`stop` waits after SIGTERM before SIGKILL
    stop_timeout: float = 15.0
    #: seconds between two :meth:`ready` probes
    poll_interval: float = 0.05
    #: ready when the child's first stdout line starts with it (None: poll :meth:`ready`)
    ready_line: bytes | None = None

    def __init__(self, *, port: int, log_path: str, cwd: str | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        #: how many times the child was spawned
        self.starts = 0

    def command(self) -> list[str]:
        """The child's argv."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Probe, when :attr:`ready_line` is None: the child is up (default: the port accepts)."""
        return port_accepts(self.port)

    def start_failed(self, log: str) -> NoReturn:
        """Raise the error of a start that failed (the child is stopped; ``log``: its tail)."""
        raise RuntimeError(f"{self.command()} did not start on port {self.port}:\n{log}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """:meth:`spawn` then :meth:`wait_ready` (no-op when running)."""
        if self.running:
            return
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the child (no-op when running), without waiting: several can start at once."""
        if self.running:
            return
        main_thread = threading.current_thread() is threading.main_thread()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.ready_line is not None else log,
                stderr=log,
                cwd=self.cwd,
                # Only calls prctl: safe after fork (see the module docstring on threads).
                preexec_fn=_die_with_parent if main_thread else None,
            )
        finally:
            log.close()
        self.starts += 1
        if self not in _open:
            _open.append(self)

    def wait_ready(self) -> None:
        """Wait until the spawned child is ready; else stop it and :meth:`start_failed`."""
        process = self.process
        assert process is not None, "spawn() first"
        if self.ready_line is not None:
            assert process.stdout is not None
            ok = _first_line(process.stdout, self.start_timeout).startswith(self.ready_line)
        else:
            deadline = time.monotonic() + self.start_timeout
            ok = False
            while not ok and time.monotonic() < deadline and process.poll() is None:
                ok = self.ready()
                if not ok:
                    time.sleep(self.poll_interval)
        if not ok:
            self.stop(kill=True)
            self.start_failed(self.log_tail())

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (graceful) or SIGKILL (``kill=True``), then wait (SIGKILL after stop_timeout)."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, kill=kill, timeout=self.stop_timeout)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the child; subclasses also remove its files."""
        self.stop()
        with contextlib.suppress(ValueError):
            _open.remove(self)

    def log_tail(self, size: int = 6000) -> str:
        """The last ``size`` characters of the log."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-size:]
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def closing_children() -> Iterator[Callable[[C], C]]:
    """``start(child)`` starts a child and returns it; all it started are closed on exit.

    For a session fixture that hands out private servers::

        @pytest.fixture(scope="session")
        def echo_server_factory() -> Iterator[Callable[..., EchoServer]]:
            with closing_children() as start:
                yield lambda: start(EchoServer())
    """
    made: list[ChildProcess] = []

    def start(child: C) -> C:
        made.append(child)
        child.start()
        return child

    try:
        yield start
    finally:
        for child in made:
            child.close()


@atexit.register
def _close_all() -> None:
    for child in list(_open):
        child.close()
