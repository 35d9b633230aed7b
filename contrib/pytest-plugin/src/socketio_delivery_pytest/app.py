"""The app under test, served for real: :class:`DeliveryServer` and :class:`DeliveryTestClient`.

The ``delivery_server`` and ``delivery_client`` fixtures (:mod:`socketio_delivery_pytest.plugin`)
are thin wrappers over the factories here; they can also be used without pytest::

    async with DeliveryServerFactory("memory://") as serve, DeliveryClientFactory() as connect:
        server = await serve(create_app)
        client = await connect(server)

uvicorn (and websockets, aiohttp for the client) are imported when a server or client is made,
not when pytest loads the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import socketio
from socketio_delivery import Delivery
from socketio_delivery.client import DeliveryClient

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "AppFactory",
    "AppLike",
    "DeliveryClientFactory",
    "DeliveryServer",
    "DeliveryServerFactory",
    "DeliveryTestClient",
    "Received",
]

ASGIApp: TypeAlias = Callable[[Any, Any, Any], Awaitable[None]]
AppLike: TypeAlias = Delivery | socketio.AsyncServer | ASGIApp
"""What can be served: a :class:`Delivery` (its server), a ``socketio.AsyncServer`` or an ASGI app."""
AppFactory: TypeAlias = Callable[[str], AppLike]
"""A plain function that builds the app on a store URL: ``create_app(store_url) -> AppLike``."""

HOST = "127.0.0.1"

# Fast reconnects for tests: a dropped client is back within a few tens of milliseconds and a
# restarted server is found again within half a second.
CLIENT_DEFAULTS: Mapping[str, Any] = {
    "reconnection_delay": 0.05,
    "reconnection_delay_max": 0.5,
    "randomization_factor": 0,
    "handle_sigint": False,
}


def _is_asgi(app: object) -> bool:
    call = app if inspect.iscoroutinefunction(app) else getattr(app, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        inspect.signature(call).bind(None, None, None)
    except TypeError:
        raise TypeError(
            f"{app!r} is async but not an ASGI app (scope, receive, send); an app factory must be "
            "a plain function: def create_app(store_url)"
        ) from None
    except ValueError:  # no signature to read: trust it
        pass
    return True


def _is_factory(app: object) -> bool:
    return callable(app) and not isinstance(app, (Delivery, socketio.AsyncServer)) and not _is_asgi(app)


@dataclass(frozen=True)
class _Built:
    asgi: ASGIApp
    sio: socketio.AsyncServer | None
    delivery: Delivery | None
    lifespan: Literal["auto", "off"]


def _build(app: AppLike) -> _Built:
    if isinstance(app, Delivery):
        return _Built(socketio.ASGIApp(app.sio), app.sio, app, "off")
    if isinstance(app, socketio.AsyncServer):
        return _Built(socketio.ASGIApp(app), app, None, "off")
    if _is_asgi(app):
        sio = getattr(app, "engineio_server", None)  # set by socketio.ASGIApp
        return _Built(app, sio if isinstance(sio, socketio.AsyncServer) else None, None, "auto")
    raise TypeError(
        "delivery_server serves a Delivery, a socketio.AsyncServer, an ASGI app, or a plain function "
        f"that builds one from the store URL; got {type(app).__name__}"
    )


class DeliveryServer:
    """The app under uvicorn on ``127.0.0.1``, a free port chosen at the first start and kept.

    :param app: a :class:`Delivery` (its ``sio`` is served; the Delivery is opened at start, so
        a store that cannot be reached fails the start, and closed at stop), a
        ``socketio.AsyncServer`` (served as ``socketio.ASGIApp(sio)``), an ASGI app (served as it
        is, with its lifespan: ``on_startup``/``on_shutdown`` run), or a plain (not async)
        function ``create_app(store_url)`` returning one of those.
    :param store_url: the URL a factory is called with.

    :meth:`restart` is what a redeploy does to the clients: every connection is cut (the
    clients see a transport close and reconnect by themselves), the Delivery is closed (the
    sessions are saved in the store) and the server listens again on the same port. With a
    factory the app is built anew, as a new process would: on a durable store
    (``sqlite:///{tmp_path}/events.db``, Redis, MongoDB) the clients recover their sessions and
    the events they missed; on ``memory://`` the new app has a new, empty store, so every client
    gets a new session and a ``delivery:resync`` event (``client.recovery_failed()`` says why).
    A built app (not a factory) is served again as the same objects: its store object, even a
    ``memory://`` one, still holds the sessions, so the clients recover.
    """

    def __init__(self, app: AppLike | AppFactory, store_url: str, *, port: int = 0) -> None:
        self.store_url = store_url
        self.host = HOST
        self.port = port
        self._factory: AppFactory | None = cast("AppFactory", app) if _is_factory(app) else None
        self._app: AppLike | None = None if self._factory else cast("AppLike", app)
        self._built: _Built | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    # ---- what the test reads ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``DeliveryClient.connect`` (valid after the first start)."""
        if not self.port:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._serving is not None

    @property
    def app(self) -> AppLike:
        """The app being served (for a factory, the one the last start built)."""
        if self._app is None:
            raise RuntimeError("the server has not been started")
        return self._app

    @property
    def sio(self) -> socketio.AsyncServer:
        """The ``socketio.AsyncServer`` being served: emit on it as the app would."""
        if self._built is None or self._built.sio is None:
            raise RuntimeError("no socketio.AsyncServer is known for this app (an ASGI app of another kind)")
        return self._built.sio

    @property
    def delivery(self) -> Delivery | None:
        """The app's :class:`Delivery` when the app (or the factory) gave one, else ``None``."""
        return None if self._built is None else self._built.delivery

    # ---- start / stop -------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the app if this server has a factory, open its Delivery if known, serve it."""
        if self._serving is not None:
            raise RuntimeError("the server is already running")
        import uvicorn

        if self._factory is not None:
            self._app = self._factory(self.store_url)
            self._built = None
        if self._built is None:
            self._built = _build(self.app)
        if self._built.delivery is not None:
            await self._built.delivery.open()
        config = uvicorn.Config(
            self._built.asgi,
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan=self._built.lifespan,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(_serve(server), name=f"delivery_server {self.host}:{self.port}")
        while not server.started:
            if serving.done():
                serving.result()  # uvicorn's own error, if it raised one
                raise RuntimeError(f"uvicorn did not start on {self.host}:{self.port}: see its log above")
            await asyncio.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._serving = server, serving

    async def stop(self) -> None:
        """Stop listening and cut every connection, then close the app's Delivery (if known).

        The clients see a transport close and keep trying to reconnect until :meth:`start`.
        Stopping a stopped server does nothing.
        """
        server, serving = self._server, self._serving
        self._server = self._serving = None
        if server is None or serving is None:
            return
        server.should_exit = True
        try:
            await serving
        finally:
            if self._built is not None and self._built.delivery is not None:
                await self._built.delivery.close()

    async def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` on the same port (see the class docs for the sessions)."""
        await self.stop()
        await self.start()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DeliveryServer {self.host}:{self.port} {state} store={self.store_url!r}>"


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits when it cannot bind: not a reason to end pytest
        raise RuntimeError(f"uvicorn exited ({exc.code}): see its log above") from None


class DeliveryServerFactory:
    """``await factory(app, store_url=None)`` starts a :class:`DeliveryServer`; all stop at :meth:`aclose`."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.servers: list[DeliveryServer] = []

    async def __call__(self, app: AppLike | AppFactory, *, store_url: str | None = None) -> DeliveryServer:
        server = DeliveryServer(app, self.store_url if store_url is None else store_url)
        self.servers.append(server)
        await server.start()
        return server

    async def aclose(self) -> None:
        """Stop every server, newest first; the first error is raised once all are stopped."""
        errors: list[BaseException] = []
        while self.servers:
            try:
                await self.servers.pop().stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> DeliveryServerFactory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@dataclass(frozen=True)
class Received:
    """One event a :class:`DeliveryTestClient` received (offset stripped, as handlers see it)."""

    event: str
    args: tuple[Any, ...]
    namespace: str

    @property
    def data(self) -> Any:
        """``None`` for no argument, the argument, or a tuple of several."""
        if not self.args:
            return None
        return self.args[0] if len(self.args) == 1 else self.args


class DeliveryTestClient(DeliveryClient):
    """A :class:`DeliveryClient` that records the events it receives, in order.

    Every event of a connected namespace is recorded in :attr:`received` (through
    python-socketio's catch-all handler, so an event you give a handler of your own with
    ``client.on(...)`` goes to your handler and is not recorded); :data:`RESYNC_EVENT` is too.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.received: list[Received] = []

    def record(self, namespace: str = "/") -> None:
        """Record the events of ``namespace`` (done by ``delivery_client`` for every namespace)."""

        async def catch_all(event: str, *args: Any) -> None:
            self.received.append(Received(event, args, namespace))

        self.on("*", catch_all, namespace=namespace)

    def events(self, event: str, namespace: str = "/") -> list[Any]:
        """The data of every ``event`` received so far on ``namespace`` (see :attr:`Received.data`)."""
        return [r.data for r in self.received if r.event == event and r.namespace == namespace]

    async def wait_for(
        self, event: str, count: int = 1, *, namespace: str = "/", timeout: float = 10.0
    ) -> list[Any]:
        """Wait until ``count`` ``event`` events arrived; return all received so far (:meth:`events`).

        :raises TimeoutError: fewer arrived within ``timeout`` seconds (the message says what did).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found := self.events(event, namespace)) < count:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} {event!r} events on {namespace} in {timeout} s; "
                    f"received: {[(r.event, r.data) for r in self.received]!r}"
                )
            await asyncio.sleep(0.01)
        return found


class DeliveryClientFactory:
    """``await factory(server_or_url, **options)``: a connected :class:`DeliveryTestClient`.

    Every client made is shut down at :meth:`aclose`.
    """

    def __init__(self, shutdown_timeout: float = 5.0) -> None:
        self.shutdown_timeout = shutdown_timeout
        self.clients: list[DeliveryTestClient] = []

    async def __call__(
        self,
        server: DeliveryServer | str,
        *,
        auth: Mapping[str, Any] | Callable[[], Any] | None = None,
        namespaces: str | Iterable[str] = "/",
        transports: str | list[str] | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> DeliveryTestClient:
        """Connect a new client to ``server`` (a :class:`DeliveryServer` or a URL).

        ``options`` are :class:`DeliveryClient`'s (``ack_timeout``, ``retries``, ``mode``, and
        every ``socketio.AsyncClient`` option); reconnects are fast by default
        (:data:`CLIENT_DEFAULTS`). The client records the events of ``namespaces``.
        """
        url = server.url if isinstance(server, DeliveryServer) else server
        client = DeliveryTestClient(**{**CLIENT_DEFAULTS, **options})
        names = [namespaces] if isinstance(namespaces, str) else list(namespaces)
        for name in names:
            client.record(name)
        self.clients.append(client)
        await client.connect(url, headers=headers, auth=auth, transports=transports, namespaces=names)
        return client

    async def aclose(self) -> None:
        """Shut every client down (each within ``shutdown_timeout`` seconds; errors ignored)."""
        while self.clients:
            client = self.clients.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.shutdown(), self.shutdown_timeout)

    async def __aenter__(self) -> DeliveryClientFactory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
