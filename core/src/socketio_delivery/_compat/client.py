"""The client side of :mod:`socketio_delivery._compat`: the Python client's hooks into python-socketio.

:class:`socketio.AsyncClient` has no public hook for what the delivery client needs:

- the CONNECT reply carries the session ``pid`` next to the ``sid``, and the client drops it;
- the CONNECT packet carries the same ``auth`` for every namespace, while each namespace has its
  own ``pid`` and offset;
- events arrive with the offset as the last argument, before the handlers are looked up;
- disconnects and the end of the reconnection loop are reported only to the (single) ``disconnect``
  handler the application registers;
- a transport that closes while :meth:`socketio.AsyncClient.connect` waits for the CONNECT replies
  is not noticed: ``connect()`` waits its whole ``wait_timeout`` when the replies never came, and,
  when they came just before the close, marks the dead connection connected while the reconnection
  loop, still running, starts no new attempt (a client that says "connected" and never reconnects);
- a reconnection loop that gave up stays recorded, so no later drop starts a new one.

:class:`HookedAsyncClient` overrides exactly five private methods and turns them into small
methods of its own (``_delivery_*``) that :class:`~socketio_delivery.client.DeliveryClient`
implements. :func:`check_socketio_compatibility` runs at import time and fails loudly when an
upgrade of python-socketio renamed or reshaped any of them; ``core/tests/test_client_internals.py``
runs it too, so an upgrade breaks the test run, not the first reconnect in production. Every new
client runs :func:`~socketio_delivery._compat.check_version` (the one supported range).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import socketio  # type: ignore[import-untyped,unused-ignore]
from socketio import packet as _packet  # type: ignore[import-untyped,unused-ignore]

from . import check_version, supported_range

__all__ = ["HOOKED_METHODS", "HookedAsyncClient", "SocketIOIncompatibleError", "check_socketio_compatibility"]

#: The private methods of :class:`socketio.AsyncClient` we override, with the parameters we rely on.
HOOKED_METHODS: dict[str, tuple[str, ...]] = {
    "_send_packet": ("self", "pkt"),
    "_handle_connect": ("self", "namespace", "data"),
    "_handle_event": ("self", "namespace", "id", "data"),
    "_trigger_event": ("self", "event", "namespace", "args"),
    "_handle_eio_disconnect": ("self", "reason"),
}

#: Attributes of the client and of its packet class the hooks read.
_PACKET_CONSTANTS = ("CONNECT",)

#: Instance attributes of :class:`socketio.AsyncClient` the hooks read or write, checked on every
#: new client: ``connect()`` waits on ``_connect_event`` until every namespace is in
#: ``namespaces`` or ``failed_namespaces``, then sets ``connected``.
CLIENT_ATTRIBUTES = (
    "connected",
    "namespaces",
    "failed_namespaces",
    "connection_namespaces",
    "reconnection",
    "_connect_event",
    "_reconnect_task",
    "eio",
)


class SocketIOIncompatibleError(ImportError):
    """The installed python-socketio does not have the private methods the client hooks into."""


def _signature_names(func: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


def check_socketio_compatibility(client_class: type[Any] | None = None) -> None:
    """Raise :class:`SocketIOIncompatibleError` if python-socketio changed under the hooks.

    Checks that every method in :data:`HOOKED_METHODS` exists on ``client_class`` (default:
    :class:`socketio.AsyncClient`), is a coroutine function and takes the parameters we pass.
    """
    cls = socketio.AsyncClient if client_class is None else client_class
    problems: list[str] = []
    for name, expected in HOOKED_METHODS.items():
        func = getattr(cls, name, None)
        if func is None:
            problems.append(f"{name} is missing")
            continue
        if not inspect.iscoroutinefunction(func):
            problems.append(f"{name} is no longer a coroutine function")
        found = _signature_names(func)
        if found != expected:
            problems.append(f"{name}{found} instead of {name}{expected}")
    for const in _PACKET_CONSTANTS:
        if not hasattr(_packet, const):
            problems.append(f"socketio.packet.{const} is missing")
    if problems:
        raise _incompatible("; ".join(problems))


def check_client_attributes(client: Any) -> None:
    """Raise :class:`SocketIOIncompatibleError` if ``client`` lacks one of :data:`CLIENT_ATTRIBUTES`.

    :class:`HookedAsyncClient` runs it on every new instance (they are set by ``__init__``)::

        check_client_attributes(socketio.AsyncClient())
    """
    missing = [name for name in CLIENT_ATTRIBUTES if not hasattr(client, name)]
    if missing:
        raise _incompatible("the client has no " + ", ".join(missing))


def _incompatible(what: str) -> SocketIOIncompatibleError:
    try:
        installed = version("python-socketio")
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        installed = "unknown"
    return SocketIOIncompatibleError(
        f"socketio_delivery.client does not support python-socketio {installed}: {what}. "
        f"Supported: {supported_range()}."
    )


check_socketio_compatibility()


class HookedAsyncClient(socketio.AsyncClient):  # type: ignore[misc,unused-ignore]
    """:class:`socketio.AsyncClient` with the five hooks the delivery client needs.

    Subclasses implement the ``_delivery_*`` methods; nothing else here should need to change
    when python-socketio changes.
    """

    # python-socketio's attributes the hooks use (see CLIENT_ATTRIBUTES)
    connected: bool
    namespaces: dict[str, Any]
    failed_namespaces: list[str]
    connection_namespaces: list[str] | None
    reconnection: bool
    _reconnect_task: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_version()
        super().__init__(*args, **kwargs)
        check_client_attributes(self)

    # ---- the hooks (python-socketio private API) -------------------------------------------

    async def _send_packet(self, pkt: Any) -> None:
        if pkt.packet_type == _packet.CONNECT:
            pkt.data = self._delivery_connect_auth(pkt.namespace or "/", pkt.data)
        await super()._send_packet(pkt)

    async def _handle_connect(self, namespace: str | None, data: Any) -> None:
        await self._delivery_connect_reply(namespace or "/", data)

    async def _handle_event(self, namespace: str | None, id: int | None, data: list[Any]) -> None:
        await self._delivery_event(namespace or "/", id, data)

    async def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        if event == "disconnect":
            self._delivery_namespace_down(namespace or "/", final=False, reason=args[0] if args else None)
        elif event == "__disconnect_final":
            self._delivery_namespace_down(namespace or "/", final=True)
        return await super()._trigger_event(event, namespace, *args)

    async def _handle_eio_disconnect(self, reason: Any) -> None:
        if self.connected or not self._delivery_connect_pending():
            await super()._handle_eio_disconnect(reason)
            return
        # The transport closed while connect() waits for the CONNECT replies. python-socketio would
        # wait on (up to wait_timeout), then mark this dead connection connected if the replies had
        # come. End the wait now, before any await: every namespace counts as failed, so connect()
        # raises ConnectionError and the reconnection loop makes its next attempt after its delay.
        answered = list(self.namespaces)
        self.namespaces = {}
        self.failed_namespaces.extend(
            n for n in self.connection_namespaces or [] if n not in self.failed_namespaces
        )
        if self._connect_event is not None:
            self._connect_event.set()
        self._delivery_transport_lost()
        # connect() raises: no reconnection loop of its own (one in progress goes on)
        reconnection = self.reconnection
        self.reconnection = False
        try:
            await super()._handle_eio_disconnect(reason)  # not connected: resets, awaits nothing
        finally:
            self.reconnection = reconnection
        for namespace in answered:  # their ``connect`` handlers ran: pair them with a ``disconnect``
            await self._trigger_event("disconnect", namespace, reason)

    # ---- calls back into python-socketio's own handling ------------------------------------

    async def _socketio_handle_connect(self, namespace: str, data: Any) -> None:
        """Let python-socketio record the namespace as connected and run the ``connect`` handler."""
        await super()._handle_connect(namespace, data)

    async def _socketio_handle_event(self, namespace: str, ack_id: int | None, data: list[Any]) -> None:
        """Let python-socketio run the event's handler (and send its ack when ``ack_id`` is set)."""
        await super()._handle_event(namespace, ack_id, data)

    def _socketio_forget_finished_reconnect(self) -> None:
        """Drop python-socketio's reconnection task once it ended (it gave up or was aborted).

        python-socketio keeps it set, and starts a new one on a later drop only when none is
        set: a client that gave up once would never reconnect again after a new ``connect()``.
        """
        task = self._reconnect_task
        if task is not None and task.done():
            self._reconnect_task = None

    def _socketio_transport_connected(self) -> bool:
        """Whether the Engine.IO transport is up."""
        return bool(self.eio.state == "connected")

    async def _socketio_drop_transport(self) -> bool:
        """Close the Engine.IO transport with no goodbye of any kind, as a network failure would.

        WebSocket: the TCP socket is shut down under aiohttp (no close frame). Long-polling: the
        client's own HTTP session is closed, so the pending request fails. python-engineio's read
        loop then sees the transport gone and python-socketio reconnects. ``False``: not
        connected, or long-polling over an ``http_session`` the application owns.
        """
        eio = self.eio
        if eio.state != "connected":
            return False
        if eio.current_transport == "websocket" and eio.ws is not None:
            sock = eio.ws.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
                return True
        if eio.http is not None and not eio.external_http:
            await eio.http.close()
            return True
        return False

    async def _socketio_undo_connect(self, reason: Any) -> None:
        """``connect()`` returned on a transport that is gone: not connected, handlers told."""
        answered = list(self.namespaces)
        self.namespaces = {}
        self.connected = False
        self._delivery_transport_lost()
        for namespace in answered:
            await self._trigger_event("disconnect", namespace, reason)

    # ---- implemented by DeliveryClient ------------------------------------------------------

    def _delivery_connect_pending(self) -> bool:
        """Whether a ``connect()`` (first or reconnect) is under way and waits for CONNECT replies."""
        return False

    def _delivery_transport_lost(self) -> None:
        """The transport closed while connecting: no CONNECT reply still to come counts."""

    def _delivery_connect_auth(self, namespace: str, auth: Any) -> Any:
        """Return the CONNECT payload to send for ``namespace`` (``auth`` is the app's auth)."""
        return auth

    async def _delivery_connect_reply(self, namespace: str, data: Any) -> None:
        """The server accepted the namespace; ``data`` is the CONNECT reply payload."""
        await self._socketio_handle_connect(namespace, data)

    async def _delivery_event(self, namespace: str, ack_id: int | None, data: list[Any]) -> None:
        """An EVENT packet (``data`` is ``[event, *args]``)."""
        await self._socketio_handle_event(namespace, ack_id, data)

    def _delivery_namespace_down(self, namespace: str, *, final: bool, reason: Any = None) -> None:
        """The namespace disconnected (``reason`` as python-socketio gives it to ``disconnect``
        handlers); ``final`` when no reconnection will follow."""
