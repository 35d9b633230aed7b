"""Recovery and processed-once edge cases (issue 3) over a real uvicorn server.

The stock python-socketio ``AsyncClient`` plays the client, with the few lines a CSR client
needs (it keeps its ``pid`` and last offset and presents them when it connects again). It
never reconnects by itself: a test says when it comes back, so what the server saw in the
meantime is known. A "drop" closes the client's transport on the server side without a
goodbye, as a network failure would.

The stores are ``MemoryEventStore`` subclasses that record the reads Delivery makes or fail
on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import pytest
import socketio
from _serving import serve_asgi, until
from socketio_delivery import RESYNC_EVENT, Delivery, StoreUnavailableError
from socketio_delivery._compat.server import drop_transport
from socketio_delivery.memory import MemoryEventStore
from socketio_delivery.store import DEFAULT_PAGE_SIZE, Event, Reservation


class EdgeStore(MemoryEventStore):
    """The memory store, recording every ``fetch_since`` and able to refuse ``reserve_key``."""

    def __init__(self) -> None:
        super().__init__()
        #: (limit, rooms) of every fetch_since call, in order
        self.fetches: list[tuple[int, tuple[str, ...] | None]] = []
        #: while set, reserve_key raises StoreUnavailableError (the store is down for dedup)
        self.keys_down = False

    async def fetch_since(
        self,
        stream: str,
        offset: str | None,
        *,
        rooms: Collection[str] | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Event]:
        self.fetches.append((limit, None if rooms is None else tuple(rooms)))
        return await super().fetch_since(stream, offset, rooms=rooms, limit=limit)

    async def reserve_key(self, key: str, lease: float) -> Reservation:
        if self.keys_down:
            raise StoreUnavailableError("the store is down (test)")
        return await super().reserve_key(key, lease)


class App:
    """A Delivery app: joins ``auth["room"]``, refuses revoked tokens, counts ``order`` runs."""

    def __init__(self, store: EdgeStore, **options: Any) -> None:
        self.store = store
        self.sio = socketio.AsyncServer(async_mode="asgi")
        self.delivery = Delivery(self.sio, store=store, **options)
        self.connects: list[tuple[str, bool, str | None]] = []
        self.revoked: set[str] = set()
        self.runs: Counter[str] = Counter()
        sio, delivery = self.sio, self.delivery

        @sio.event
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            auth = auth if isinstance(auth, dict) else {}
            self.connects.append((sid, delivery.recovered(sid), delivery.recovery_failed(sid)))
            if auth.get("token") in self.revoked:  # an auth check that holds on every connection
                raise socketio.exceptions.ConnectionRefusedError("token revoked")
            if not delivery.recovered(sid) and isinstance(auth.get("room"), str):
                await sio.enter_room(sid, auth["room"])

        @sio.event
        async def order(sid: str, payload: dict[str, Any]) -> Any:
            self.runs[payload["idempotencyKey"]] += 1
            return {"run": self.runs[payload["idempotencyKey"]], "item": payload["item"]}

    def connected(self, sid: str) -> bool:
        return bool(self.sio.manager.is_connected(sid, "/"))

    async def drop(self, sid: str) -> None:
        """Close ``sid``'s transport without a goodbye; return once the server handled it."""
        assert await drop_transport(self.sio, self.sio.manager.eio_sid_from_sid(sid, "/"))
        await until(lambda: not self.connected(sid), "the server to notice the drop")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(**delivery_options)`` -> ``(app, url)``; stopped at the end of the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> tuple[App, str]:
            app = App(EdgeStore(), **options)
            stack.push_async_callback(app.delivery.close)  # after its server stopped
            url = await stack.enter_async_context(serve_asgi(socketio.ASGIApp(app.sio)))
            return app, url

        yield start


