"""Every use of python-socketio's private API, in one place.

python-socketio (5.18) has no public hook for what connection state
recovery needs: a ``pid`` in the CONNECT reply, reusing an old sid, sending missed
events before the CONNECT reply, and seeing each client event (for processed-once
handling) and each disconnect reason. This module installs those hooks on ONE server
instance (nothing is patched globally) and is the only module that touches names
starting with an underscore on python-socketio objects. ``tests`` prove every hook
(``core/tests/test_socketio_internals.py``), so an upgrade that breaks one fails loudly;
:func:`check_version` refuses versions outside the tested range at start-up.

Public extension points are used where they exist: the manager's ``emit``,
``pre_connect``, ``basic_enter_room``/``basic_leave_room``, and ``AsyncServer.save_session``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Collection
from importlib import metadata
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .errors import ConfigurationError

__all__ = [
    "SUPPORTED",
    "ConnectHandler",
    "ConnectOutcome",
    "TriggerHook",
    "check_version",
    "drop_transport",
    "forced_sid",
    "install",
    "local_emit",
    "pre_connect",
    "run_connect_handler",
    "send_connect",
    "send_connect_error",
    "send_event",
    "serves_namespace",
    "transport_answers",
]

#: The python-socketio releases this module was written and tested against.
SUPPORTED = ((5, 18), (5, 19))  # >= 5.18, < 5.19 (AsyncManager.pre_connect is new in 5.18)

#: While set (inside one connect task), the next sid the server generates is this one.
forced_sid: contextvars.ContextVar[str | None] = contextvars.ContextVar("forced_sid", default=None)

#: ``(eio_sid, namespace, data) -> None``: replaces ``AsyncServer._handle_connect``.
ConnectHandler = Callable[[str, str, Any], Awaitable[None]]
#: ``(original_trigger, event, namespace, *args) -> result``: wraps ``AsyncServer._trigger_event``.
TriggerHook = Callable[..., Awaitable[Any]]


def check_version(version: str | None = None) -> None:
    """Raise :class:`ConfigurationError` when python-socketio is outside :data:`SUPPORTED`."""
    text = version or metadata.version("python-socketio")
    try:
        found = tuple(int(part) for part in text.split(".")[:2])
    except ValueError as exc:
        raise ConfigurationError(f"cannot read the python-socketio version {text!r}") from exc
    low, high = SUPPORTED
    if not low <= found < high:
        raise ConfigurationError(
            f"python-socketio {text} is not supported by socketio-delivery "
            f"(supported: >={low[0]}.{low[1]},<{high[0]}.{high[1]}); its connection state "
            "recovery hooks use private methods that must be re-checked for this release"
        )


def install(sio: socketio.AsyncServer, on_connect: ConnectHandler, on_trigger: TriggerHook) -> None:
    """Route ``sio``'s CONNECT packets to ``on_connect`` and its handler calls through ``on_trigger``."""
    for name in ("_handle_connect", "_trigger_event", "_send_packet", "packet_class"):
        if not hasattr(sio, name):
            raise ConfigurationError(f"python-socketio changed: AsyncServer.{name} is gone")
    if not hasattr(sio.eio, "generate_id"):
        raise ConfigurationError("python-socketio changed: engineio AsyncServer.generate_id is gone")
    if getattr(sio, "_socketio_delivery_installed", False):
        raise ConfigurationError("a Delivery is already attached to this server")
    sio._socketio_delivery_installed = True

    original_trigger = sio._trigger_event

    async def trigger_event(event: str, namespace: str, *args: Any) -> Any:
        return await on_trigger(original_trigger, event, namespace, *args)

    sio._handle_connect = on_connect
    sio._trigger_event = trigger_event

    generate = sio.eio.generate_id

    def generate_id() -> str:
        sid = forced_sid.get()
        if sid is not None:
            forced_sid.set(None)
            return sid
        return str(generate())

    sio.eio.generate_id = generate_id


async def pre_connect(sio: socketio.AsyncServer, eio_sid: str, namespace: str, sid: str) -> str | None:
    """Register a connecting socket under ``sid`` (``manager.pre_connect`` generates the sid).

    Returns the sid, or ``None`` when the manager refused it.
    """
    forced_sid.set(sid)
    try:
        registered: str | None = await sio.manager.pre_connect(eio_sid, namespace)
    finally:
        forced_sid.set(None)
    return registered


def serves_namespace(sio: socketio.AsyncServer, namespace: str) -> bool:
    """Whether ``sio`` accepts connections to ``namespace`` (as ``_handle_connect`` decides)."""
    return bool(
        namespace in sio.handlers
        or namespace in sio.namespace_handlers
        or sio.namespaces == "*"
        or namespace in (sio.namespaces or ())
    )


class ConnectOutcome:
    """The connect handler's verdict: ``accepted``, or refused with ``reason`` (the CONNECT_ERROR data)."""

    __slots__ = ("accepted", "reason")

    def __init__(self, accepted: bool, reason: Any = None) -> None:
        self.accepted = accepted
        self.reason = reason


async def run_connect_handler(
    sio: socketio.AsyncServer, eio_sid: str, sid: str, namespace: str, auth: Any
) -> ConnectOutcome:
    """Run the app's connect handler exactly as ``AsyncServer._handle_connect`` does."""
    environ = sio.environ.get(eio_sid, {})
    fail_reason = socketio.exceptions.ConnectionRefusedError().error_args
    try:
        if auth:
            success = await sio._trigger_event("connect", namespace, sid, environ, auth)
        else:
            try:
                success = await sio._trigger_event("connect", namespace, sid, environ, None)
            except TypeError as exc:
                try:
                    success = await sio._trigger_event("connect", namespace, sid, environ)
                except TypeError:
                    raise exc from None
    except socketio.exceptions.ConnectionRefusedError as exc:
        return ConnectOutcome(False, exc.error_args)
    except ConnectionRefusedError:
        return ConnectOutcome(False, {"message": "Connection refused by server"})
    if success is False:
        return ConnectOutcome(False, fail_reason)
    return ConnectOutcome(True)


