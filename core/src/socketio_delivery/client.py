"""A Python Socket.IO client with delivery guarantees: :class:`DeliveryClient`.

A drop-in :class:`socketio.AsyncClient` (same constructor options, ``on``/``event`` handlers,
``connect``, ``wait``, ``call``...) that gets the guarantees without application code:

- **Recovery** (Socket.IO connection state recovery, as the JS client >= 4.6 speaks it): it keeps
  the session ``pid`` from each CONNECT reply and the offset of the last event received, and sends
  ``{"pid": ..., "offset": ..., **auth}`` when it reconnects, so the server (a
  :class:`socketio_delivery.Delivery` server, or Node with ``connectionStateRecovery``) restores
  the same sid, rooms and data and sends the missed events.
- **Offsets are stripped**: the server appends the offset as the last argument of every event it
  stores; your handlers never see it, so ``def score(data):`` keeps working.
- **Reliable emits**: :meth:`DeliveryClient.emit` queues the event (in order, one in flight),
  waits for the ack, resends on ack timeout or after a reconnect, adds an idempotency key to a dict
  payload so the server runs the handler once, and returns the ack.

The per-namespace rules (pid, offset, what a reconnect sends) are the pure state object
:class:`~socketio_delivery.client_state.NamespaceState`; the outgoing queue is
:mod:`._client_outbox`; this module wires both to python-socketio.

Example::

    import asyncio
    from socketio_delivery.client import RESYNC_EVENT, DeliveryClient

    client = DeliveryClient(ack_timeout=5.0, retries=3)

    @client.event
    async def score(data):  # no offset argument
        print("score", data)

    @client.on(RESYNC_EVENT)
    async def resync(info):  # the server could not recover the session: reload state
        print("resync because", info["reason"])

    async def main():
        await client.connect("http://localhost:8000", auth={"token": "t"})
        print(await client.emit("order", {"item": 7}))  # the ack, once processed
        await client.wait()

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from socketio import exceptions as _sio_exceptions  # type: ignore[import-untyped,unused-ignore]

from ._client_outbox import ClientClosedError, EmitError, EmitTimeoutError, Outbox, with_idempotency_key
from ._compat.client import HookedAsyncClient
from .client_state import Incoming, Mode, NamespaceState, Offset
from .wire import RESYNC_EVENT

__all__ = [
    "RESYNC_EVENT",
    "ClientClosedError",
    "DeliveryClient",
    "EmitError",
    "EmitTimeoutError",
    "Offset",
]

logger = logging.getLogger("socketio_delivery.client")

_CLIENT_DISCONNECT = "client disconnect"


@dataclass(eq=False)
class _Namespace:
    """One namespace: its rules (:class:`NamespaceState`) and its outgoing queue."""

    state: NamespaceState
    outbox: Outbox

    @property
    def pid(self) -> str | None:
        """The session id of the last CONNECT reply (read by the multi-node tests)."""
        return self.state.pid


class _StateWiring(HookedAsyncClient):
    """The python-socketio side of :class:`DeliveryClient`: one :class:`NamespaceState` and one
    :class:`Outbox` per namespace, driven by the hooks of :class:`HookedAsyncClient`.

    Each hook tells the namespace's state what happened on the wire and does what it answers:
    send this CONNECT payload, hand this event to the handlers (now, or after the reply), wake
    or stop the outgoing queue.
    """

    def __init__(self, mode: Mode, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode: Mode = mode
        self._namespaces: dict[str, _Namespace] = {}
        self._active = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._connect_pending = False  # a connect() (first or reconnect) waits for its CONNECT replies
        self._transport_lost = False  # ... and its transport closed meanwhile

    def _state(self, namespace: str | None) -> NamespaceState | None:
        ns = self._namespaces.get(namespace or "/")
        return None if ns is None else ns.state

    # ---- namespaces -----------------------------------------------------------------------------

    def _ns(self, namespace: str) -> _Namespace:
        ns = self._namespaces.get(namespace)
        if ns is None:
            outbox = Outbox(namespace, self._make_sender(namespace))
            ns = self._namespaces[namespace] = _Namespace(NamespaceState(self.mode), outbox)
        return ns

    def _make_sender(self, namespace: str) -> Any:
        async def send(event: str, data: Any, on_ack: Any) -> None:
            await HookedAsyncClient.emit(self, event, data, namespace=namespace, callback=on_ack)

        return send

    def _close_all(self, reason: str) -> None:
        self._active = False
        for ns in self._namespaces.values():
            ns.state.went_down(final=True)
            ns.outbox.close(reason)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch_logged(self, namespace: str, incoming: Incoming) -> None:
        try:
            await self._socketio_handle_event(namespace, *incoming)
        except Exception:
            event = incoming.data[0] if incoming.data else None
            logger.exception("handler of event %r on %s failed", event, namespace)

    # ---- hooks called by HookedAsyncClient -------------------------------------------------------

    def _delivery_connect_auth(self, namespace: str, auth: Any) -> Any:
        ns = self._ns(namespace)
        ns.outbox.down()
        if auth is not None and not isinstance(auth, Mapping):
            logger.warning(
                "auth is a %s, not a dict: connecting to %s without recovery", type(auth), namespace
            )
        return ns.state.connect_sent(auth)

    def _delivery_connect_pending(self) -> bool:
        return self._connect_pending

    def _delivery_transport_lost(self) -> None:
        self._transport_lost = True
        for ns in self._namespaces.values():
            if ns.state.phase != "down":
                ns.state.went_down()
                ns.outbox.down()

    async def _delivery_connect_reply(self, namespace: str, data: Any) -> None:
        if self._transport_lost:  # it answers a connection that closed while connecting: ignore it
            return
        ns = self._ns(namespace)
        if not ns.state.connect_replied(data):  # a duplicate reply: python-socketio ignores it
            await self._socketio_handle_connect(namespace, data)
            return
        # Like the JS client: the events the server sent before its CONNECT reply (the missed
        # events of a recovery) are handled first, in order, then the connect handler runs.
        # As python-socketio does for live events, each handler runs in its own task: they start
        # in arrival order and a handler that awaits blocks nobody. Events arriving meanwhile are
        # held by the state and keep their place.
        epoch = ns.state.epoch
        while (incoming := ns.state.flush_next()) is not None:
            self._spawn(self._dispatch_logged(namespace, incoming))
            await asyncio.sleep(0)  # the task starts (its handler runs up to its first await) now
            if ns.state.epoch != epoch:  # disconnected meanwhile
                return
        ns.outbox.up()
        await self._socketio_handle_connect(namespace, data)
        if ns.state.epoch == epoch:
            ns.outbox.up()  # the namespace is registered by now: wake the queue again

    async def _delivery_event(self, namespace: str, ack_id: int | None, data: list[Any]) -> None:
        incoming = self._ns(namespace).state.event_arrived(ack_id, data)
        if incoming is not None:
            await self._socketio_handle_event(namespace, *incoming)

    def _delivery_namespace_down(self, namespace: str, *, final: bool, reason: Any = None) -> None:
        ns = self._namespaces.get(namespace)
        if ns is None:
            return
        # an explicit disconnect ends the session (the server drops it too)
        explicit = reason == getattr(self.reason, "CLIENT_DISCONNECT", _CLIENT_DISCONNECT)
        ns.state.went_down(explicit=explicit, final=final)
        ns.outbox.down()
        if final:
            ns.outbox.close("the client disconnected")
            if all(n.state.closed for n in self._namespaces.values()):
                self._active = False


class DeliveryClient(_StateWiring):
    """:class:`socketio.AsyncClient` that recovers its session and emits reliably.

    :param mode: ``"recovery"`` (default): connection state recovery with the ``pid`` and offset,
        for a :class:`socketio_delivery.Delivery` server or a Node server with
        ``connectionStateRecovery``. ``"recipe"``: the explicit recipe, for servers without
        recovery: the client remembers the ``id`` of every ``{"id": ..., "data": ...}`` event
        (and, when the server appends offsets, the offset of every event) and sends it as
        ``auth["offset"]`` on every connect; seed it with :meth:`set_offset`.
    :param ack_timeout: seconds :meth:`emit` waits for an ack before sending again.
    :param retries: how many times :meth:`emit` resends an event (so ``1 + retries`` attempts).
    :param idempotency_key: the field :meth:`emit` adds to a dict first argument, with a fresh
        random value per emit (kept across retries), unless the dict already has it. Must match
        the server's ``Delivery(idempotency_key=...)``. ``None`` adds no key.
    :param connect_timeout: seconds to wait for a CONNECT reply, on reconnects always and on
        :meth:`connect` when no ``wait_timeout`` is given (python-socketio's 1 s is too short for
        a reply that comes after a long replay).
    :param kwargs: everything :class:`socketio.AsyncClient` accepts (``reconnection_delay``...).

    Example::

        client = DeliveryClient(reconnection_delay=0.5, ack_timeout=5.0, retries=5)

        @client.on("chat")
        def chat(message):  # the offset is stripped
            print(message)

        await client.connect("http://localhost:8000", auth={"token": "secret"})
        ack = await client.emit("send", {"text": "hi"})  # {"text": ..., "idempotencyKey": "..."}
    """

    def __init__(
        self,
        *,
        mode: Mode = "recovery",
        ack_timeout: float = 10.0,
        retries: int = 3,
        idempotency_key: str | None = "idempotencyKey",
        connect_timeout: float = 20.0,
        **kwargs: Any,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be > 0")
        if mode not in ("recovery", "recipe"):
            raise ValueError(f"mode must be 'recovery' or 'recipe', not {mode!r}")
        if ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        super().__init__(mode, **kwargs)
        self.ack_timeout = float(ack_timeout)
        self.retries = int(retries)
        self.idempotency_key = idempotency_key
        self.connect_timeout = float(connect_timeout)

    # ---- public state -----------------------------------------------------------------------

    @property
    def recovered(self) -> bool:
        """True when the last connect of the default namespace restored the previous session."""
        return self.is_recovered("/")

    @property
    def offset(self) -> Offset | None:
        """The last offset seen on the default namespace (what the next reconnect sends)."""
        return self.get_offset("/")

    def is_recovered(self, namespace: str | None = None) -> bool:
        """True when the last CONNECT reply of ``namespace`` carried the ``pid`` we sent: same
        sid, rooms and server-side data, and the missed events ran before the ``connect`` handler."""
        state = self._state(namespace)
        return state is not None and state.recovered

    def recovery_failed(self, namespace: str | None = None) -> str | None:
        """Why the last connect did not recover although it asked to; ``None`` when it recovered
        or did not ask (a first connect). Events may have been missed: resynchronise.

        The reason is ``"new session"`` until a :data:`RESYNC_EVENT` (from a Delivery server,
        right after the CONNECT reply) gives the server's own reason, as the server's
        ``Delivery.recovery_failed(sid)`` does. It used to return a ``bool``: test it for truth
        (``if client.recovery_failed():``) or against ``None`` (docs/client.md, migration).
        """
        state = self._state(namespace)
        return None if state is None else state.recovery_failed

    def resync_reason(self, namespace: str | None = None) -> str | None:
        """The reason of the :data:`RESYNC_EVENT` received on the current connection, if any."""
        state = self._state(namespace)
        return None if state is None else state.resync_reason

    def get_offset(self, namespace: str | None = None) -> Offset | None:
        """The last offset (or, in recipe mode, the last event ``id``) seen on ``namespace``."""
        state = self._state(namespace)
        return None if state is None else state.offset

    def set_offset(self, offset: Offset | None, namespace: str | None = None) -> None:
        """Set the position the next connect resumes from (recipe mode), e.g. after a restart of
        the client process: ``client.set_offset(load_last_id())`` before ``connect``."""
        self._ns(namespace or "/").state.set_offset(offset)

    def pending(self, namespace: str | None = None) -> int:
        """How many emits of ``namespace`` wait for their ack (the one in flight included)."""
        ns = self._namespaces.get(namespace or "/")
        return 0 if ns is None else len(ns.outbox)

    # ---- connect / emit / drop ------------------------------------------------------------------

    async def connect(
        self,
        url: str | Callable[[], Any],
        headers: Mapping[str, str] | Callable[[], Any] | None = None,
        auth: Mapping[str, Any] | Callable[[], Any] | None = None,
        transports: str | list[str] | None = None,
        namespaces: str | list[str] | None = None,
        socketio_path: str = "socket.io",
        wait: bool = True,
        wait_timeout: float | None = None,
        retry: bool = False,
    ) -> None:
        """Connect, as :meth:`socketio.AsyncClient.connect` (same parameters).

        ``auth`` must be a dict, ``None`` or a function (sync or async) returning one; a
        function is called on every connect and reconnect. The client adds its recovery fields
        (``pid``, ``offset``) to it, per namespace.
        """
        if auth is not None and not callable(auth) and not isinstance(auth, Mapping):
            raise TypeError("auth must be a dict, None, or a callable returning one")
        first = not self._active  # a call while active comes from python-socketio's reconnect loop
        if wait_timeout is None or not first:
            # python-socketio reconnects with a 1 s wait; a recovering CONNECT reply (sent after
            # the missed events) can take longer, and giving up on it would abandon the session.
            wait_timeout = self.connect_timeout
        if first:
            self._socketio_forget_finished_reconnect()
            self._active = True
            for ns in self._namespaces.values():
                ns.state.reopen()
        options = dict(transports=transports, namespaces=namespaces, socketio_path=socketio_path)
        try:
            await self._connect_once(url, headers, auth, wait=wait, wait_timeout=wait_timeout, **options)
        except _sio_exceptions.ConnectionError as exc:
            if first and not self.connected:
                self._close_all("the connection could not be established")
            if self._transport_lost:
                # Like the JS client: the next attempt follows the reconnection delay, now
                raise _sio_exceptions.ConnectionError(
                    "the connection closed before the server answered CONNECT"
                ) from exc
            raise
        except BaseException:
            if first and not self.connected:
                self._close_all("the connection could not be established")
            raise

    async def _connect_once(self, url: Any, headers: Any, auth: Any, **options: Any) -> None:
        """python-socketio's connect, then a check that the transport is still up."""
        self._transport_lost = False
        self._connect_pending = True
        try:
            await super().connect(url, headers={} if headers is None else headers, auth=auth, **options)
        finally:
            self._connect_pending = False
        if not self._socketio_transport_connected():  # closed as connect() returned
            await self._socketio_undo_connect(self.reason.TRANSPORT_ERROR)
            raise _sio_exceptions.ConnectionError("the connection closed while connecting")

    async def emit(
        self,
        event: str,
        data: Any = None,
        namespace: str | None = None,
        callback: Any = None,
        *,
        ack_timeout: float | None = None,
        retries: int | None = None,
        reliable: bool = True,
    ) -> Any:
        """Send an event and wait until the server acknowledges it; return the ack.

        Events are sent in order, one at a time, each resent after ``ack_timeout`` seconds
        without an ack or after a reconnect, up to ``retries`` times; an emit made while the
        connection is down waits for the reconnect. A dict first argument gets an idempotency
        key, the same on every attempt. ``data`` is one argument, or a tuple of several;
        ``callback`` is also called with the ack arguments. ``reliable=False`` is
        python-socketio's own emit (sent once, now; returns ``None``).

        :returns: the ack: ``None`` for no argument, the argument, or a tuple of several.
        :raises EmitTimeoutError: no ack after ``1 + retries`` attempts.
        :raises ClientClosedError: the client was disconnected for good before the ack.
        :raises socketio.exceptions.BadNamespaceError: not connected to ``namespace`` and not
            reconnecting.
        """
        ns_name = namespace or "/"
        if ack_timeout is not None and ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        if retries is not None and retries < 0:
            raise ValueError("retries must be >= 0")
        if not reliable:
            await HookedAsyncClient.emit(self, event, data, namespace=ns_name, callback=callback)
            return None
        state = self._state(ns_name)
        if (
            ns_name not in (self.connection_namespaces or [])
            or not self._active
            or (state is not None and state.closed)
        ):
            raise _sio_exceptions.BadNamespaceError(f"{ns_name} is not a connected namespace.")
        args = await self._ns(ns_name).outbox.put(
            event,
            with_idempotency_key(data, self.idempotency_key),
            ack_timeout=self.ack_timeout if ack_timeout is None else ack_timeout,
            retries=self.retries if retries is None else retries,
        )
        if callback is not None:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        if not args:
            return None
        return args[0] if len(args) == 1 else args

    async def drop(self, timeout: float = 10.0) -> None:
        """Close the connection abruptly, as a network failure would: for tests.

        No Socket.IO or Engine.IO goodbye is sent (the server sees ``transport close`` and keeps
        the session for recovery). Returns once the client has seen the connection go (its
        ``disconnect`` handlers ran); it then reconnects by itself after ``reconnection_delay``
        and recovers, as after a real drop.

        :raises RuntimeError: the client is not connected, or uses long-polling over an
            ``http_session`` you own (the client closes only its own HTTP session).

        Example::

            await client.drop()
            await sio.emit("news", "missed", room="r")  # server side, while the client is away
        """
        if not self.connected or not await self._socketio_drop_transport():
            raise RuntimeError("drop() needs a connected client with its own HTTP session")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connected:
            if loop.time() > deadline:
                raise TimeoutError(f"the client did not notice the dropped transport in {timeout} s")
            await asyncio.sleep(0.005)