class Client:
    """A stock AsyncClient that keeps its pid and last offset; it reconnects only when told."""

    def __init__(self, url: str, auth: dict[str, Any] | None = None) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.auth = auth or {}
        self.pid: str | None = None
        self.offset: str | None = None
        self.recovered = False
        #: (event, first argument) of every event but delivery:resync, in arrival order
        self.received: list[tuple[str, Any]] = []
        self.resyncs: list[Any] = []
        self.connect_errors: list[Any] = []
        original = self.sio._handle_connect

        async def handle_connect(namespace: str, data: Any) -> None:
            pid = (data or {}).get("pid")
            self.recovered = pid is not None and pid == self.pid
            self.pid = pid
            await original(namespace, data)

        self.sio._handle_connect = handle_connect

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.connect_errors.append(data)

        @self.sio.on("*")
        async def any_event(event: str, *args: Any) -> None:
            if event == RESYNC_EVENT:
                self.resyncs.append(args[0])
                return
            *payload, self.offset = args
            self.received.append((event, payload[0] if len(payload) == 1 else payload))

    def recovery_auth(self) -> dict[str, Any]:
        """What the JS client sends: its own auth plus ``pid`` and ``offset`` once it has them."""
        extra = {"pid": self.pid, **({"offset": self.offset} if self.offset else {})} if self.pid else {}
        return {**self.auth, **extra}

    async def connect(self, auth: dict[str, Any] | None = None) -> None:
        """Connect with :meth:`recovery_auth` (or ``auth``); raises ConnectionError when refused."""
        await until(lambda: self.sio.eio.state == "disconnected", "the client to be disconnected")
        await asyncio.wait_for(
            self.sio.connect(
                self.url, auth=self.recovery_auth() if auth is None else auth, transports=["websocket"]
            ),
            10,
        )

    def data(self, event: str) -> list[Any]:
        return [data for name, data in self.received if name == event]

    async def wait_for(self, event: str, count: int) -> list[Any]:
        await until(lambda: len(self.data(event)) >= count, f"{count} {event!r} events")
        return self.data(event)

    async def wait_resync(self) -> Any:
        await until(lambda: bool(self.resyncs), "a delivery:resync event")
        return self.resyncs[0]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Client]]:
    """``clients(url, auth)`` -> a :class:`Client`, disconnected at the end of the test."""
    made: list[Client] = []

    def make(url: str, auth: dict[str, Any] | None = None) -> Client:
        made.append(Client(url, auth))
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def away_with_missed_events(app: App, client: Client, missed: range) -> str:
    """Connect ``client`` (room r1), let it get tick 0, drop it, emit ``missed`` ticks; its sid."""
    await client.connect()
    sid: str = client.sio.get_sid()
    await app.sio.emit("tick", 0, room="r1")
    assert await client.wait_for("tick", 1) == [0]
    await app.drop(sid)
    await until(lambda: client.sio.eio.state == "disconnected", "the client to see the drop")
    for n in missed:
        await app.sio.emit("tick", n, room="r1")
    return sid


