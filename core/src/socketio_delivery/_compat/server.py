"""The server side of :mod:`socketio_delivery._compat`: hooks on one ``AsyncServer`` and the
sends and checks :class:`~socketio_delivery.Delivery` makes outside python-socketio's API.

:func:`install` is the only patching there is, and it touches one server instance (nothing
global):

- **emits and rooms**: python-socketio's extension point is a manager subclass
  (``client_manager=``). The server already has its manager (any class: ``AsyncManager``,
  ``AsyncRedisManager``...), so :func:`install` switches that instance to a subclass of its own
  class (:func:`hooked_manager_class`) that routes ``emit`` to the hook and reports
  ``basic_enter_room``/``basic_leave_room`` (every way into and out of a room goes through
  them). On python-socketio < 5.18 the subclass also provides 5.18's two-step
  ``pre_connect``/``connect``.
- **no extension point**: ``AsyncServer._handle_connect`` (replaced), ``_handle_event``
  (reserved event names from clients are dropped there), ``_trigger_event`` (wrapped),
  ``save_session`` (reported) and Engine.IO's ``generate_id`` (uses :data:`forced_sid` once)
  are set on the instance.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from importlib import metadata
from typing import Any, NamedTuple

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from ..errors import ConfigurationError
from ..wire import RESERVED_EVENTS
from . import SUPPORTED, check_version, version_tuple

__all__ = [
    "HAS_PRE_CONNECT",
    "SUPPORTED",
    "ConnectHandler",
    "ConnectOutcome",
    "EmitHook",
    "Originals",
    "RoomHook",
    "SessionHook",
    "TriggerHook",
    "check_version",
    "disconnect_if_transport_closed",
    "drop_transport",
    "forced_sid",
    "hooked_manager_class",
    "install",
    "pre_connect",
    "local_emit",
    "run_connect_handler",
    "send_connect",
    "send_connect_error",
    "send_event",
    "serves_namespace",
    "transport_answers",
]

log = logging.getLogger("socketio_delivery")

#: python-socketio >= 5.18 registers a socket in two steps (``pre_connect``, then ``connect``
#: once the connect handler accepted it); before, ``connect(eio_sid, namespace)`` did both.
HAS_PRE_CONNECT = hasattr(AsyncManager, "pre_connect")
#: python-socketio >= 5.17 calls a connect handler without auth as ``(sid, environ, None)``
#: first; 5.16 tried the legacy ``(sid, environ)`` first.
_AUTH_NONE_FIRST = version_tuple(metadata.version("python-socketio"))[:2] >= (5, 17)

#: While set (inside one connect task), the next sid the server generates is this one.
forced_sid: contextvars.ContextVar[str | None] = contextvars.ContextVar("forced_sid", default=None)

#: ``(eio_sid, namespace, data) -> None``: replaces ``AsyncServer._handle_connect``.
ConnectHandler = Callable[[str, str, Any], Awaitable[None]]
#: ``(original_trigger, event, namespace, *args) -> result``: wraps ``AsyncServer._trigger_event``.
TriggerHook = Callable[..., Awaitable[Any]]
#: ``(event, data, namespace=, room=, skip_sid=, callback=, to=, **kwargs)``: replaces ``manager.emit``.
EmitHook = Callable[..., Awaitable[Any]]
#: ``(sid, namespace, room)``: called after a socket entered / left a room.
RoomHook = Callable[[str, str, Any], None]
#: ``(sid, namespace)``: called after ``sio.save_session`` stored a socket's session.
SessionHook = Callable[[str, str], None]


class Originals(NamedTuple):
    """python-socketio's own methods, bound, for the paths the hooks hand back to it."""

    emit: Callable[..., Awaitable[Any]]
    save_session: Callable[..., Awaitable[None]]


