"""The README's first usage example runs as printed: on the SQLite store, in the working directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from socketio_delivery import Delivery
from socketio_delivery_sqlite import SQLiteEventStore

README = Path(__file__).resolve().parents[1] / "README.md"


def first_python_block() -> str:
    match = re.search(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    assert match is not None, "README.md has no ```python block"
    return match.group(1)


def test_the_first_example_is_about_ten_lines() -> None:
    code = [line for line in first_python_block().splitlines() if line.strip()]
    assert len(code) <= 12, code


async def lifespan_shutdown(app: Any) -> list[dict[str, Any]]:
    """Run the ASGI lifespan protocol (startup, then shutdown) as a server like uvicorn does."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


async def test_the_first_example_persists_emits_in_sqlite_and_closes_on_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOCKETIO_DELIVERY_STORE_URL", raising=False)
    example: dict[str, Any] = {"__name__": "readme_example"}  # not "__main__": nothing is served
    exec(compile(first_python_block(), str(README), "exec"), example)

    delivery = example["delivery"]
    assert isinstance(delivery, Delivery)
    assert type(delivery.store) is SQLiteEventStore
    assert delivery.store.database == "events.db"
    try:
        await delivery.open()
        await example["goal"]("some-sid", {"home": 1})  # its emit to a room: persisted
    finally:
        assert await lifespan_shutdown(example["app"]) == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]
        await delivery.close()  # a second close is harmless; it closes the store should shutdown not have

    store = SQLiteEventStore.from_url(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        await store.open()
        events = await store.fetch_since("/", None)
    finally:
        await store.close()
    assert len(events) == 1
    assert "score" in repr(events[0].data)
    assert events[0].rooms == ("match-42",)
