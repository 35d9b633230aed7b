"""The private python-socketio API Delivery relies on: an upgrade that changes it must fail here, loudly."""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest
import socketio
from socketio.async_manager import AsyncManager
from socketio_delivery import ConfigurationError, Delivery
from socketio_delivery import _socketio_internals as internals


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_installed_python_socketio_is_in_the_supported_range() -> None:
    internals.check_version()  # raises outside the range
    assert metadata.version("python-socketio")


@pytest.mark.parametrize("version", ["5.17.0", "5.19.0", "6.0.0", "garbage"])
def test_versions_outside_the_tested_range_are_refused(version: str) -> None:
    with pytest.raises(ConfigurationError, match="python-socketio"):
        internals.check_version(version)


def test_private_methods_have_the_signatures_the_hooks_replace() -> None:
    server = socketio.AsyncServer
    assert _params(server._handle_connect) == ["self", "eio_sid", "namespace", "data"]
    assert _params(server._trigger_event) == ["self", "event", "namespace", "args"]
    assert _params(server._send_packet) == ["self", "eio_sid", "pkt"]
    assert _params(server._send_eio_packet) == ["self", "eio_sid", "eio_pkt"]
    assert socketio.AsyncServer(async_mode="asgi").always_connect is False
    assert _params(AsyncManager.emit)[:7] == [
        "self",
        "event",
        "data",
        "namespace",
        "room",
        "skip_sid",
        "callback",
    ]
    assert _params(AsyncManager.pre_connect) == ["self", "eio_sid", "namespace"]
    assert _params(AsyncManager.basic_enter_room) == ["self", "sid", "namespace", "room", "eio_sid"]
    assert _params(AsyncManager.basic_leave_room) == ["self", "sid", "namespace", "room"]


def test_forced_sid_is_used_once_by_generate_id() -> None:
    sio = socketio.AsyncServer(async_mode="asgi")
    Delivery(sio, store="memory://")
    internals.forced_sid.set("chosen")
    assert sio.eio.generate_id() == "chosen"
    assert sio.eio.generate_id() != "chosen"


def test_a_server_takes_one_delivery_and_needs_always_connect_off() -> None:
    sio = socketio.AsyncServer(async_mode="asgi")
    Delivery(sio, store="memory://")
    with pytest.raises(ConfigurationError, match="already attached"):
        Delivery(sio, store="memory://")
    with pytest.raises(ConfigurationError, match="always_connect"):
        Delivery(socketio.AsyncServer(async_mode="asgi", always_connect=True), store="memory://")


def test_serves_namespace_matches_the_server_rules() -> None:
    sio = socketio.AsyncServer(async_mode="asgi")
    sio.on("connect", lambda *a: None, namespace="/chat")
    assert internals.serves_namespace(sio, "/chat")
    assert not internals.serves_namespace(sio, "/other")
    assert internals.serves_namespace(socketio.AsyncServer(async_mode="asgi", namespaces="*"), "/any")


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="recovery_window"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="memory://", recovery_window=0)
    with pytest.raises(ConfigurationError, match="AsyncServer"):
        Delivery(socketio.Server(), store="memory://")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="page_size"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="memory://", page_size=0)
    with pytest.raises(ConfigurationError, match="nosuch"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="nosuch://")
