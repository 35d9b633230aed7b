"""The ``socketio-delivery`` command: list installed stores, check that a store works.

Usage::

    socketio-delivery stores              # scheme, distribution, version, object
    socketio-delivery stores --json
    socketio-delivery check sqlite:///events.db
    socketio-delivery check               # the URL in SOCKETIO_DELIVERY_STORE_URL
    socketio-delivery --version

``check`` opens the store, persists a probe event on the stream
``socketio-delivery:check`` and reads it back, saves and claims a probe session,
reserves and completes a probe idempotency key, and prints a report with timings.
It exits with 0 when every step worked and 1 otherwise; errors are one line,
passwords are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any, TextIO, TypeVar

from .config import ENV_STORE_URL, parse_url, redact
from .errors import ConfigurationError, DeliveryError, SessionBusyError
from .registry import open_store, scheme_info
from .store import EventStore, KeyState

__all__ = ["CHECK_STREAM", "main"]

PROG = "socketio-delivery"
#: The stream ``check`` writes its probe events to (bounded by the store's retention).
CHECK_STREAM = "socketio-delivery:check"

T = TypeVar("T")


class CheckFailed(Exception):
    """A step of ``check`` gave a wrong answer (the store broke its contract)."""


def _version() -> str:
    try:
        return metadata.version("socketio-delivery")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# -- stores ---------------------------------------------------------------------------------


def _table(rows: list[dict[str, str]], columns: Sequence[str]) -> str:
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _cmd_stores(args: argparse.Namespace, out: TextIO) -> int:
    rows = scheme_info()
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not rows:
        print("no stores installed (pip install 'socketio-delivery[sqlite]')", file=out)
        return 0
    print(_table(rows, ("scheme", "distribution", "version", "object")), file=out)
    return 0


# -- check ----------------------------------------------------------------------------------


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def step(self, name: str, action: Callable[[], Awaitable[T]], describe: Callable[[T], str]) -> T:
        started = time.perf_counter()
        try:
            result = await action()
        except BaseException:
            print(f"  {name:<12} {'':>8}     FAILED", file=self.out)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        print(f"  {name:<12} {elapsed:8.1f} ms  {describe(result)}", file=self.out)
        return result


async def _check(store: EventStore, report: _Report) -> None:
    await report.step("open", store.open, lambda _: "connected")
    try:
        await _check_events(store, report)
        key = f"socketio-delivery:check:{store.generate_id()}"
        await _check_sessions(store, report, key)
        await _check_keys(store, report, key)
    finally:
        await report.step("close", store.close, lambda _: "closed")


async def _check_events(store: EventStore, report: _Report) -> None:
    before = await report.step(
        "last_offset", lambda: store.last_offset(CHECK_STREAM), lambda o: f"stream at {o}"
    )
    probe = {"probe": store.generate_id(), "at": time.time()}
    event = await report.step(
        "persist",
        lambda: store.persist(CHECK_STREAM, probe, rooms=["probe"]),
        lambda e: f"offset {e.offset}",
    )
    events = await report.step(
        "fetch_since",
        lambda: store.fetch_since(CHECK_STREAM, before, rooms=["probe"], limit=10),
        lambda es: f"{len(es)} event(s) read back",
    )
    mine = [e for e in events if e.offset == event.offset]
    if not mine or mine[0].data != probe:
        raise CheckFailed(f"fetch_since after {before} did not return the probe event {event.offset}")


async def _check_sessions(store: EventStore, report: _Report, key: str) -> None:
    record = {"probe": key, "rooms": ["probe"]}

    async def claim_or_busy() -> Any:
        try:
            return await store.claim_session(key)
        except SessionBusyError:
            return "busy"

    async def session() -> tuple[Any, Any, Any, Any]:
        await store.save_session(key, record, 60)
        leased = await store.claim_session(key, lease=30)
        busy = await claim_or_busy()
        await store.save_session(key, record, 60, lease=30)  # saved leased: still hidden
        held = await claim_or_busy()
        await store.save_session(key, record, 60)  # ends the lease
        return leased, busy, held, (await store.claim_session(key), await store.claim_session(key))

    leased, busy, held, (first, second) = await report.step(
        "session", session, lambda _: "saved, leased, saved leased, saved back, claimed once"
    )
    if leased != record or busy != "busy":
        raise CheckFailed(
            f"a leased claim_session returned {leased!r}, then a second claim {busy!r}; "
            "expected the record, then SessionBusyError"
        )
    if held != "busy":
        raise CheckFailed(
            f"a claim after save_session(..., lease=30) returned {held!r}; expected SessionBusyError"
        )
    if first != record or second is not None:
        raise CheckFailed(f"claim_session returned {first!r} then {second!r}; expected the record then None")


async def _check_keys(store: EventStore, report: _Report, key: str) -> None:
    async def idempotency() -> tuple[Any, Any]:
        acquired = await store.reserve_key(key, 30)
        if acquired.state is not KeyState.ACQUIRED:
            return acquired, None
        await store.complete_key(key, {"ok": True}, 60)
        return acquired, await store.reserve_key(key, 30)

    acquired, done = await report.step("idempotency", idempotency, lambda _: "reserved, completed, seen done")
    if acquired.state is not KeyState.ACQUIRED:
        raise CheckFailed(f"reserve_key of a fresh key returned {acquired.state.value}, expected acquired")
    if done is None or done.state is not KeyState.DONE or done.result != {"ok": True}:
        raise CheckFailed(f"reserve_key of a completed key returned {done!r}, expected done with its result")


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    url = args.url or os.environ.get(ENV_STORE_URL)
    if not url:
        raise ConfigurationError(
            f"no store URL: pass one (socketio-delivery check URL) or set {ENV_STORE_URL}"
        )
    parse_url(url)  # a clear error before anything else
    store = open_store(url)
    caps = ", ".join(sorted(c.value for c in store.capabilities)) or "none"
    print(f"checking {redact(url)} ({type(store).__name__}; capabilities: {caps})", file=out)
    started = time.perf_counter()
    try:
        asyncio.run(asyncio.wait_for(_check(store, _Report(out)), args.timeout))
    except asyncio.TimeoutError:
        raise CheckFailed(f"no answer within {args.timeout:g} s (--timeout)") from None
    print(f"OK: the store works ({(time.perf_counter() - started) * 1000:.1f} ms in all)", file=out)
    return 0


# -- main -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect and check socketio-delivery event stores."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    stores = commands.add_parser("stores", help="list the installed stores: scheme, package, version")
    stores.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stores.set_defaults(run=_cmd_stores)

    check = commands.add_parser(
        "check", help="open a store, write and read back probe data, report timings (exit 0/1)"
    )
    check.add_argument("url", nargs="?", help=f"store URL (default: ${ENV_STORE_URL})")
    check.add_argument("--timeout", type=float, default=15.0, help="give up after this many seconds (15)")
    check.set_defaults(run=_cmd_check)
    return parser


def _one_line(exc: BaseException, secrets: Sequence[str]) -> str:
    text = (
        f"{type(exc).__name__}: {exc}" if not isinstance(exc, (CheckFailed, ConfigurationError)) else str(exc)
    )
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, DeliveryError) and cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def _passwords(argv: Sequence[str]) -> list[str]:
    found = []
    for arg in [*argv, os.environ.get(ENV_STORE_URL, "")]:
        if "://" in arg:
            try:
                password = parse_url(arg).password
            except ConfigurationError:
                continue
            if password:
                found.append(password)
    return found


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args, out)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    except CheckFailed as exc:
        print(f"FAILED: {_one_line(exc, _passwords(argv))}", file=err)
        return 1
    except Exception as exc:  # a clear line, never a traceback
        print(f"{PROG}: error: {_one_line(exc, _passwords(argv))}", file=err)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