async def send_connect(sio: socketio.AsyncServer, eio_sid: str, namespace: str, data: dict[str, Any]) -> None:
    await sio._send_packet(eio_sid, sio.packet_class(sio_packet.CONNECT, data, namespace=namespace))


async def send_connect_error(sio: socketio.AsyncServer, eio_sid: str, namespace: str, reason: Any) -> None:
    await sio._send_packet(
        eio_sid, sio.packet_class(sio_packet.CONNECT_ERROR, data=reason, namespace=namespace)
    )


async def send_event(sio: socketio.AsyncServer, eio_sid: str, namespace: str, args: list[Any]) -> None:
    """Send one EVENT packet (``args[0]`` is the event name) to one Engine.IO session."""
    await sio._send_packet(eio_sid, sio.packet_class(sio_packet.EVENT, namespace=namespace, data=args))


async def local_emit(
    sio: socketio.AsyncServer,
    event: str,
    args: list[Any],
    namespace: str,
    room: str | list[str] | None,
    skip_sid: Collection[str],
) -> list[str]:
    """Deliver to the clients connected to THIS process only (no message queue); the sids reached.

    What ``AsyncManager.emit`` does for its local fan-out (encode once, send the same
    Engine.IO packet to each participant), without a task per recipient: sending queues
    the packet on the socket's unbounded queue, so awaiting each send in turn costs far
    less than creating and awaiting one task each.
    """
    manager = sio.manager
    if namespace not in manager.rooms:
        return []
    encoded = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
    packets = [
        eio_packet.Packet(eio_packet.MESSAGE, p)
        for p in (encoded if isinstance(encoded, list) else [encoded])
    ]
    reached = [
        (sid, eio_sid) for sid, eio_sid in manager.get_participants(namespace, room) if sid not in skip_sid
    ]
    for _, eio_sid in reached:
        for pkt in packets:
            await sio._send_eio_packet(eio_sid, pkt)
    return [sid for sid, _ in reached]


async def disconnect_if_transport_closed(sio: socketio.AsyncServer, eio_sid: str, namespace: str) -> bool:
    """Disconnect a just-connected socket whose transport closed while its connect was pending.

    python-socketio ignores an Engine.IO disconnect of a socket that is still connecting (its
    ``_handle_disconnect`` returns for it), which would leave the socket registered, and its
    session locked as connected, until the server restarts. Call right after
    ``manager.connect``; returns whether it disconnected it.
    """
    eio_socket = sio.eio.sockets.get(eio_sid)
    if eio_socket is not None and not eio_socket.closing and not eio_socket.closed:
        return False
    await sio._handle_disconnect(eio_sid, namespace, sio.reason.TRANSPORT_CLOSE)
    return True


async def transport_answers(sio: socketio.AsyncServer, eio_sid: str, timeout: float) -> bool:
    """Whether an Engine.IO connection answers a PING with a PONG within ``timeout`` seconds.

    The check Engine.IO's own heartbeat makes every ``ping_interval``, made now: a
    half-open connection (the peer is gone, the server was not told) does not answer.
    Watches this one socket's ``receive`` for the PONG (the ping schedule is unchanged);
    concurrent calls for one socket share one ping.
    """
    try:
        eio_socket = sio.eio._get_socket(eio_sid)
    except KeyError:
        return False
    if eio_socket.closing or eio_socket.closed:
        return False
    ping: asyncio.Future[bool] | None = getattr(eio_socket, "_delivery_ping", None)
    if ping is None:
        ping = eio_socket._delivery_ping = asyncio.ensure_future(_ping(eio_socket, timeout))
    return await asyncio.shield(ping)


async def _ping(eio_socket: Any, timeout: float) -> bool:
    answered = asyncio.Event()
    receive = eio_socket.receive

    async def watch(pkt: Any) -> None:
        if pkt.packet_type == eio_packet.PONG:
            answered.set()
        await receive(pkt)

    eio_socket.receive = watch
    try:
        await eio_socket.send(eio_packet.Packet(eio_packet.PING))
        await asyncio.wait_for(answered.wait(), timeout)
        return True
    except (asyncio.TimeoutError, OSError):
        return False
    finally:
        del eio_socket.receive  # back to the class's method
        del eio_socket._delivery_ping


async def drop_transport(sio: socketio.AsyncServer, eio_sid: str) -> bool:
    """Close an Engine.IO connection without a goodbye, so the client reconnects by itself.

    An Engine.IO CLOSE packet would make the Python client give up, and a Socket.IO
    CONNECT_ERROR the JS client: a bare transport close makes both retry with back-off.
    """
    try:
        eio_socket = sio.eio._get_socket(eio_sid)
    except KeyError:
        return False
    if not eio_socket.upgraded:
        await eio_socket.close(wait=False, abort=True, reason=sio.eio.reason.TRANSPORT_CLOSE)
    # WebSocket: the writer ends and closes it. Long-polling: the pending GET is answered at
    # once and the next one is refused (otherwise the client would notice only when the GET
    # times out, after ping_interval + ping_timeout).
    eio_socket.queue.put_nowait(None)
    return True
