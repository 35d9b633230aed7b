"""``Delivery(sio, store=...)`` chooses its store from a config mapping or the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import socketio
from socketio_delivery import ConfigurationError, Delivery
from socketio_delivery.memory import MemoryEventStore, MemoryOptions


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCKETIO_DELIVERY_STORE_URL", raising=False)


def server() -> socketio.AsyncServer:
    return socketio.AsyncServer(async_mode="asgi")


async def test_a_config_mapping_gives_a_store_with_its_options() -> None:
    delivery = Delivery(server(), {"url": "memory://", "options": {"max_events": 3}})
    try:
        await delivery.open()
        assert type(delivery.store) is MemoryEventStore
        assert delivery.store.options == MemoryOptions(max_events=3)
    finally:
        await delivery.close()


async def test_no_store_given_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETIO_DELIVERY_STORE_URL", "memory://")
    delivery = Delivery(server())
    try:
        await delivery.open()
        assert type(delivery.store) is MemoryEventStore
    finally:
        await delivery.close()


def test_an_unknown_option_in_the_config_names_the_valid_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown option 'nope'.*valid options: max_age, max_bytes, max_events"
    ):
        Delivery(server(), {"url": "memory://", "options": {"nope": 1}})


async def test_no_store_and_no_environment_means_sqlite_events_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    delivery = Delivery(server())
    try:
        await delivery.open()
        assert type(delivery.store).__name__ == "SQLiteEventStore"
    finally:
        await delivery.close()
    assert (tmp_path / "events.db").exists()