async def test_auth_check_refuses_a_recovering_socket_and_the_session_waits_for_it(
    serve: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    """A connect handler that refuses a recovered socket sends nothing; the session stays claimable."""
    app, url = await serve()
    client = clients(url, {"room": "r1", "token": "t1"})
    sid = await away_with_missed_events(app, client, range(1, 4))
    pid, offset = client.pid, client.offset

    app.revoked.add("t1")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    assert client.connect_errors == [{"message": "token revoked"}]
    assert app.connects[-1] == (sid, True, None)  # it was recovering when it was refused
    assert client.data("tick") == [0]  # none of the missed events reached it
    assert not app.connected(sid)

    app.revoked.discard("t1")
    assert (client.pid, client.offset) == (pid, offset)  # the same recovery fields again
    await client.connect()
    assert client.recovered
    assert client.sio.get_sid() == sid
    assert await client.wait_for("tick", 4) == [0, 1, 2, 3]
    assert app.connects[-1] == (sid, True, None)
    await app.sio.emit("tick", 4, room="r1")
    assert await client.wait_for("tick", 5) == [0, 1, 2, 3, 4]


async def test_keyed_emit_while_the_store_is_down_runs_once_when_it_is_back(
    serve: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    """No ack (so the client retries) and no run while keys cannot be reserved; then exactly one run."""
    app, url = await serve()
    client = clients(url)
    await client.connect()
    payload = {"idempotencyKey": "k-down", "item": 7}

    app.store.keys_down = True
    for _ in range(2):
        with pytest.raises(socketio.exceptions.TimeoutError):
            await client.sio.call("order", payload, timeout=0.5)
    assert app.runs["k-down"] == 0

    app.store.keys_down = False
    first = await client.sio.call("order", payload, timeout=10)
    assert first == {"run": 1, "item": 7}
    again = await client.sio.call("order", payload, timeout=10)
    assert again == first  # the recorded ack
    assert app.runs["k-down"] == 1


def replay_fetches(store: EdgeStore, sid: str, since: int) -> list[int]:
    """The limits of the replay's reads after ``store.fetches[since]`` (they filter on the sid)."""
    return [limit for limit, rooms in store.fetches[since:] if rooms is not None and sid in rooms]


async def test_session_recovery_reads_the_missed_events_in_bounded_pages(
    serve: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    app, url = await serve(page_size=7)
    client = clients(url, {"room": "r1"})
    sid = await away_with_missed_events(app, client, range(1, 101))
    since = len(app.store.fetches)
    await client.connect()
    assert client.recovered
    assert client.sio.get_sid() == sid
    assert await client.wait_for("tick", 101) == list(range(101))
    assert all(limit <= 7 for limit, _ in app.store.fetches), app.store.fetches
    assert len(replay_fetches(app.store, sid, since)) >= 15  # 100 events, 7 at a time


async def test_explicit_recipe_reads_the_missed_events_in_bounded_pages(
    serve: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    app, url = await serve(page_size=7)
    anchor = await app.delivery.publish("news", "anchor", room="r1")  # the last id the client kept
    for n in range(100):
        await app.delivery.publish("news", n, room="r1")
    since = len(app.store.fetches)
    client = clients(url)
    await client.connect({"room": "r1", "offset": anchor})
    news = await client.wait_for("news", 100)
    assert [item["data"] for item in news] == list(range(100))
    assert all(isinstance(item["id"], str) and item["id"] > anchor for item in news)
    assert all(limit <= 7 for limit, _ in app.store.fetches), app.store.fetches
    assert len(replay_fetches(app.store, client.sio.get_sid(), since)) >= 15
    assert not client.resyncs


@pytest.mark.parametrize("offset", [{"$gt": ""}, "9" * 100_000, 12345], ids=["operator", "100k-chars", "int"])
async def test_malformed_offset_with_a_real_pid_does_not_take_the_session(
    serve: Callable[..., Any],
    clients: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
    offset: Any,
) -> None:
    """A new session and a resync for the bad request; the real client still recovers afterwards."""
    app, url = await serve()
    owner = clients(url, {"room": "r1"})
    sid = await away_with_missed_events(app, owner, range(1, 4))
    assert owner.pid is not None

    intruder = clients(url, {"room": "r1"})
    with caplog.at_level(logging.WARNING, logger="socketio_delivery"):
        await intruder.connect({"room": "r1", "pid": owner.pid, "offset": offset})
        assert await intruder.wait_resync() == {"reason": "malformed offset"}
    assert not intruder.recovered
    assert intruder.pid != owner.pid
    assert intruder.sio.get_sid() != sid
    assert app.connects[-1] == (intruder.sio.get_sid(), False, "malformed offset")
    assert intruder.data("tick") == []  # none of the owner's missed events
    assert "connection to / did not recover: malformed offset" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]
    await intruder.close()

    await owner.connect()
    assert owner.recovered
    assert owner.sio.get_sid() == sid
    assert await owner.wait_for("tick", 4) == [0, 1, 2, 3]
    assert not owner.resyncs


async def test_a_socket_idle_longer_than_the_recovery_window_still_recovers(
    serve: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    """Better than Node: an idle socket whose last event is older than the window recovers.

    The window counts from the drop; while connected the session is renewed in the store,
    and stays locked (leased) for its connection: after many leases, another use of its
    pid still recovers nothing.
    """
    app, url = await serve(recovery_window=1.0, session_lease=0.6)
    client = clients(url, {"room": "r1"})
    await client.connect()
    sid = client.sio.get_sid()
    await app.sio.emit("tick", 0, room="r1")
    assert await client.wait_for("tick", 1) == [0]
    await asyncio.sleep(3.0)  # idle for three recovery windows (five session leases)

    intruder = clients(url)
    with contextlib.suppress(socketio.exceptions.ConnectionError, asyncio.TimeoutError):
        await intruder.connect({"pid": client.pid, "offset": client.offset})
    assert intruder.pid is None  # no CONNECT reply: its transport was closed
    assert all(connect[0] != sid for connect in app.connects[1:])  # the sid was not handed out again
    assert client.sio.connected
    assert client.sio.get_sid() == sid
    await intruder.close()

    await app.drop(sid)
    await until(lambda: client.sio.eio.state == "disconnected", "the client to see the drop")
    await app.sio.emit("tick", 1, room="r1")
    await client.connect()
    assert client.recovered
    assert client.sio.get_sid() == sid
    assert app.connects[-1] == (sid, True, None)
    assert await client.wait_for("tick", 2) == [0, 1]
    assert not client.resyncs