def install(
    sio: socketio.AsyncServer,
    on_connect: ConnectHandler,
    on_trigger: TriggerHook,
    *,
    on_emit: EmitHook | None = None,
    on_enter_room: RoomHook | None = None,
    on_leave_room: RoomHook | None = None,
    on_save_session: SessionHook | None = None,
) -> Originals:
    """Hook into one server; return python-socketio's own ``manager.emit`` and ``save_session``.

    CONNECT packets go to ``on_connect``; every handler call (events, connect, disconnect)
    goes through ``on_trigger``; ``sio.emit`` (through the manager) goes to ``on_emit``;
    room changes and session saves are reported after python-socketio made them. Inbound
    EVENT packets named ``connect``, ``disconnect``, ``connect_error``, ``delivery:resync``
    (or any name python-socketio reserves) are dropped and logged: no client can run the
    connect or disconnect path by naming an event so.
    """
    for name in ("_handle_connect", "_handle_event", "_trigger_event", "_send_packet", "packet_class"):
        if not hasattr(sio, name):
            raise ConfigurationError(f"python-socketio changed: AsyncServer.{name} is gone")
    if not hasattr(sio.eio, "generate_id"):
        raise ConfigurationError("python-socketio changed: engineio AsyncServer.generate_id is gone")
    if getattr(sio, "_socketio_delivery_installed", False):
        raise ConfigurationError("a Delivery is already attached to this server")
    sio._socketio_delivery_installed = True
    manager = sio.manager
    originals = Originals(emit=manager.emit, save_session=sio.save_session)
    manager._delivery_hooks = _ManagerHooks(on_emit, on_enter_room, on_leave_room)
    manager.__class__ = hooked_manager_class(type(manager))
    _hook_server(sio, on_connect, on_trigger, on_save_session, originals.save_session)
    return originals


def _hook_server(
    sio: socketio.AsyncServer,
    on_connect: ConnectHandler,
    on_trigger: TriggerHook,
    on_save_session: SessionHook | None,
    save_session: Callable[..., Awaitable[None]],
) -> None:
    original_trigger = sio._trigger_event
    original_handle_event = sio._handle_event
    reserved = RESERVED_EVENTS | frozenset(getattr(sio, "reserved_events", ()))
    dropped = _DropLog()

    async def trigger_event(event: str, namespace: str, *args: Any) -> Any:
        return await on_trigger(original_trigger, event, namespace, *args)

    async def handle_event(eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        name = data[0] if isinstance(data, list) and data else None
        if not isinstance(name, str) or name in reserved:
            dropped.record(sio, eio_sid, namespace or "/", name)
            return
        await original_handle_event(eio_sid, namespace, id, data)

    async def hooked_save_session(sid: str, session: Any, namespace: str | None = None) -> None:
        await save_session(sid, session, namespace)
        if on_save_session is not None:
            on_save_session(sid, namespace or "/")

    sio._handle_connect = on_connect
    sio._handle_event = handle_event
    sio._trigger_event = trigger_event
    sio.save_session = hooked_save_session
    generate = sio.eio.generate_id

    def generate_id() -> str:
        sid = forced_sid.get()
        if sid is not None:
            forced_sid.set(None)
            return sid
        return str(generate())

    sio.eio.generate_id = generate_id
    _answer_undecodable_connects(sio)


def _answer_undecodable_connects(sio: socketio.AsyncServer) -> None:
    """A CONNECT packet the decoder refuses (not JSON) gets a CONNECT_ERROR, not silence.

    python-socketio decodes each Engine.IO message in ``_handle_eio_message`` (registered as
    Engine.IO's ``message`` handler) and only logs a packet it cannot decode, so a client
    whose CONNECT is malformed would wait for an answer that never comes.
    """
    original = sio.eio.handlers["message"]

    async def handle_eio_message(eio_sid: str, data: Any) -> Any:
        try:
            return await original(eio_sid, data)
        except (ValueError, TypeError, RecursionError):
            if not isinstance(data, str) or data[:1] != str(sio_packet.CONNECT):
                raise
        namespace = data[1 : data.find(",")] if data[1:2] == "/" and "," in data else "/"
        log.warning("refused a CONNECT packet that could not be decoded")
        await send_connect_error(sio, eio_sid, namespace, {"message": "malformed CONNECT packet"})

    sio.eio.handlers["message"] = handle_eio_message


class _DropLog:
    """Logs a dropped inbound event once per (connection, name), and at most ``burst`` lines per
    ``interval`` seconds in all (the rest are counted and reported with the next line)."""

    def __init__(self, interval: float = 10.0, burst: int = 10, remember: int = 4096) -> None:
        self.interval, self.burst, self.remember = interval, burst, remember
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.unreported = 0
        self.seen: set[tuple[str, str, Any]] = set()

    def record(self, sio: socketio.AsyncServer, eio_sid: str, namespace: str, name: Any) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.burst / self.interval)
        self.stamp = now
        key = (eio_sid, namespace, name if isinstance(name, str) else None)
        if key in self.seen or self.tokens < 1:
            self.unreported += 1
            return
        if len(self.seen) >= self.remember:
            self.seen.clear()
        self.seen.add(key)
        self.tokens -= 1
        sid = sio.manager.sid_from_eio_sid(eio_sid, namespace)
        more = f" ({self.unreported} more dropped since the last report)" if self.unreported else ""
        self.unreported = 0
        what = f"event named {name!r} (a reserved name)" if isinstance(name, str) else "event without a name"
        log.warning("dropped an %s from client %s on %s%s", what, sid or eio_sid, namespace, more)


