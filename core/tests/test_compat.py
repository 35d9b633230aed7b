"""socketio_delivery._compat: every private python-socketio / python-engineio name we use, by behaviour.

A python-socketio release that changes one of them fails here: a real server and a real client
prove each hook (forced sid, CONNECT reply with a pid, trigger, emit, room and session hooks, the
two-step connect on every supported release), and the connect shim is compared with python-socketio's
own ``_handle_connect`` on a plain server for the same inputs.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from typing import Any

import pytest
import socketio
from _serving import serve_asgi, until
from socketio_delivery import ConfigurationError, Delivery
from socketio_delivery._compat import (
    ENGINEIO_MINIMUM,
    SUPPORTED,
    check_version,
    supported_range,
    version_tuple,
)
from socketio_delivery._compat import server as compat


def test_the_installed_releases_are_inside_the_supported_range() -> None:
    check_version()  # raises outside the range
    installed = version_tuple(metadata.version("python-socketio"))[:2]
    assert SUPPORTED[0] <= installed < SUPPORTED[1]
    assert (*version_tuple(metadata.version("python-engineio")), 0) >= ENGINEIO_MINIMUM
    has_pre_connect = installed >= (5, 18)
    assert has_pre_connect is compat.HAS_PRE_CONNECT


@pytest.mark.parametrize("version", ["5.15.9", "5.19.0", "6.0.0", "4.0", "garbage"])
def test_python_socketio_outside_the_range_is_refused_naming_the_range(version: str) -> None:
    with pytest.raises(ConfigurationError, match=r"python-socketio>=5\.16,<5\.19") as info:
        check_version(version, engineio_version="4.15.1")
    assert "python-socketio" in str(info.value)
    assert supported_range() in str(info.value)


@pytest.mark.parametrize("version", ["4.13.1", "4.12.3", "4.13"])
def test_python_engineio_before_4_13_2_is_refused(version: str) -> None:
    with pytest.raises(ConfigurationError, match=f"python-engineio {version}"):
        check_version("5.18.1", engineio_version=version)


@pytest.mark.parametrize(("sio", "eio"), [("5.16.0", "4.13.2"), ("5.17.1", "4.15.1"), ("5.18.1rc1", "5.0")])
def test_versions_inside_the_range_are_accepted(sio: str, eio: str) -> None:
    check_version(sio, engineio_version=eio)


class Recorder:
    """A server with :func:`compat.install` hooks that record every call; connects with a forced sid."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.calls: list[tuple[Any, ...]] = []
        self.next_sid = "forced-" + "x" * 13
        self.originals = compat.install(
            self.sio,
            self.on_connect,
            self.on_trigger,
            on_emit=self.on_emit,
            on_enter_room=lambda sid, ns, room: self.calls.append(("enter", sid, ns, room)),
            on_leave_room=lambda sid, ns, room: self.calls.append(("leave", sid, ns, room)),
            on_save_session=lambda sid, ns: self.calls.append(("saved", sid, ns)),
        )

        @self.sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            await self.sio.enter_room(sid, "lobby")

        @self.sio.event
        async def hello(sid: str, data: Any) -> Any:
            await self.sio.leave_room(sid, "lobby")
            await self.sio.save_session(sid, {"seen": data})
            return ["hi", data]

    async def on_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        """What Delivery does, minus the store: forced sid, pid in the reply, two-step connect."""
        namespace = namespace or "/"
        self.calls.append(("connect", namespace, data))
        compat.forced_sid.set(self.next_sid)
        try:
            sid = await self.sio.manager.pre_connect(eio_sid, namespace)
        finally:
            compat.forced_sid.set(None)
        outcome = await compat.run_connect_handler(self.sio, eio_sid, sid, namespace, data)
        if not outcome.accepted:
            await self.sio.manager.disconnect(sid, namespace, ignore_queue=True)
            await compat.send_connect_error(self.sio, eio_sid, namespace, outcome.reason)
            return
        await compat.send_connect(self.sio, eio_sid, namespace, {"sid": sid, "pid": "the-pid"})
        assert await self.sio.manager.connect(sid, namespace) == sid

    async def on_trigger(
        self, original: Callable[..., Awaitable[Any]], event: str, namespace: str, *args: Any
    ) -> Any:
        self.calls.append(("trigger", event, namespace, args[0]))
        return await original(event, namespace, *args)

    async def on_emit(self, event: str, data: Any, **kwargs: Any) -> None:
        self.calls.append(("emit", event, data, kwargs["room"] or kwargs["to"]))
        await self.originals.emit(event, data, **kwargs)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        async with serve_asgi(socketio.ASGIApp(self.sio)) as url:
            yield url


class Client(socketio.AsyncClient):  # type: ignore[misc]
    """The stock client, keeping the CONNECT reply's data (it drops the pid)."""

    replies: list[Any]

    async def _handle_connect(self, namespace: str, data: Any) -> None:
        self.replies = [*getattr(self, "replies", []), data]
        await super()._handle_connect(namespace, data)


