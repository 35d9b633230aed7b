"""The client's per-namespace rules (``client_state.NamespaceState``), without sockets or asyncio.

Each test drives the state as the wire would (CONNECT sent, reply, events, disconnects) and reads
what the client would send and what its handlers would get. The property tests at the end run
any sequence of those and check the invariants against a small model.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio_delivery.client_state import NOT_RECOVERED, Incoming, Mode, NamespaceState
from socketio_delivery.wire import RESYNC_EVENT


def opened(state: NamespaceState, pid: str | None = "p1", auth: Any = None) -> Any:
    """Send a CONNECT, get its reply (with ``pid``), flush nothing: the namespace is open."""
    payload = state.connect_sent(auth)
    assert state.connect_replied({"sid": "s1", "pid": pid} if pid else {"sid": "s1"})
    assert state.flush_next() is None
    assert state.phase == "open"
    return payload


# ---- phase and epoch ------------------------------------------------------------------------------


def test_phases_follow_connect_reply_flush_and_disconnect() -> None:
    state = NamespaceState()
    assert (state.phase, state.epoch) == ("down", 0)
    state.connect_sent({})
    assert (state.phase, state.epoch) == ("connecting", 1)
    state.connect_replied({"sid": "s", "pid": "p"})
    assert state.phase == "flushing"
    assert state.flush_next() is None
    assert state.phase == "open"
    state.went_down()
    assert (state.phase, state.epoch) == ("down", 2)


def test_a_connect_sent_while_up_first_takes_the_old_connection_down() -> None:
    state = NamespaceState()
    opened(state)
    state.event_arrived(None, ["ev", "o1"])
    epoch = state.epoch
    assert state.connect_sent({}) == {"pid": "p1", "offset": "o1"}
    assert state.phase == "connecting"
    assert state.epoch == epoch + 2  # the implicit disconnect, then the CONNECT


def test_a_duplicate_reply_changes_nothing() -> None:
    state = NamespaceState()
    opened(state, pid="p1")
    assert state.connect_replied({"sid": "s2", "pid": "p2"}) is False
    assert (state.pid, state.phase) == ("p1", "open")


def test_flush_next_outside_a_flush_changes_nothing() -> None:
    state = NamespaceState()
    state.connect_sent({})
    assert state.flush_next() is None
    assert state.phase == "connecting"


# ---- what a (re)connect sends -----------------------------------------------------------------------


def test_first_connect_sends_only_the_app_auth() -> None:
    state = NamespaceState()
    assert state.connect_sent({"token": "t"}) == {"token": "t"}
    assert state.connect_sent(None) == {}
    assert state.sent_pid is None


def test_reconnect_sends_pid_then_pid_and_offset_and_the_app_auth_wins() -> None:
    state = NamespaceState()
    opened(state)
    state.went_down()
    assert state.connect_sent({"token": "t"}) == {"pid": "p1", "token": "t"}  # no event yet
    state.connect_replied({"sid": "s1", "pid": "p1"})
    state.flush_next()
    state.event_arrived(None, ["ev", "o9"])
    state.went_down()
    assert state.connect_sent(None) == {"pid": "p1", "offset": "o9"}
    assert state.sent_pid == "p1"
    state.went_down()
    assert state.connect_sent({"offset": "mine"}) == {"pid": "p1", "offset": "mine"}


def test_auth_that_is_not_a_dict_is_sent_as_is_without_recovery() -> None:
    state = NamespaceState()
    opened(state)
    state.went_down()
    assert state.connect_sent("a string") == "a string"
    assert state.sent_pid is None
    state.connect_replied({"sid": "s2", "pid": "p2"})
    assert state.recovery_failed is None  # it did not ask


def test_resume_fields_say_what_a_connect_would_add() -> None:
    state = NamespaceState()
    assert state.resume_fields() == {}
    opened(state)
    assert state.resume_fields() == {"pid": "p1"}
    state.event_arrived(None, ["ev", "o1"])
    assert state.resume_fields() == {"pid": "p1", "offset": "o1"}


# ---- recovered / recovery_failed ---------------------------------------------------------------------


def test_the_reply_pid_says_whether_the_session_came_back() -> None:
    state = NamespaceState()
    opened(state, pid="p1")
    assert (state.recovered, state.recovery_failed) == (False, None)
    state.event_arrived(None, ["ev", "o1"])
    state.went_down()

    opened(state, pid="p1")
    assert (state.recovered, state.recovery_failed, state.offset) == (True, None, "o1")
    state.went_down()

    opened(state, pid="p2")
    assert (state.recovered, state.recovery_failed) == (False, NOT_RECOVERED)
    assert state.offset is None  # it belonged to the old session
    assert state.pid == "p2"
    state.went_down()

    opened(state, pid="p2")  # the new session recovers in its turn
    assert (state.recovered, state.recovery_failed) == (True, None)


def test_a_reply_without_pid_after_asking_is_a_failed_recovery() -> None:
    state = NamespaceState()
    opened(state, pid="p1")
    state.went_down()
    opened(state, pid=None)
    assert (state.recovered, state.recovery_failed, state.pid) == (False, NOT_RECOVERED, None)


@pytest.mark.parametrize("pid", ["", 7, None, ["p1"]])
def test_a_reply_pid_that_is_not_a_string_counts_as_none(pid: Any) -> None:
    state = NamespaceState()
    state.connect_sent({})
    state.connect_replied({"sid": "s", "pid": pid})
    assert (state.pid, state.server_offsets) == (None, False)
    state.connect_sent({})
    state.connect_replied("not a dict")
    assert state.pid is None


def test_the_resync_event_gives_the_servers_reason_to_a_failed_recovery() -> None:
    state = NamespaceState()
    opened(state, pid="p1")
    state.went_down()
    opened(state, pid="p2")
    got = state.event_arrived(None, [RESYNC_EVENT, {"reason": "offset no longer available"}])
    assert got == Incoming(None, [RESYNC_EVENT, {"reason": "offset no longer available"}])  # no offset
    assert state.resync_reason == "offset no longer available"
    assert state.recovery_failed == "offset no longer available"


def test_a_resync_while_connected_is_not_a_failed_recovery() -> None:
    state = NamespaceState()
    opened(state)
    state.event_arrived(None, [RESYNC_EVENT, {"no": "reason"}])
    assert (state.resync_reason, state.recovery_failed) == ("unknown", None)
    state.went_down()
    opened(state)
    assert state.resync_reason is None  # per connection


# ---- offsets --------------------------------------------------------------------------------------


def test_the_offset_is_stripped_only_from_stored_events_of_a_recovery_server() -> None:
    state = NamespaceState()
    opened(state)
    assert state.event_arrived(None, ["ev", "a", "o1"]) == Incoming(None, ["ev", "a"])
    assert state.event_arrived(3, ["asked", "a", "x"]) == Incoming(3, ["asked", "a", "x"])  # wants an ack
    assert state.event_arrived(None, ["ev", {"x": 1}]) == Incoming(None, ["ev", {"x": 1}])  # no string last
    assert state.event_arrived(None, ["ev", "o2"]) == Incoming(None, ["ev"])  # a zero-argument event
    assert state.event_arrived(None, ["ev"]) == Incoming(None, ["ev"])
    assert state.event_arrived(None, []) == Incoming(None, [])
    assert state.offset == "o2"

    plain = NamespaceState()
    opened(plain, pid=None)  # no pid in the reply: the server appends nothing
    assert plain.event_arrived(None, ["ev", "a", "b"]) == Incoming(None, ["ev", "a", "b"])
    assert plain.offset is None


def test_the_callers_list_is_not_changed() -> None:
    state = NamespaceState()
    opened(state)
    data = ["ev", "a", "o1"]
    state.event_arrived(None, data)
    assert data == ["ev", "a", "o1"]


def test_events_before_the_reply_are_held_then_flushed_in_order_with_their_offsets() -> None:
    state = NamespaceState()
    opened(state)
    state.event_arrived(None, ["ev", "o1"])
    state.went_down()
    state.connect_sent({})
    assert state.event_arrived(None, ["missed", 1, "o2"]) is None
    assert state.event_arrived(None, ["missed", 2, "o3"]) is None
    assert (state.held, state.offset) == (2, "o1")  # not yet: the reply decides
    state.connect_replied({"sid": "s1", "pid": "p1"})
    assert state.event_arrived(None, ["live", "o4"]) is None  # during the flush: keeps its place
    assert state.flush_next() == Incoming(None, ["missed", 1])
    assert state.offset == "o2"
    assert state.flush_next() == Incoming(None, ["missed", 2])
    assert state.flush_next() == Incoming(None, ["live"])
    assert state.flush_next() is None
    assert (state.phase, state.offset, state.held) == ("open", "o4", 0)


def test_a_disconnect_forgets_the_held_events() -> None:
    state = NamespaceState()
    state.connect_sent({})
    state.event_arrived(None, ["ev", "o1"])
    state.went_down()
    assert state.held == 0
    state.connect_sent({})
    state.connect_replied({"sid": "s", "pid": "p"})
    assert state.flush_next() is None


def test_explicit_disconnect_ends_the_session_and_final_closes() -> None:
    state = NamespaceState()
    opened(state)
    state.event_arrived(None, ["ev", "o1"])
    state.went_down(final=False)  # a drop: kept
    assert state.resume_fields() == {"pid": "p1", "offset": "o1"}
    state.went_down(explicit=True, final=True)
    assert state.resume_fields() == {}
    assert state.closed is True
    state.reopen()
    assert state.closed is False
    state.went_down(final=True)
    state.connect_sent({})  # a CONNECT reopens too
    assert state.closed is False


# ---- recipe mode ------------------------------------------------------------------------------------


def test_recipe_mode_remembers_envelope_ids_and_sends_no_pid() -> None:
    state = NamespaceState("recipe")
    state.set_offset(41)
    assert state.connect_sent({"t": 1}) == {"offset": 41, "t": 1}
    state.connect_replied({"sid": "s1"})
    state.flush_next()
    assert state.event_arrived(None, ["chat", {"id": 42, "data": "hi"}]) == Incoming(
        None, ["chat", {"id": 42, "data": "hi"}]
    )  # passed as is
    assert state.offset == 42
    state.event_arrived(None, ["chat", {"id": True, "data": "x"}])  # a bool is not an id
    state.event_arrived(None, ["chat", {"id": 50, "data": "x", "more": 1}])  # not an envelope
    state.event_arrived(7, ["chat", {"id": 51, "data": "x"}])  # wants an ack
    assert state.offset == 42
    state.went_down(explicit=True, final=True)
    assert state.connect_sent({}) == {"offset": 42}  # kept across disconnect()


def test_recipe_mode_with_a_server_that_appends_offsets_strips_and_keeps_them() -> None:
    state = NamespaceState("recipe")
    state.connect_sent({})
    state.connect_replied({"sid": "s1", "pid": "p1"})
    state.flush_next()
    assert state.event_arrived(None, ["chat", {"id": "o1", "data": 1}, "o1"]) == Incoming(
        None, ["chat", {"id": "o1", "data": 1}]
    )
    assert state.event_arrived(None, ["plain", "x", "o2"]) == Incoming(None, ["plain", "x"])
    assert state.offset == "o2"
    state.went_down()
    assert state.connect_sent({}) == {"offset": "o2"}  # never a pid
    state.connect_replied({"sid": "s2", "pid": "p2"})
    assert state.offset == "o2"  # recipe: a new session keeps the position
    assert state.recovery_failed is None


@pytest.mark.parametrize("bad", [1.5, True, b"x", ["o"]])
def test_set_offset_takes_a_str_an_int_or_none(bad: Any) -> None:
    state = NamespaceState()
    with pytest.raises(TypeError):
        state.set_offset(bad)
    state.set_offset("o")
    state.set_offset(3)
    state.set_offset(None)
    assert state.offset is None


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        NamespaceState("other")  # type: ignore[arg-type]


# ---- any sequence: the invariants ----------------------------------------------------------------

Step = tuple[str, Any]

steps = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from([None, {"token": "t"}, {"offset": "mine"}])),
    st.tuples(st.just("reply"), st.sampled_from([None, "same", "p1", "p2", "p3"])),
    st.tuples(st.just("event"), st.tuples(st.sampled_from([None, 5]), st.integers(0, 3))),
    st.tuples(st.just("envelope"), st.integers(0, 10**6)),
    st.tuples(st.just("resync"), st.sampled_from(["expired", None])),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("down"), st.sampled_from(["drop", "explicit", "final"])),
)


def run(mode: Mode, sequence: list[Step]) -> None:
    """Play ``sequence`` on a state and check every invariant after each step.

    The server numbers its positions with one counter: offsets ``o000001``, ``o000002``... and,
    in envelopes, the integer ids 3, 4... (increasing, as real ones are). The state's position
    never goes back: it only moves forward, or is forgotten (``None``) with its session.
    """
    state = NamespaceState(mode)
    counter = 0
    for kind, arg in sequence:
        before = state.offset
        if kind == "connect":
            payload = state.connect_sent(arg)
            check_connect_payload(state, mode, arg, payload)
        elif kind == "reply":
            pid = state.sent_pid if arg == "same" else arg
            if state.connect_replied({"sid": "s", "pid": pid} if pid else {"sid": "s"}):
                assert state.recovered == (pid is not None and pid == state.sent_pid)
                assert (state.recovery_failed is not None) == (
                    state.sent_pid is not None and not state.recovered
                )
                if mode == "recovery" and not state.recovered:
                    assert state.offset is None
        elif kind == "flush":
            got = state.flush_next()
            if got is not None:
                check_handed_over(state, got)
        elif kind == "down":
            state.went_down(explicit=arg in ("explicit", "final"), final=arg == "final")
            assert (state.phase, state.held) == ("down", 0)
            if mode == "recovery" and arg != "drop":
                assert (state.pid, state.offset, state.resume_fields()) == (None, None, {})
        else:
            counter += 1
            ack_id, data = packet(kind, arg, counter)
            got = state.event_arrived(ack_id, data)
            if got is not None:
                check_handed_over(state, got)
                if ack_id is not None:
                    assert got == Incoming(ack_id, data)  # passed as is
            else:
                assert state.phase in ("connecting", "flushing")
                assert state.offset == before  # held: nothing remembered yet
        check_always(state, mode, before)


def packet(kind: str, arg: Any, counter: int) -> tuple[int | None, list[Any]]:
    offset = f"o{counter:06d}"
    if kind == "event":
        ack_id, nargs = arg
        # the server appends offsets only to events it wants no ack for
        return (ack_id, ["ev", *range(nargs), offset] if ack_id is None else ["ev", *range(nargs), "answer"])
    if kind == "envelope":
        return (None, ["chat", {"id": counter, "data": 1}])
    return (None, [RESYNC_EVENT, {"reason": arg} if arg else {}])


def position(offset: str | int) -> int:
    return int(offset[1:]) if isinstance(offset, str) else offset


def check_handed_over(state: NamespaceState, got: Incoming) -> None:
    """From a server that appends offsets (its reply had a pid), no offset reaches the handlers."""
    if state.server_offsets:
        assert not any(isinstance(a, str) and a.startswith("o0") for a in got.data[1:])


def check_connect_payload(state: NamespaceState, mode: Mode, auth: Any, payload: Any) -> None:
    app_auth = auth or {}
    assert {k: payload[k] for k in app_auth} == app_auth  # the app's auth is sent and wins
    assert state.phase == "connecting"
    if mode == "recipe" or state.pid is None:
        assert "pid" not in payload
        assert state.sent_pid is None
    else:
        assert payload["pid"] == state.pid == state.sent_pid
    if "offset" not in app_auth:
        expected = None if mode == "recovery" and state.pid is None else state.offset
        assert payload.get("offset") == expected


def check_always(state: NamespaceState, mode: Mode, before: str | int | None) -> None:
    assert state.held == 0 or state.phase in ("connecting", "flushing")
    assert state.recovered is False or state.recovery_failed is None
    if before is not None and state.offset is not None:
        assert position(state.offset) >= position(before)  # never backwards
    assert state.offset != "answer"  # never taken from an event that wants an ack
    if mode == "recovery":
        assert state.offset is None or isinstance(state.offset, str)
        assert set(state.resume_fields()) in (set(), {"pid"}, {"pid", "offset"})
        assert state.offset is None or state.pid is not None or state.phase != "open"
    else:
        assert "pid" not in state.resume_fields()
        assert state.resume_fields() == ({} if state.offset is None else {"offset": state.offset})


@settings(max_examples=400, deadline=None)
@given(st.lists(steps, max_size=40))
def test_any_sequence_keeps_offsets_monotone_and_the_reconnect_auth_consistent(sequence: list[Step]) -> None:
    run("recovery", sequence)


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=40))
def test_any_sequence_in_recipe_mode_never_sends_a_pid(sequence: list[Step]) -> None:
    run("recipe", sequence)
