"""The python-socketio private API the client hooks into: an upgrade that changes it fails here.

The behaviour behind each hook is proven end to end in test_client.py (pid kept, offsets stripped,
missed events before the connect handler, queue woken on reconnect); this file proves that the
hooks are still wired to methods python-socketio calls, and that a mismatch is loud.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import socketio
from socketio_delivery import ConfigurationError
from socketio_delivery._compat import client as internals
from socketio_delivery._compat import supported_range
from socketio_delivery.client import DeliveryClient


def test_a_client_on_an_unsupported_python_socketio_fails_naming_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("socketio_delivery._compat.metadata.version", lambda name: "5.19.0")
    with pytest.raises(ConfigurationError, match=r"python-socketio 5\.19\.0.*python-socketio>=5\.16,<5\.19"):
        DeliveryClient(handle_sigint=False)


def test_installed_python_socketio_has_the_hooked_methods() -> None:
    internals.check_socketio_compatibility()  # also runs at import time


@pytest.mark.parametrize("name", sorted(internals.HOOKED_METHODS))
def test_every_hook_overrides_a_method_python_socketio_calls(name: str) -> None:
    original = getattr(socketio.AsyncClient, name)
    hooked = getattr(internals.HookedAsyncClient, name)
    assert hooked is not original
    assert tuple(inspect.signature(hooked).parameters) == internals.HOOKED_METHODS[name]
    # python-socketio still calls it (or registers it with Engine.IO) by that name from its own code
    source = inspect.getsource(socketio.async_client) + inspect.getsource(socketio.base_client)
    assert f"self.{name}(" in source or f"self.eio.on('disconnect', self.{name})" in source


def test_a_renamed_method_fails_loudly() -> None:
    class Renamed(socketio.AsyncClient):  # type: ignore[misc]
        _handle_event = None

    with pytest.raises(internals.SocketIOIncompatibleError, match=r"_handle_event is missing"):
        internals.check_socketio_compatibility(Renamed)


def test_a_reshaped_method_fails_loudly() -> None:
    class Reshaped(socketio.AsyncClient):  # type: ignore[misc]
        async def _handle_connect(self, namespace: str, data: Any, extra: Any) -> None:
            pass

        def _send_packet(self, pkt: Any) -> None:  # no longer a coroutine
            pass

    with pytest.raises(internals.SocketIOIncompatibleError) as info:
        internals.check_socketio_compatibility(Reshaped)
    message = str(info.value)
    assert "_handle_connect('self', 'namespace', 'data', 'extra')" in message
    assert "_send_packet is no longer a coroutine function" in message
    assert supported_range() in message


def test_delivery_client_is_a_python_socketio_client() -> None:
    client = DeliveryClient(handle_sigint=False, reconnection_delay=0.5)
    assert isinstance(client, socketio.AsyncClient)
    assert client.reconnection_delay == 0.5
    with pytest.raises(ValueError, match="mode"):
        DeliveryClient(mode="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ack_timeout"):
        DeliveryClient(ack_timeout=0)
    with pytest.raises(ValueError, match="retries"):
        DeliveryClient(retries=-1)


def test_the_attributes_the_hooks_use_exist_and_a_missing_one_fails_loudly() -> None:
    internals.check_client_attributes(socketio.AsyncClient(handle_sigint=False))

    class Renamed(socketio.AsyncClient):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(handle_sigint=False)
            del self._connect_event

    with pytest.raises(internals.SocketIOIncompatibleError, match=r"no _connect_event"):
        internals.check_client_attributes(Renamed())

    class Hooked(internals.HookedAsyncClient):
        def __init__(self) -> None:
            socketio.AsyncClient.__init__(self, handle_sigint=False)
            del self.failed_namespaces
            internals.check_client_attributes(self)

    with pytest.raises(internals.SocketIOIncompatibleError, match=r"no failed_namespaces"):
        Hooked()


def test_connect_still_waits_on_the_event_the_transport_hook_sets() -> None:
    """The transport hook ends connect()'s wait by counting the namespaces failed: that needs
    connect() to wait on ``_connect_event`` until namespaces + failed_namespaces cover them all."""
    source = inspect.getsource(socketio.AsyncClient.connect)
    assert "self._connect_event.wait()" in source
    assert "len(self.namespaces) + len(self.failed_namespaces)" in source
    assert "self.connected = True" in source
    handler = inspect.getsource(socketio.AsyncClient._handle_eio_disconnect)
    assert "if self.connected:" in handler
    assert "will_reconnect = self.reconnection and" in handler
