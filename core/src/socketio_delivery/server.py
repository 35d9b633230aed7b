"""``Delivery``: at-least-once, in-order delivery and connection state recovery for python-socketio.

::

    import socketio
    from socketio_delivery import Delivery

    sio = socketio.AsyncServer(async_mode="asgi")
    delivery = Delivery(sio, store="sqlite:///events.db")

    @sio.event
    async def connect(sid, environ, auth):
        if not delivery.recovered(sid):
            await sio.enter_room(sid, "match-42")

How it works (the wire protocol is Socket.IO's own, v4.6+):

* **Emits** without an ack callback are persisted in the store before anything is sent
  (``await sio.emit(...)`` returns once the event is durable and this process has sent it
  to its own clients; it raises :class:`~socketio_delivery.InvalidArgumentError` for an
  event that could not be sent (nothing is stored), :class:`~socketio_delivery.StoreError`
  when it could not be persisted, and :class:`~socketio_delivery.UndeliveredError` when it
  was persisted but this process's live delivery failed or timed out). Every process
  delivers them to its own clients by reading the store's log in offset order
  (:mod:`.live`, :mod:`.tailer`), with the offset appended as the last argument, as the
  Node server does.
* **CONNECT** replies carry a ``pid``. A reconnect that presents it (with the offset of the
  last event it got) gets its sid, rooms and session data back and the events it missed,
  before the CONNECT reply (:mod:`.connect`, :mod:`.recoverer`, :mod:`.recovery`). When
  that is impossible the client gets a new session and a ``delivery:resync`` event:
  continuity is never broken silently.
* **Client emits** carrying an idempotency key run their handler once (:mod:`.dedup`).

``Delivery`` is a facade over those parts; the session records live in :mod:`.sessions`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from ._compat import server as compat
from ._tasks import cancel_and_wait
from .config import DEFAULT_STORE_URL, default_store
from .connect import Connector
from .dedup import DEFAULT_MAX_RESULT_BYTES, IdempotencyGuard
from .errors import ConfigurationError
from .live import LiveDelivery
from .recoverer import Recoverer
from .registry import open_store
from .sessions import SessionBook
from .settings import Settings
from .store import DEFAULT_PAGE_SIZE, EventStore
from .wire import DEFAULT_MAX_EVENT_BYTES, RESERVED_EVENTS, RESYNC_EVENT, emit_args

__all__ = ["DEFAULT_STORE_URL", "RESYNC_EVENT", "Delivery"]

log = logging.getLogger("socketio_delivery")

Identity = Callable[[str, str], "str | Awaitable[str]"]


class Delivery:
    """Attach delivery guarantees to a ``socketio.AsyncServer``.

    :param sio: the server (ASGI, aiohttp, ... any asyncio mode; any client manager,
        including ``AsyncRedisManager``). Its ``always_connect`` must be ``False``.
    :param store: a store URL (``"sqlite:///events.db"``), a config mapping
        (``{"url": ..., "options": {...}}``), an :class:`~socketio_delivery.EventStore`
        object, or ``None`` to read ``SOCKETIO_DELIVERY_STORE_URL`` (when that is not set
        either: :data:`DEFAULT_STORE_URL`, ``sqlite:///events.db``).
    :param recovery_window: seconds a disconnected session can be recovered (Node's
        ``maxDisconnectionDuration``; default 2 minutes).
    :param rerun_connect: run the app's connect handler again for a recovered socket
        (``delivery.recovered(sid)`` tells it apart). ``False`` skips it.
    :param session_lease: seconds a connected session stays locked in the store after this
        process last renewed it (every third of it): nobody can recover a session that is
        still connected, and the clients of a process killed without a goodbye wait at most
        this long before another process recovers them.
    :param poll_interval: seconds between reads of a store other processes write to;
        emits of this process are delivered at once.
    :param page_size: events per store read (live delivery and replay).
    :param idempotency_key: the field of a client emit's first argument (a dict) that makes
        it processed-once; ``None`` turns processed-once handling off.
    :param idempotency_ttl: seconds a processed-once result is kept for retries.
    :param identity: ``identity(sid, namespace) -> str`` (or awaitable): who a client is, for
        scoping idempotency keys. Default: its recovery session (stable across recoveries).
    :param connect_timeout: seconds within which every connect attempt is answered (a
        CONNECT reply, a CONNECT_ERROR, or a transport close the client retries after).
    :param delivery_timeout: seconds ``await sio.emit(...)`` waits for this process's live
        delivery of a persisted event before raising :class:`~socketio_delivery.DeliveryTimeoutError`.
    :param max_event_bytes: the largest emit (encoded) that is accepted (default 1 MiB).
    :param max_result_bytes: the largest processed-once ack that is recorded (default 1 MiB).
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: str | Mapping[str, Any] | EventStore | None = None,
        *,
        recovery_window: float = 120.0,
        rerun_connect: bool = True,
        session_lease: float = 15.0,
        poll_interval: float = 0.05,
        page_size: int = DEFAULT_PAGE_SIZE,
        idempotency_key: str | None = "idempotencyKey",
        idempotency_ttl: float = 3600.0,
        identity: Identity | None = None,
        connect_timeout: float = 10.0,
        delivery_timeout: float = 10.0,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        compat.check_version()
        if not isinstance(sio, socketio.AsyncServer):
            raise ConfigurationError("Delivery needs a socketio.AsyncServer (asyncio)")
        if sio.always_connect:
            raise ConfigurationError("Delivery needs always_connect=False (the CONNECT reply comes last)")
        self.settings = config = Settings(
            recovery_window=recovery_window,
            rerun_connect=rerun_connect,
            session_lease=session_lease,
            poll_interval=poll_interval,
            page_size=page_size,
            idempotency_key=idempotency_key,
            idempotency_ttl=idempotency_ttl,
            connect_timeout=connect_timeout,
            delivery_timeout=delivery_timeout,
            max_event_bytes=max_event_bytes,
            max_result_bytes=max_result_bytes,
        )
        self.sio = sio
        self._owns_store = not isinstance(store, EventStore)
        self.store: EventStore = open_store(default_store(store))
        self._identity = identity
        self.sessions = SessionBook(
            sio, self.store, config.recovery_window, config.session_lease, position_of=self._position_of
        )
        self.live = LiveDelivery(sio, self.store, self.sessions, config, open_store=self.open)
        self._recoverer = Recoverer(sio, self.store, self.sessions, page_size=config.page_size)
        self._guard = IdempotencyGuard.configured(self.store, config, sio.not_handled)
        self._lock = asyncio.Lock()
        self._opened = False
        self._saver: asyncio.Task[None] | None = None
        self._install()

    @property
    def recovery_window(self) -> float:
        return self.settings.recovery_window

    @property
    def session_lease(self) -> float:
        return self.settings.session_lease

    def _position_of(self, namespace: str) -> str | None:
        return self.live.position_of(namespace)

    # -- public API ---------------------------------------------------------------
    def recovered(self, sid: str, namespace: str = "/") -> bool:
        """True when this connection restored an earlier session (same sid, rooms, data, missed events)."""
        state = self.sessions.get(namespace, sid)
        return bool(state and state.recovered)

    def recovery_failed(self, sid: str, namespace: str = "/") -> str | None:
        """Why the client's request to recover failed (``None`` when it did not ask, or recovered)."""
        state = self.sessions.get(namespace, sid)
        return state.recovery_failed if state else None

    async def publish(
        self,
        event: str,
        data: Any,
        *,
        to: str | list[str] | None = None,
        room: str | list[str] | None = None,
        skip_sid: str | list[str] | None = None,
        namespace: str | None = None,
    ) -> str:
        """Persist a durable application event and deliver it as ``{"id": offset, "data": data}``.

        Clients that keep the last ``id`` and send it as ``auth={"offset": id}`` when they
        connect get every such event they missed (the explicit recipe; any client).
        Returns the offset.
        """
        return await self.live.persist(event, [data], namespace or "/", to or room, skip_sid, explicit=True)

    async def open(self) -> None:
        """Open the store and start the background tasks (done lazily on first use otherwise)."""
        async with self._lock:
            if self._opened:
                return
            await self.store.open()
            self.sessions.closing = False
            self._saver = asyncio.create_task(self.sessions.save_loop(), name="socketio-delivery sessions")
            self._opened = True

    async def close(self) -> None:
        """Save every connected session (so a restart can recover them), stop, close the store."""
        self.sessions.closing = True
        await self.live.stop()
        if self._saver is not None:
            await cancel_and_wait(self._saver)
            self._saver = None
        if self._opened:
            await self.sessions.flush(everything=True)
            if self._owns_store:
                await self.store.close()
        self._opened = False

    # -- hooks --------------------------------------------------------------------
    def _install(self) -> None:
        book = self.sessions
        originals = compat.install(
            self.sio,
            self._connect,
            self._on_trigger,
            on_emit=self._emit,
            on_enter_room=book.entered,
            on_leave_room=book.left,
            on_save_session=book.touched,
        )
        self._manager_emit = originals.emit
        self._connector = Connector(
            self.sio,
            book,
            self._recoverer,
            self.live.tailer,
            originals.save_session,
            new_pid=self.store.generate_id,
            rerun_connect=self.settings.rerun_connect,
            timeout=self.settings.connect_timeout,
        )

    async def _connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await self._connector.handle(eio_sid, namespace, data)

    # -- server -> client ------------------------------------------------------------
    async def _emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or event in RESERVED_EVENTS:
            # acked emits carry no offset (as in Node): one client, confirmed by its ack
            await self._manager_emit(
                event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        await self.live.persist(event, emit_args(data), namespace or "/", room, skip_sid, explicit=False)

    # -- events from clients -------------------------------------------------------------
    async def _on_trigger(
        self, original: Callable[..., Awaitable[Any]], event: str, namespace: str, *args: Any
    ) -> Any:
        if event == "disconnect":
            # Saved first: the client may be reconnecting already, and until this save its
            # session is locked as connected (the app's handler may take a while).
            await self.sessions.disconnected(namespace, args[0], args[1] if len(args) > 1 else None)
            return await original(event, namespace, *args)
        if self._guard is None or event == "connect":
            return await original(event, namespace, *args)
        return await self._guard.dispatch(original, event, namespace, args, self._identity_of)

    async def _identity_of(self, sid: str, namespace: str) -> str:
        if self._identity is not None:
            value = self._identity(sid, namespace)
            return str(await value if inspect.isawaitable(value) else value)
        state = self.sessions.get(namespace, sid)
        return state.pid if state else sid
