"""What the MongoDB store sends, read from the wire with a ``pymongo.monitoring.CommandListener``.

Proves from the real commands (not from the code) that every operation of the store works
on a **standalone** server, with no transaction and no change stream, and that
``fetch_since`` reads are bounded and index-served (``limit``, ``projection``, ``hint``): the
server's own ``explain`` (SecantusDB answers it as mongod does: ``queryPlanner.winningPlan``
and ``executionStats``) shows an ``IXSCAN`` of ``by_room`` examining only the wanted entries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from mongo_server import MongoServer
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent
from socketio_delivery.store import KeyState
from socketio_delivery_mongodb import MongoEventStore

pytestmark = pytest.mark.mongodb

#: Fields a command carries only inside a multi-document transaction (or a retryable write,
#: which a standalone server does not support either).
TRANSACTION_FIELDS = ("txnNumber", "startTransaction", "autocommit")
#: Commands a store that needs a replica set would send.
REPLICA_SET_COMMANDS = ("commitTransaction", "abortTransaction", "watch")


@dataclass
class Recorder(CommandListener):
    """Keeps every command the client starts (name, database, body)."""

    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def started(self, event: CommandStartedEvent) -> None:
        self.commands.append((event.command_name, event.database_name, dict(event.command)))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    def of(self, name: str, collection: str | None = None) -> list[dict[str, Any]]:
        return [c for n, _, c in self.commands if n == name and (collection is None or c[n] == collection)]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.commands}

    @property
    def bodies(self) -> Iterator[Mapping[str, Any]]:
        return (c for _, _, c in self.commands)


@pytest.fixture
async def watched(mongo_server: MongoServer) -> AsyncIterator[tuple[MongoEventStore, Recorder]]:
    """A store on the app's own client, which has the recorder attached."""
    mongo_server.start()  # an earlier test may have left it stopped
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, event_listeners=[recorder])
    store = MongoEventStore(
        client,
        database=f"t_{uuid.uuid4().hex[:12]}",
        max_events=3,
        purge_delay=0,
        retention_interval=None,
    )
    try:
        await store.open()
        yield store, recorder
        await store.close()
    finally:
        await client.close()


async def test_every_operation_runs_on_a_standalone_server_without_transactions_or_change_streams(
    watched: tuple[MongoEventStore, Recorder],
) -> None:
    store, recorder = watched
    hello = await store.database.client.admin.command("hello")
    assert "setName" not in hello, f"the test server must be standalone: {hello}"
    assert hello.get("msg") != "isdbgrid", "the test server must be standalone, not mongos"

    events = [await store.persist("/chat", {"i": i}, rooms=["a"] if i % 2 else ["b"]) for i in range(6)]
    await store.persist("/chat", "everyone")
    assert [e.data for e in await store.fetch_since("/chat", events[0].offset, rooms=["a"])] == [
        {"i": 1},
        {"i": 3},
        {"i": 5},
        "everyone",
    ]
    await store.save_session("pid", {"sid": "s1"}, 30)
    assert await store.claim_session("pid", lease=30) == {"sid": "s1"}
    await store.save_session("pid", {"sid": "s2"}, 30, lease=30)
    await store.save_session("pid", {"sid": "s3"}, 30)
    assert await store.claim_session("pid") == {"sid": "s3"}
    assert (await store.reserve_key("k", 30)).state is KeyState.ACQUIRED
    await store.complete_key("k", {"ok": 1}, 30)
    assert (await store.reserve_key("k", 30)).state is KeyState.DONE
    assert await store.trim("/chat") == 4  # max_events=3 of 7
    await store.trim()  # purge_delay=0: this run deletes them

    names = recorder.names()
    for expected in ("insert", "find", "findAndModify", "update", "delete"):
        assert expected in names, f"no {expected} command recorded: {sorted(names)}"
    for body in recorder.bodies:
        carried = [f for f in TRANSACTION_FIELDS if f in body]
        assert not carried, f"a command carries {carried}: {body}"
    assert not names & set(REPLICA_SET_COMMANDS), sorted(names)
    for body in recorder.of("aggregate"):
        stages = [next(iter(stage)) for stage in body.get("pipeline", [])]
        assert "$changeStream" not in stages, body


async def test_fetch_since_sends_bounded_projected_hinted_finds(
    watched: tuple[MongoEventStore, Recorder],
) -> None:
    store, recorder = watched
    events = [await store.persist("/chat", {"i": i}, rooms=["a"] if i % 2 else ["b"]) for i in range(3)]
    await store.persist("/chat", "everyone")
    for rooms, index, finds in ((None, "by_seq", 1), (["a"], "by_room", 2), ([], "by_room", 1)):
        recorder.commands.clear()
        page = await store.fetch_since("/chat", events[0].offset, rooms=rooms, limit=2)
        assert page, rooms
        reads = recorder.of("find")
        assert reads, "fetch_since sent no find"
        assert recorder.names() == {"find"}, f"fetch_since sends only finds: {sorted(recorder.names())}"
        for body in reads:
            assert body.get("limit"), f"an unbounded find: {body}"
            assert body.get("projection"), f"a find without a projection: {body}"
        on_events = recorder.of("find", "sio_events")
        assert len(on_events) == finds, on_events  # events for everyone (+ one range for the rooms)
        for body in on_events:
            assert body["limit"] == 2
            assert body["hint"] == index
            assert body["sort"] == {"q": 1}
            assert body["filter"]["q"].keys() == {"$gt", "$lte"}, "a closed range of offsets"


def _stages(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every stage of a ``winningPlan`` tree, outermost first."""
    out = [plan]
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), Mapping):
            out += _stages(plan[key])
    for child in plan.get("inputStages", ()):
        out += _stages(child)
    return out


async def test_room_filtered_fetch_is_served_by_the_room_index_per_the_servers_explain(
    watched: tuple[MongoEventStore, Recorder],
) -> None:
    """The exact finds a room-filtered ``fetch_since`` sends, explained by the server: an index scan
    of ``by_room`` ((stream, room, seq)) examining the wanted room's entries, not the stream's."""
    store, recorder = watched
    await store.close()  # reopen without retention: the stream must stay long
    store.options = dataclasses.replace(store.options, max_events=None)
    await store.open()
    for start in range(0, 3000, 500):
        await asyncio.gather(
            *(store.persist("/chat", i, rooms=[f"o{i % 50}"]) for i in range(start, start + 500))
        )
    mine = [await store.persist("/chat", {"mine": i}, rooms=["a"]) for i in range(5)]
    await store.persist("/chat", "everyone")
    recorder.commands.clear()
    page = await store.fetch_since("/chat", None, rooms=["a"])
    assert [e.offset for e in page[:5]] == [e.offset for e in mine]
    finds = recorder.of("find", "sio_events")
    assert len(finds) == 2
    db = store._db  # the store's database, on the recorded client
    for body in finds:
        command = {k: body[k] for k in ("find", "filter", "sort", "limit", "hint", "projection")}
        explained = await db.command("explain", command, verbosity="executionStats")
        stages = _stages(explained["queryPlanner"]["winningPlan"])
        scans = [s for s in stages if s.get("stage") == "IXSCAN"]
        assert scans, f"no index scan: {stages}"
        assert {s.get("indexName") for s in scans} == {"by_room"}, scans
        assert not [s for s in stages if s.get("stage") == "COLLSCAN"], stages
        # What was examined is the wanted room's entries (5) or the broadcast ones (1), not 3,000.
        stats = explained["executionStats"]
        assert stats["totalKeysExamined"] <= 5, stats
        assert stats["totalDocsExamined"] <= 5, stats
