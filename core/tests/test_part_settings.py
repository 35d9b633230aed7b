"""Unit tests of :mod:`socketio_delivery.settings`: every setting is checked once, by name."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from socketio_delivery.errors import ConfigurationError
from socketio_delivery.settings import Settings
from socketio_delivery.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

SECONDS = (
    "recovery_window",
    "session_lease",
    "poll_interval",
    "idempotency_ttl",
    "connect_timeout",
    "delivery_timeout",
)
COUNTS = ("max_event_bytes", "max_result_bytes", "page_size")


def test_defaults_are_valid_and_documented_values() -> None:
    settings = Settings()
    assert settings.recovery_window == 120.0
    assert settings.page_size == DEFAULT_PAGE_SIZE
    assert settings.idempotency_key == "idempotencyKey"
    assert settings.rerun_connect is True


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("value", [0, -1, -0.5, True, "5", None, float("nan")])
def test_settings_refuse_bad_values_with_the_name(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} must be a positive number of seconds"):
        Settings(**{name: value})


@pytest.mark.parametrize("name", SECONDS)
def test_seconds_take_ints_and_small_floats(name: str) -> None:
    whole: dict[str, Any] = {name: 3}
    small: dict[str, Any] = {name: 0.001}
    assert getattr(Settings(**whole), name) == 3
    assert getattr(Settings(**small), name) == 0.001


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", [0, -3, 1.5, True, "10", None])
def test_counts_refuse_anything_but_a_positive_int(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} must be a positive int"):
        Settings(**{name: value})


def test_page_size_has_an_upper_bound() -> None:
    assert Settings(page_size=MAX_PAGE_SIZE).page_size == MAX_PAGE_SIZE
    with pytest.raises(ConfigurationError, match=f"page_size must be an int from 1 to {MAX_PAGE_SIZE}"):
        Settings(page_size=MAX_PAGE_SIZE + 1)


def test_idempotency_key_is_a_string_or_none() -> None:
    assert Settings(idempotency_key=None).idempotency_key is None
    assert Settings(idempotency_key="k").idempotency_key == "k"
    with pytest.raises(ConfigurationError, match="idempotency_key must be a string or None"):
        Settings(idempotency_key=5)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().page_size = 3  # type: ignore[misc]
