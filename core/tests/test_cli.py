"""The ``socketio-delivery`` command line: ``stores``, ``check URL``, ``--version``."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from socketio_delivery import registry
from socketio_delivery.cli import CHECK_STREAM, main
from socketio_delivery.errors import StoreUnavailableError
from socketio_delivery.memory import MemoryEventStore


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def scheme() -> Iterator[Any]:
    """Register test stores under schemes; unregistered afterwards."""
    names: list[str] = []

    def register(name: str, cls: type[MemoryEventStore]) -> None:
        names.append(name)
        registry.register(name, lambda url, **options: cls.from_url("memory://", **options))

    yield register
    for name in names:
        registry.unregister(name)


def test_stores_lists_installed_schemes_with_their_distribution() -> None:
    code, out, _ = run("stores")
    assert code == 0
    header, _rule, *rows = out.splitlines()
    assert header.split() == ["scheme", "distribution", "version", "object"]
    by_scheme = {row.split()[0]: row.split() for row in rows}
    memory = by_scheme["memory"]
    assert (memory[1], memory[3]) == ("socketio-delivery", "socketio_delivery.memory:MemoryEventStore")
    assert memory[2] == metadata.version("socketio-delivery")
    assert by_scheme["sqlite"][1] == "socketio-delivery-sqlite"


def test_stores_json_is_the_scheme_info() -> None:
    code, out, _ = run("stores", "--json")
    assert code == 0
    assert json.loads(out) == registry.scheme_info()


def test_check_memory_reports_every_step_and_succeeds() -> None:
    code, out, err = run("check", "memory://")
    assert (code, err) == (0, "")
    for step in ("open", "last_offset", "persist", "fetch_since", "session", "idempotency", "close"):
        assert f"  {step} " in out
    assert " ms " in out
    assert out.splitlines()[-1].startswith("OK")


def test_check_reads_the_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETIO_DELIVERY_STORE_URL", "memory://?max_events=5")
    code, out, _ = run("check")
    assert code == 0
    assert out.startswith("checking memory://?max_events=5 (MemoryEventStore")


def test_check_without_any_url_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCKETIO_DELIVERY_STORE_URL", raising=False)
    code, _out, err = run("check")
    assert code == 1
    assert err == (
        "socketio-delivery: error: no store URL: pass one (socketio-delivery check URL) "
        "or set SOCKETIO_DELIVERY_STORE_URL\n"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://x", "no store is installed for the scheme 'nosuch'"),
        ("memory://?bogus=1", "unknown option 'bogus' in the URL query string"),
        ("memory://?max_events=lots", "option 'max_events': cannot read 'lots'"),
        ("not a url", "a store URL looks like"),
    ],
)
def test_configuration_errors_are_one_line_without_traceback(url: str, message: str) -> None:
    code, _, err = run("check", url)
    assert code == 1
    assert err.startswith("socketio-delivery: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_unreachable_store_is_one_line_with_the_cause_and_no_password(scheme: Any) -> None:
    class Unreachable(MemoryEventStore):
        async def open(self) -> None:
            try:
                raise ConnectionRefusedError("connect to redis://app:s3cr3t@127.0.0.1:1 refused")
            except OSError as exc:
                raise StoreUnavailableError("cannot reach app:s3cr3t@127.0.0.1:1\nretry later") from exc

    scheme("unreachable", Unreachable)
    code, out, err = run("check", "unreachable://app:s3cr3t@127.0.0.1:1/0")
    assert code == 1
    assert "s3cr3t" not in out + err
    assert "unreachable://app:***@127.0.0.1:1/0" in out
    assert "open" in out
    assert "FAILED" in out
    assert err.startswith("socketio-delivery: error: StoreUnavailableError: cannot reach app:***@")
    assert "(ConnectionRefusedError: " in err
    assert err.count("\n") == 1


def test_unexpected_adapter_exception_is_one_line(scheme: Any) -> None:
    class Buggy(MemoryEventStore):
        async def persist(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyError("oops")

    scheme("buggy", Buggy)
    code, out, err = run("check", "buggy://")
    assert code == 1
    assert err == "socketio-delivery: error: KeyError: 'oops'\n"
    assert "close" in out  # the store is closed even when a step failed


def test_a_store_breaking_claim_once_fails_the_check(scheme: Any) -> None:
    class ClaimsTwice(MemoryEventStore):
        async def claim_session(self, key: str, *, lease: Any = None) -> Any:
            return {"probe": "x"}

    scheme("claimstwice", ClaimsTwice)
    code, _, err = run("check", "claimstwice://")
    assert code == 1
    assert err.startswith("FAILED: a leased claim_session returned")


def test_a_store_losing_events_fails_the_check(scheme: Any) -> None:
    class Forgets(MemoryEventStore):
        async def fetch_since(self, *args: Any, **kwargs: Any) -> Any:
            return []

    scheme("forgets", Forgets)
    code, out, err = run("check", "forgets://")
    assert code == 1
    assert "0 event(s) read back" in out
    assert "did not return the probe event" in err


def test_a_store_that_does_not_answer_times_out(scheme: Any) -> None:
    class Hangs(MemoryEventStore):
        async def open(self) -> None:
            await asyncio.sleep(3600)

    scheme("hangs", Hangs)
    code, _, err = run("check", "hangs://", "--timeout", "0.2")
    assert code == 1
    assert err == "FAILED: no answer within 0.2 s (--timeout)\n"


def test_check_writes_only_to_its_probe_stream(scheme: Any) -> None:
    seen: list[str] = []

    class Watched(MemoryEventStore):
        async def persist(self, stream: str, *args: Any, **kwargs: Any) -> Any:
            seen.append(stream)
            return await super().persist(stream, *args, **kwargs)

    scheme("watched", Watched)
    assert run("check", "watched://")[0] == 0
    assert seen == [CHECK_STREAM]


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("socketio-delivery 0.")
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "socketio-delivery"
    assert script.exists(), "the dev environment installs the console script"
    done = subprocess.run([str(script), "check", "memory://"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    done = subprocess.run([str(script), "check", "nosuch://"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("socketio-delivery: error: no store is installed")
    assert "Traceback" not in done.stderr


def test_check_a_sqlite_file_twice(tmp_path: Path) -> None:
    # the dev environment installs the SQLite adapter: no skip when it is missing
    url = f"sqlite:///{tmp_path}/events.db"
    for _ in range(2):  # the second run reads the probe stream the first one left
        code, out, err = run("check", url)
        assert (code, err) == (0, "")
        assert "durable" in out


def test_python_dash_m_works_like_the_console_script() -> None:
    module = [sys.executable, "-m", "socketio_delivery"]
    done = subprocess.run([*module, "check", "memory://"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    done = subprocess.run([*module, "stores"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "memory" in done.stdout