class _ManagerHooks(NamedTuple):
    emit: EmitHook | None
    enter_room: RoomHook | None
    leave_room: RoomHook | None


class _HookedManager:
    """Mixed into the server's manager class by :func:`hooked_manager_class`."""

    _delivery_hooks: _ManagerHooks

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> Any:
        hook = self._delivery_hooks.emit
        send = super().emit if hook is None else hook  # type: ignore[misc]
        return await send(
            event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
        )

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> Any:
        result = super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        if self._delivery_hooks.enter_room is not None:
            self._delivery_hooks.enter_room(sid, namespace, room)
        return result

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> Any:
        result = super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        if self._delivery_hooks.leave_room is not None:
            self._delivery_hooks.leave_room(sid, namespace, room)
        return result


class _TwoStepConnect:
    """python-socketio < 5.18: 5.18's ``pre_connect`` + ``connect`` over the one-step ``connect``.

    ``pre_connect(eio_sid, namespace)`` registers the socket (as connected: older releases
    have no pending state) and returns its sid; ``connect(sid, namespace)`` then has nothing
    left to do, and returns ``None`` when the socket went away meanwhile.
    """

    async def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        sid: str | None = await super().connect(eio_sid, namespace)  # type: ignore[misc]
        return sid

    async def connect(self, sid: str, namespace: str) -> str | None:
        eio_sid_from_sid: Callable[[str, str], Any] = self.eio_sid_from_sid  # type: ignore[attr-defined]
        return sid if eio_sid_from_sid(sid, namespace) is not None else None


_HOOKED_CLASSES: dict[type[Any], type[Any]] = {}


def hooked_manager_class(base: type[Any]) -> type[Any]:
    """The subclass of manager class ``base`` that :func:`install` switches a manager to (cached)."""
    hooked = _HOOKED_CLASSES.get(base)
    if hooked is None:
        mixins: tuple[type[Any], ...] = (_HookedManager,)
        if not HAS_PRE_CONNECT:
            mixins += (_TwoStepConnect,)
        hooked = _HOOKED_CLASSES[base] = type(f"Delivery{base.__name__}", (*mixins, base), {})
    return hooked


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
        success = await _trigger_connect(sio, namespace, sid, environ, auth)
    except socketio.exceptions.ConnectionRefusedError as exc:
        return ConnectOutcome(False, exc.error_args)
    except ConnectionRefusedError:
        return ConnectOutcome(False, {"message": "Connection refused by server"})
    if success is False:
        return ConnectOutcome(False, fail_reason)
    return ConnectOutcome(True)


async def _trigger_connect(
    sio: socketio.AsyncServer, namespace: str, sid: str, environ: Any, auth: Any
) -> Any:
    """The handler with ``auth``; without, in the order the installed release tries the two
    signatures (5.17+: ``(sid, environ, None)`` first and its error if both fail; 5.16: the
    legacy ``(sid, environ)`` first and the second error)."""
    if auth:
        return await sio._trigger_event("connect", namespace, sid, environ, auth)
    first, second = ((environ, None), (environ,)) if _AUTH_NONE_FIRST else ((environ,), (environ, None))
    try:
        return await sio._trigger_event("connect", namespace, sid, *first)
    except TypeError as exc:
        try:
            return await sio._trigger_event("connect", namespace, sid, *second)
        except TypeError:
            if _AUTH_NONE_FIRST:
                raise exc from None
            raise


async def send_connect(sio: socketio.AsyncServer, eio_sid: str, namespace: str, data: dict[str, Any]) -> None:
    """Send the CONNECT reply (``{"sid": ..., "pid": ...}``) for ``namespace``."""
    await sio._send_packet(eio_sid, sio.packet_class(sio_packet.CONNECT, data, namespace=namespace))


async def send_connect_error(sio: socketio.AsyncServer, eio_sid: str, namespace: str, reason: Any) -> None:
    """Send a CONNECT_ERROR with ``reason`` (what the client's ``connect_error`` handler gets)."""
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
    encoded: str | None = None,
) -> list[str]:
    """Deliver to the clients connected to THIS process only (no message queue); the sids reached.

    ``encoded``: the packet already encoded (``[event, *args]`` as the server's packet class
    encodes it), so it is not encoded again.

    What ``AsyncManager.emit`` does for its local fan-out (encode once, send the same
    Engine.IO packet to each participant), without a task per recipient: sending queues
    the packet on the socket's unbounded queue, so awaiting each send in turn costs far
    less than creating and awaiting one task each.
    """
    manager = sio.manager
    if namespace not in manager.rooms:
        return []
    if encoded is None:
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
