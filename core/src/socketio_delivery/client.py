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
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from socketio import exceptions as _sio_exceptions  # type: ignore[import-untyped,unused-ignore]

from ._client_outbox import ClientClosedError, EmitError, EmitTimeoutError, Outbox
from ._compat.client import HookedAsyncClient
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

#: A stream position: the server's opaque offset string (or, in recipe mode, the ``id`` the
#: server put in its ``{"id": ..., "data": ...}`` events, which some servers make integers).
Offset = str | int

Mode = Literal["recovery", "recipe"]
_CLIENT_DISCONNECT = "client disconnect"


@dataclass(eq=False)
class _Namespace:
    """What the client remembers about one namespace."""

    outbox: Outbox
    pid: str | None = None  # from the last CONNECT reply
    offset: Offset | None = None  # last offset (recovery) or last envelope id (recipe)
    sent_pid: str | None = None  # the pid the pending CONNECT carried
    recovered: bool = False
    recovery_failed: bool = False
    server_offsets: bool = False  # the current connection's reply carried a pid: events end with an offset
    resync_reason: str | None = None
    #: "down" -> CONNECT sent: "connecting" -> reply: "flushing" (held events run) -> "open"
    phase: Literal["down", "connecting", "flushing", "open"] = "down"
    held: deque[tuple[int | None, list[Any]]] = field(default_factory=deque)
    closed: bool = False
    epoch: int = 0  # +1 on every CONNECT sent and every disconnect: work of an older one stops