async def test_every_hook_is_called_by_a_real_server_for_a_real_client() -> None:
    app = Recorder()
    client = Client(handle_sigint=False, reconnection=False)
    got: list[Any] = []
    client.on("news", lambda data: got.append(data))
    async with app.serve() as url:
        await client.connect(url, auth={"token": 1}, transports=["websocket"])
        sid = client.get_sid()
        assert sid == app.next_sid  # generate_id used the forced sid, once
        assert client.replies == [{"sid": sid, "pid": "the-pid"}]
        assert app.sio.eio.generate_id() != app.next_sid
        assert await client.call("hello", 7) == ["hi", 7]
        await app.sio.emit("news", {"n": 1}, to=sid)
        await until(lambda: got == [{"n": 1}], "the emit")
        assert await app.sio.get_session(sid) == {"seen": 7}
        await client.disconnect()
        await until(lambda: ("trigger", "disconnect", "/", sid) in app.calls, "the disconnect")
    assert app.calls[:5] == [
        ("connect", "/", {"token": 1}),
        ("enter", sid, "/", None),  # pre_connect registers it: through the room hook too
        ("enter", sid, "/", sid),
        ("trigger", "connect", "/", sid),
        ("enter", sid, "/", "lobby"),  # from the connect handler
    ]
    after_hello = app.calls[app.calls.index(("trigger", "hello", "/", sid)) :]
    assert after_hello[1:3] == [("leave", sid, "/", "lobby"), ("saved", sid, "/")]
    assert ("emit", "news", {"n": 1}, sid) in app.calls


async def test_the_manager_keeps_its_class_and_instance_and_a_second_install_is_refused() -> None:
    sio = socketio.AsyncServer(async_mode="asgi")
    manager, base = sio.manager, type(sio.manager)
    compat.install(sio, Recorder.on_connect, Recorder.on_trigger)  # type: ignore[arg-type]
    assert sio.manager is manager
    assert isinstance(manager, base)
    assert type(manager) is compat.hooked_manager_class(base)
    with pytest.raises(ConfigurationError, match="already attached"):
        compat.install(sio, Recorder.on_connect, Recorder.on_trigger)  # type: ignore[arg-type]


async def test_reserved_and_nameless_events_never_reach_the_trigger() -> None:
    app = Recorder()
    client = Client(handle_sigint=False, reconnection=False)
    async with app.serve() as url:
        await client.connect(url, auth={"a": 1}, transports=["websocket"])
        for name in ("connect", "disconnect", "connect_error", "delivery:resync"):
            await client.emit(name, {"forged": True})
        assert await client.call("hello", 1) == ["hi", 1]
        await client.disconnect()
    triggered = [c[1] for c in app.calls if c[0] == "trigger"]
    assert triggered == ["connect", "hello", "disconnect"]


async def test_a_socket_is_pending_between_pre_connect_and_connect_on_5_18() -> None:
    """The two-step registration Delivery relies on (a shim below 5.18, where it is one step)."""
    sio = socketio.AsyncServer(async_mode="asgi")
    compat.install(sio, Recorder.on_connect, Recorder.on_trigger)  # type: ignore[arg-type]
    sio.manager.set_server(sio)
    compat.forced_sid.set("chosen")
    try:
        sid = await sio.manager.pre_connect("eio-1", "/")
    finally:
        compat.forced_sid.set(None)
    assert sid == "chosen"
    assert sio.manager.eio_sid_from_sid(sid, "/") == "eio-1"
    assert await sio.manager.pre_connect("eio-1", "/") is None  # already registered
    assert sio.manager.is_connected(sid, "/") is not compat.HAS_PRE_CONNECT
    assert await sio.manager.connect(sid, "/") == sid
    assert sio.manager.is_connected(sid, "/")
    await sio.manager.disconnect(sid, "/", ignore_queue=True)
    assert not sio.manager.is_connected(sid, "/")


async def test_sends_and_checks_outside_the_api_reach_a_real_client() -> None:
    """local_emit, send_event, transport_answers, disconnect_if_transport_closed, drop_transport."""
    app = Recorder()
    sio = app.sio
    got: list[Any] = []
    lost: list[str] = []
    client = Client(handle_sigint=False, reconnection=False)
    client.on("*", lambda event, *args: got.append((event, *args)))
    client.on("disconnect", lambda *reason: lost.append("disconnect"))
    async with app.serve() as url:
        await client.connect(url, transports=["websocket"])
        sid = client.get_sid()
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        assert await compat.local_emit(sio, "room", [1, "o"], "/", "lobby", set()) == [sid]
        assert await compat.local_emit(sio, "skipped", [2], "/", None, {sid}) == []
        assert await compat.local_emit(sio, "nowhere", [3], "/other", None, set()) == []
        await compat.send_event(sio, eio_sid, "/", ["direct", {"n": 4}])
        await until(lambda: len(got) == 2, "the sends")
        assert got == [("room", 1, "o"), ("direct", {"n": 4})]
        assert await compat.transport_answers(sio, eio_sid, 5.0)  # the client answers a PING
        assert not await compat.transport_answers(sio, "no-such-eio-sid", 5.0)
        assert not await compat.disconnect_if_transport_closed(sio, eio_sid, "/")
        assert sio.manager.is_connected(sid, "/")
        assert await compat.drop_transport(sio, eio_sid)  # closed without a goodbye
        await until(lambda: lost == ["disconnect"], "the client to see the drop")
        await until(lambda: sio.manager.eio_sid_from_sid(sid, "/") is None, "the server to unregister it")
        assert not await compat.drop_transport(sio, eio_sid)
        assert await compat.disconnect_if_transport_closed(sio, eio_sid, "/")  # nothing left to do
        await client.disconnect()


