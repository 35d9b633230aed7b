"""The app fixtures (``delivery_server``, ``delivery_client``), run the way users run them: in a
fresh pytest session made by ``pytester``, on an app module of the kind a user writes."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

ASYNC = "import pytest\npytestmark = pytest.mark.asyncio\n"

# The user's app, as an app factory: the fixtures call it with the configured store URL.
MYAPP = """
import socketio
from socketio_delivery import Delivery


def create_app(store_url):
    sio = socketio.AsyncServer(async_mode="asgi")
    delivery = Delivery(sio, store=store_url)

    @sio.event
    async def connect(sid, environ, auth):
        if not delivery.recovered(sid):
            await sio.enter_room(sid, "news")

    @sio.event
    async def order(sid, data):
        return {"ok": data["item"]}

    return delivery
"""

# The README's and docs/testing.md's example, verbatim.
FIVE_LINES = """
from myapp import create_app


async def test_my_client_misses_nothing_across_a_drop(delivery_server, delivery_client):
    server = await delivery_server(create_app)  # your app, on memory:// (or --delivery-store-url)
    client = await delivery_client(server)
    await client.drop()  # the network fails; the client reconnects and recovers
    await server.sio.emit("news", "while you were away", room="news")
    assert await client.wait_for("news") == ["while you were away"]
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)


def test_the_five_line_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(test_example=ASYNC + FIVE_LINES)
    run(pytester).assert_outcomes(passed=1)


def test_the_example_is_the_one_in_the_docs() -> None:
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    body = FIVE_LINES.split("\n\n\n", 1)[1].strip()
    for doc in (here / "README.md", here.parents[1] / "docs" / "testing.md"):
        assert body in doc.read_text(), f"{doc} does not show the tested example"


def test_an_async_factory_is_refused_with_the_reason() -> None:
    from socketio_delivery_pytest import DeliveryServer

    async def create_app(store_url: str) -> None:
        raise AssertionError("not called")

    with pytest.raises(TypeError, match="an app factory must be a plain function"):
        DeliveryServer(create_app, "memory://")


def test_every_kind_of_app_is_served_and_restarted_on_the_same_port(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(
        ASYNC
        + """
import socketio
from socketio_delivery import RESYNC_EVENT
from myapp import create_app


@pytest.mark.parametrize("kind", ["delivery", "sio", "asgi", "factory"])
async def test_it(delivery_server, delivery_client, kind):
    delivery = create_app("memory://")
    app = {
        "delivery": delivery,
        "sio": delivery.sio,
        "asgi": socketio.ASGIApp(delivery.sio, on_shutdown=delivery.close),
        "factory": create_app,
    }[kind]
    server = await delivery_server(app)
    assert server.url.startswith("http://127.0.0.1:") and server.running
    client = await delivery_client(server, ack_timeout=2)
    assert await client.emit("order", {"item": 7}) == {"ok": 7}
    port = server.port
    await server.restart()
    assert server.port == port and server.running
    if kind == "factory":  # a new app on a new memory:// store: a new session, told so
        await client.wait_for(RESYNC_EVENT)
    await server.sio.emit("news", "after the restart", room="news")
    assert await client.wait_for("news") == ["after the restart"]
    assert await client.emit("order", {"item": 8}) == {"ok": 8}
    assert client.recovered is (kind != "factory")
"""
    )
    run(pytester).assert_outcomes(passed=4)


def test_restart_recovers_sessions_on_a_durable_store(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(
        ASYNC
        + """
from myapp import create_app


async def test_it(delivery_server, delivery_client, delivery_store_url):
    assert delivery_store_url.startswith("sqlite:///")
    server = await delivery_server(create_app)
    client = await delivery_client(server)
    sid = client.get_sid()
    await server.stop()
    assert not server.running
    await server.start()  # a new app (the factory), the same store: the session comes back
    await server.sio.emit("news", "after the redeploy", room="news")
    assert await client.wait_for("news") == ["after the redeploy"]
    assert client.recovered and client.get_sid() == sid
"""
    )
    run(pytester, "--delivery-store-url", "sqlite:///{tmp_path}/events.db").assert_outcomes(passed=1)


def test_restart_of_a_factory_on_memory_gives_new_sessions_and_a_resync(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(
        ASYNC
        + """
from socketio_delivery import RESYNC_EVENT
from myapp import create_app


async def test_it(delivery_server, delivery_client):
    server = await delivery_server(create_app)
    client = await delivery_client(server)
    await server.restart()  # a new app with a new, empty memory:// store
    assert len(await client.wait_for(RESYNC_EVENT)) == 1
    assert not client.recovered and client.recovery_failed()
    await server.sio.emit("news", "fresh", room="news")  # the connect handler ran again
    assert await client.wait_for("news") == ["fresh"]
"""
    )
    run(pytester).assert_outcomes(passed=1)


def test_clients_and_servers_are_shut_down_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(
        ASYNC
        + """
import socket
from myapp import create_app

SEEN = {}

async def test_fails(delivery_client, delivery_server):  # requested in the "wrong" order
    server = await delivery_server(create_app)
    SEEN["client"] = await delivery_client(server.url, namespaces=["/"])
    SEEN["port"] = server.port
    raise AssertionError("boom")

def test_closed_anyway():
    assert not SEEN["client"].connected
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", SEEN["port"])) != 0
"""
    )
    run(pytester).assert_outcomes(passed=1, failed=1)


def test_wait_for_says_what_arrived_when_it_times_out(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=MYAPP)
    pytester.makepyfile(
        ASYNC
        + """
from myapp import create_app

async def test_it(delivery_server, delivery_client):
    server = await delivery_server(create_app)
    client = await delivery_client(server)
    await server.sio.emit("other", 1, room="news")
    await client.wait_for("other")
    await client.wait_for("news", timeout=0.2)
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    line = "*TimeoutError: 0 of 1 'news' events on / in 0.2 s; received: ?('other', 1)?"
    result.stdout.fnmatch_lines([line])


def test_app_fixtures_without_pytest_asyncio_say_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(delivery_server):\n    pass\n")
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*delivery_server fixture is async and needs pytest-asyncio*"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuch://x", "*--delivery-store-url: no store is installed for the scheme 'nosuch'*"),
        ("no-scheme-here", "*--delivery-store-url: a store URL looks like 'memory://'*"),
        ("sqlite://host:notaport/x.db", "*--delivery-store-url: cannot parse store URL*"),
    ],
)
def test_a_bad_url_is_one_usage_error_at_startup(pytester: pytest.Pytester, url: str, message: str) -> None:
    pytester.makepyfile(
        ASYNC
        + """
@pytest.mark.parametrize("n", range(3))
async def test_it(delivery_store, n):
    pass
"""
    )
    result = run(pytester, "--delivery-store-url", url)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert result.stderr.str().count("ERROR") == 1
    result.stdout.no_fnmatch_line("*test_it*")


def test_a_bad_ini_url_is_a_usage_error_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndelivery_store_url = nosuch://x\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini delivery_store_url: no store is installed for the scheme 'nosuch'*"])