class DeliveryClient(HookedAsyncClient):
    """:class:`socketio.AsyncClient` that recovers its session and emits reliably.

    :param mode: ``"recovery"`` (default): connection state recovery with the ``pid`` and offset,
        for a :class:`socketio_delivery.Delivery` server or a Node server with
        ``connectionStateRecovery``. ``"recipe"``: the explicit recipe, for servers without
        recovery: the client remembers the ``id`` of every ``{"id": ..., "data": ...}`` event
        (and, when the server appends offsets, the offset of every event) and sends it as
        ``auth["offset"]`` on every connect; seed it with :meth:`set_offset`.
    :param ack_timeout: seconds :meth:`emit` waits for an ack before sending again.
    :param retries: how many times :meth:`emit` resends an event (so ``1 + retries`` attempts);
        an attempt ends with the ack, the timeout, or the connection dropping.
    :param idempotency_key: the field :meth:`emit` adds to a dict first argument, with a fresh
        random value per emit (kept across retries), unless the dict already has it. Must match
        the server's ``Delivery(idempotency_key=...)``. ``None`` adds no key.
    :param connect_timeout: seconds to wait for a CONNECT reply, on reconnects always (python-socketio
        waits 1 s, too short for a reply that comes after a long replay) and on :meth:`connect`
        when no ``wait_timeout`` is given. Default 20, like the JS client's ``timeout``. A
        transport that closes during the wait ends it at once: the connect raises
        :class:`socketio.exceptions.ConnectionError` (a reconnect tries again after the delay).
    :param kwargs: everything :class:`socketio.AsyncClient` accepts (``reconnection_delay``,
        ``logger``, ``serializer``, ``http_session``...).

    Example::

        client = DeliveryClient(reconnection_delay=0.5, ack_timeout=5.0, retries=5)

        @client.on("chat")
        def chat(message):  # the offset is stripped
            print(message)

        await client.connect("http://localhost:8000", auth={"token": "secret"})
        ack = await client.emit("send", {"text": "hi"})  # {"text": ..., "idempotencyKey": "..."}
        assert client.recovered is False  # first connection
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
        super().__init__(**kwargs)
        self.mode: Mode = mode
        self.ack_timeout = float(ack_timeout)
        self.retries = int(retries)
        self.idempotency_key = idempotency_key
        self.connect_timeout = float(connect_timeout)
        self._namespaces: dict[str, _Namespace] = {}
        self._active = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._connect_pending = False  # a connect() (first or reconnect) waits for its CONNECT replies
        self._transport_lost = False  # ... and its transport closed meanwhile

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
        """True when the last CONNECT reply of ``namespace`` carried the ``pid`` we sent.

        The session (sid, rooms, server-side data) is the old one and the events missed while
        disconnected were delivered, in order, before the ``connect`` handler ran.
        """
        ns = self._namespaces.get(namespace or "/")
        return ns is not None and ns.recovered

    def recovery_failed(self, namespace: str | None = None) -> bool:
        """True when the last connect tried to recover (sent a ``pid``) and got a new session.

        Events may have been missed: the application must resynchronise its state. Works with any
        recovery server (a Delivery server also sends :data:`RESYNC_EVENT` with the reason).
        """
        ns = self._namespaces.get(namespace or "/")
        return ns is not None and ns.recovery_failed

    def resync_reason(self, namespace: str | None = None) -> str | None:
        """The reason of the :data:`RESYNC_EVENT` received on the current connection, if any."""
        ns = self._namespaces.get(namespace or "/")
        return None if ns is None else ns.resync_reason

    def get_offset(self, namespace: str | None = None) -> Offset | None:
        """The last offset (or, in recipe mode, the last event ``id``) seen on ``namespace``."""
        ns = self._namespaces.get(namespace or "/")
        return None if ns is None else ns.offset

    def set_offset(self, offset: Offset | None, namespace: str | None = None) -> None:
        """Set the position the next connect resumes from (recipe mode).

        Use it to resume after a restart of the client process, with the last id you stored::

            client = DeliveryClient(mode="recipe")
            client.set_offset(load_last_id())
            await client.connect(url)  # CONNECT auth: {"offset": <last id>}
        """
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, (str, int))):
            raise TypeError("offset must be a str or an int")
        self._ns(namespace or "/").offset = offset

    def pending(self, namespace: str | None = None) -> int:
        """How many emits of ``namespace`` wait for their ack (the one in flight included)."""
        ns = self._namespaces.get(namespace or "/")
        return 0 if ns is None else len(ns.outbox)

    # ---- connect / emit -----------------------------------------------------------------------

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

        Example::

            await client.connect("http://localhost:8000", auth=lambda: {"token": fresh_token()})
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
                ns.closed = False
        self._transport_lost = False
        try:
            self._connect_pending = True
            try:
                await super().connect(
                    url,
                    headers={} if headers is None else headers,
                    auth=auth,
                    transports=transports,
                    namespaces=namespaces,
                    socketio_path=socketio_path,
                    wait=wait,
                    wait_timeout=wait_timeout,
                    retry=retry,
                )
            finally:
                self._connect_pending = False
            if not self._socketio_transport_connected():  # closed as connect() returned
                await self._socketio_undo_connect(self.reason.TRANSPORT_ERROR)
                raise _sio_exceptions.ConnectionError("the connection closed while connecting")
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

        The event joins the namespace's queue: events are sent in order, one at a time, and each
        is resent after ``ack_timeout`` seconds without an ack or after a reconnect, up to
        ``retries`` times. An emit made while the connection is down waits for the reconnect.
        A dict first argument gets an idempotency key (see ``idempotency_key``), the same one on
        every attempt, so a :class:`socketio_delivery.Delivery` server runs the handler once.

        :param data: one argument, or a tuple for several (as in python-socketio).
        :param callback: also called with the ack arguments, as in python-socketio.
        :param ack_timeout: per-emit override of the client's ``ack_timeout``.
        :param retries: per-emit override of the client's ``retries``.
        :param reliable: ``False`` sends the event once, now, as python-socketio does (no queue,
            no key, no wait for an ack; raises when disconnected) and returns ``None``.
        :returns: the ack: ``None`` for no argument, the argument, or a tuple of several.
        :raises EmitTimeoutError: no ack after ``1 + retries`` attempts.
        :raises ClientClosedError: the client was disconnected for good before the ack.
        :raises socketio.exceptions.BadNamespaceError: the client is not connected to ``namespace``
            and is not reconnecting.

        Example::

            total = await client.emit("add", ({"a": 1}, 2), ack_timeout=2.0, retries=10)
        """
        ns_name = namespace or "/"
        if ack_timeout is not None and ack_timeout <= 0:
            raise ValueError("ack_timeout must be > 0")
        if retries is not None and retries < 0:
            raise ValueError("retries must be >= 0")
        if not reliable:
            await HookedAsyncClient.emit(self, event, data, namespace=ns_name, callback=callback)
            return None
        ns = self._namespaces.get(ns_name)
        if (
            ns_name not in (self.connection_namespaces or [])
            or not self._active
            or (ns is not None and ns.closed)
        ):
            raise _sio_exceptions.BadNamespaceError(f"{ns_name} is not a connected namespace.")
        ns = self._ns(ns_name)
        args = await ns.outbox.put(
            event,
            self._with_idempotency_key(data),
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

    # ---- internals -----------------------------------------------------------------------------

    def _ns(self, namespace: str) -> _Namespace:
        ns = self._namespaces.get(namespace)
        if ns is None:
            ns = self._namespaces[namespace] = _Namespace(Outbox(namespace, self._make_sender(namespace)))
        return ns

    def _make_sender(self, namespace: str) -> Any:
        async def send(event: str, data: Any, on_ack: Any) -> None:
            await HookedAsyncClient.emit(self, event, data, namespace=namespace, callback=on_ack)

        return send

    def _with_idempotency_key(self, data: Any) -> Any:
        key = self.idempotency_key
        if key is None:
            return data
        if isinstance(data, dict):
            return data if key in data else {**data, key: str(uuid.uuid4())}
        if isinstance(data, tuple) and data and isinstance(data[0], dict) and key not in data[0]:
            return ({**data[0], key: str(uuid.uuid4())}, *data[1:])
        return data

    def _close_all(self, reason: str) -> None:
        self._active = False
        for ns in self._namespaces.values():
            ns.closed = True
            ns.phase = "down"
            ns.held.clear()
            ns.outbox.close(reason)

    # ---- hooks called by HookedAsyncClient -------------------------------------------------------

    def _delivery_connect_auth(self, namespace: str, auth: Any) -> Any:
        ns = self._ns(namespace)
        if ns.outbox.connected or ns.phase != "down":  # a reconnect we were not told about
            self._mark_down(ns)
        ns.phase = "connecting"
        ns.epoch += 1
        ns.closed = False
        ns.held.clear()
        ns.sent_pid = None
        if auth is None:
            auth = {}
        if not isinstance(auth, Mapping):
            logger.warning(
                "auth is a %s, not a dict: connecting to %s without recovery", type(auth), namespace
            )
            return auth
        fields: dict[str, Any] = {}
        if self.mode == "recovery":
            if ns.pid is not None:
                fields["pid"] = ns.sent_pid = ns.pid
                if ns.offset is not None:
                    fields["offset"] = ns.offset
        elif ns.offset is not None:
            fields["offset"] = ns.offset
        return {**fields, **auth}

    def _delivery_connect_pending(self) -> bool:
        return self._connect_pending

    def _delivery_transport_lost(self) -> None:
        self._transport_lost = True
        for ns in self._namespaces.values():
            if ns.phase != "down":
                self._mark_down(ns)

    async def _delivery_connect_reply(self, namespace: str, data: Any) -> None:
        if self._transport_lost:  # it answers a connection that closed while connecting: ignore it
            return
        ns = self._ns(namespace)
        if ns.phase not in ("connecting", "down"):  # a duplicate reply: python-socketio ignores it
            await self._socketio_handle_connect(namespace, data)
            return
        pid = data.get("pid") if isinstance(data, Mapping) else None
        pid = pid if isinstance(pid, str) and pid else None
        ns.recovered = pid is not None and pid == ns.sent_pid
        ns.recovery_failed = ns.sent_pid is not None and not ns.recovered
        ns.server_offsets = pid is not None
        ns.resync_reason = None
        ns.pid = pid
        if self.mode == "recovery" and not ns.recovered:
            ns.offset = None  # a new session: the old position means nothing to it
        # Like the JS client: the events the server sent before its CONNECT reply (the missed
        # events of a recovery) are handled first, in order, then the connect handler runs.
        # As python-socketio does for live events, each handler runs in its own task: they start
        # in arrival order and a handler that awaits (an emit, another event) blocks nobody.
        # Events arriving meanwhile join ``held`` and keep their place.
        ns.phase = "flushing"
        epoch = ns.epoch
        while ns.held:
            ack_id, packet_data = ns.held.popleft()
            task = asyncio.ensure_future(self._dispatch_logged(namespace, ns, ack_id, packet_data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0)  # the task starts (its handler runs up to its first await) now
            if ns.epoch != epoch:  # disconnected meanwhile
                return
        ns.phase = "open"
        ns.outbox.up()
        await self._socketio_handle_connect(namespace, data)
        if ns.epoch == epoch:
            ns.outbox.up()  # the namespace is registered by now: wake the queue again

    async def _delivery_event(self, namespace: str, ack_id: int | None, data: list[Any]) -> None:
        ns = self._ns(namespace)
        if ns.phase in ("connecting", "flushing"):
            ns.held.append((ack_id, data))
            return
        await self._dispatch(namespace, ns, ack_id, data)

    def _delivery_namespace_down(self, namespace: str, *, final: bool, reason: Any = None) -> None:
        ns = self._namespaces.get(namespace)
        if ns is None:
            return
        self._mark_down(ns)
        if (
            reason == getattr(self.reason, "CLIENT_DISCONNECT", _CLIENT_DISCONNECT)
            and self.mode == "recovery"
        ):
            ns.pid = None  # an explicit disconnect ends the session (the server drops it too)
            ns.offset = None
            ns.recovered = False
        if final:
            ns.closed = True
            ns.outbox.close("the client disconnected")
            if all(n.closed for n in self._namespaces.values()):
                self._active = False

    def _mark_down(self, ns: _Namespace) -> None:
        ns.epoch += 1
        ns.phase = "down"
        ns.held.clear()
        ns.outbox.down()

    async def _dispatch_logged(
        self, namespace: str, ns: _Namespace, ack_id: int | None, data: list[Any]
    ) -> None:
        try:
            await self._dispatch(namespace, ns, ack_id, data)
        except Exception:
            logger.exception("handler of event %r on %s failed", data[0] if data else None, namespace)

    async def _dispatch(self, namespace: str, ns: _Namespace, ack_id: int | None, data: list[Any]) -> None:
        if ack_id is None and len(data) >= 1:
            if ns.server_offsets and len(data) >= 2 and isinstance(data[-1], str):
                ns.offset = data[-1]
                data = data[:-1]
            if self.mode == "recipe" and len(data) >= 2:
                envelope = data[1]
                if isinstance(envelope, dict) and envelope.keys() == {"id", "data"}:
                    eid = envelope["id"]
                    if isinstance(eid, (str, int)) and not isinstance(eid, bool):
                        ns.offset = eid
            if data[0] == RESYNC_EVENT:
                info = data[1] if len(data) >= 2 else None
                reason = info.get("reason") if isinstance(info, Mapping) else None
                ns.resync_reason = reason if isinstance(reason, str) else "unknown"
        await self._socketio_handle_event(namespace, ack_id, data)