# -- the connect shim against python-socketio's own connect handling ---------------------------


async def _stock_accept(sid: str, environ: Any, auth: Any) -> None:
    return None


async def _legacy(sid: str, environ: Any) -> None:
    return None


async def _false(sid: str, environ: Any, auth: Any) -> bool:
    return False


async def _refused(sid: str, environ: Any, auth: Any) -> None:
    raise socketio.exceptions.ConnectionRefusedError("nope", {"code": 7})


async def _builtin_refused(sid: str, environ: Any, auth: Any) -> None:
    raise ConnectionRefusedError("plain")


async def _connect_like_delivery(sio: socketio.AsyncServer, eio_sid: str, namespace: str, data: Any) -> None:
    """The shim path Delivery takes for a new session, without the store and the pid."""
    namespace = namespace or "/"
    if not compat.serves_namespace(sio, namespace):
        await compat.send_connect_error(sio, eio_sid, namespace, "Unable to connect")
        return
    sid = await sio.manager.pre_connect(eio_sid, namespace)
    if sid is None:
        await compat.send_connect_error(sio, eio_sid, namespace, "Unable to connect")
        return
    outcome = await compat.run_connect_handler(sio, eio_sid, sid, namespace, data)
    if not outcome.accepted:
        await sio.manager.disconnect(sid, namespace, ignore_queue=True)
        await compat.send_connect_error(sio, eio_sid, namespace, outcome.reason)
        return
    await compat.send_connect(sio, eio_sid, namespace, {"sid": sid})
    await sio.manager.connect(sid, namespace)


async def _run_connect(shim: bool, handler: Any, namespace: str, data: Any) -> list[Any]:
    """Feed one CONNECT to a plain server (stock or shim path); return what was observable."""
    sio = socketio.AsyncServer(async_mode="asgi")
    seen: list[Any] = []

    async def recording(*args: Any) -> Any:
        seen.append(("handler", args[1:]))
        return await handler(*args)

    recording.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    sio.on("connect", handler if handler is _legacy else recording)
    if handler is _legacy:
        seen.append(("handler", "legacy"))

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        seen.append(("sent", pkt.packet_type, pkt.namespace, pkt.data))

    sio._send_packet = send_packet
    sio.manager.set_server(sio)
    sio.manager.initialize()
    sio.environ["eio-1"] = {"REMOTE_ADDR": "test"}
    if shim:

        async def passthrough(original: Any, event: str, namespace: str, *args: Any) -> Any:
            return await original(event, namespace, *args)

        async def on_connect(eio_sid: str, namespace: str, data: Any) -> None:
            await _connect_like_delivery(sio, eio_sid, namespace, data)

        compat.install(sio, on_connect, passthrough)
    await sio._handle_connect("eio-1", namespace, data)
    sid = sio.manager.sid_from_eio_sid("eio-1", namespace or "/")
    seen.append(("connected", sid is not None and sio.manager.is_connected(sid, namespace or "/")))
    return [_without(item, sid) for item in seen]


def _without(item: Any, sid: Any) -> Any:
    if isinstance(item, tuple):
        return tuple(_without(part, sid) for part in item)
    if isinstance(item, dict):
        return {k: _without(v, sid) for k, v in item.items()}
    return "<sid>" if sid is not None and item == sid else item


@pytest.mark.parametrize(
    ("handler", "namespace", "data"),
    [
        (_stock_accept, "/", {"token": "t"}),
        (_stock_accept, "/", None),
        (_legacy, "/", None),
        (_false, "/", {"token": "t"}),
        (_refused, "/", None),
        (_builtin_refused, "/", {"a": 1}),
        (_stock_accept, "/nowhere", None),
    ],
)
async def test_the_connect_shim_does_what_python_socketio_does(
    handler: Any, namespace: str, data: Any
) -> None:
    """Same reply packet, same handler arguments, same refusal, same registration as the stock
    ``_handle_connect``: a release that changes its connect handling fails here."""
    stock = await _run_connect(False, handler, namespace, data)
    shim = await _run_connect(True, handler, namespace, data)
    assert shim == stock


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
    assert compat.serves_namespace(sio, "/chat")
    assert not compat.serves_namespace(sio, "/other")
    assert compat.serves_namespace(socketio.AsyncServer(async_mode="asgi", namespaces="*"), "/any")


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="recovery_window"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="memory://", recovery_window=0)
    with pytest.raises(ConfigurationError, match="AsyncServer"):
        Delivery(socketio.Server(), store="memory://")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="page_size"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="memory://", page_size=0)
    with pytest.raises(ConfigurationError, match="nosuch"):
        Delivery(socketio.AsyncServer(async_mode="asgi"), store="nosuch://")
