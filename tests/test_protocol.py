"""The connection core on its own: transitions checked, outbox bounded, frames in, outcomes out."""

from __future__ import annotations

import json

import pytest

from wsevents import Channel, JSONCodec, Limits, MessagePackCodec
from wsevents._dispatch import Refusal, Router
from wsevents._outcomes import Close, ConnectionState, InvalidState, Pushed
from wsevents._protocol import ConnectionCore
from wsevents._stats import Stats


def make_core(**limits: object) -> tuple[ConnectionCore, Stats]:
    channel = Channel("/c")

    @channel.on("echo", reply=int)
    async def echo(data: int) -> int:
        return data

    stats = Stats()
    router = Router(channel, JSONCodec(), MessagePackCodec())
    core = ConnectionCore(router, Limits(**limits), stats)  # type: ignore[arg-type]
    return core, stats


def test_a_new_connection_holds_frames_until_it_is_accepted() -> None:
    core, _ = make_core()
    assert core.push("a") is Pushed.HELD
    assert core.next_item() is None  # nothing goes out before the accept
    assert core.accept(now=1.0)
    assert core.state is ConnectionState.OPEN
    assert core.next_item() == "a"


def test_the_accept_is_the_first_send_and_only_one() -> None:
    core, _ = make_core()
    core.accepting()
    assert core.sending
    with pytest.raises(InvalidState, match="cannot send the accept"):
        core.accepting()
    core.sent()
    assert core.accept(now=0.0)


def test_an_abort_s_close_frame_is_sent_once_and_not_after_a_queued_close() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    assert core.abort_close() is None  # not aborted
    core.abort(1013, "send queue full")
    assert core.abort_close() == Close(1013, "send queue full")
    assert core.close_sent
    assert core.abort_close() is None  # once
    queued, _ = make_core()
    queued.accept(now=0.0)
    queued.close(1000, "bye")
    assert queued.next_item() == Close(1000, "bye")
    assert queued.close_sent
    queued.abort(1011, "internal error")
    assert queued.abort_close() is None  # the client has a close frame already


def test_accepting_twice_or_closing_before_the_accept_is_refused() -> None:
    core, _ = make_core()
    with pytest.raises(InvalidState, match="before it is accepted"):
        core.close(1000, "")
    core.accept(now=0.0)
    with pytest.raises(InvalidState, match="cannot accept a connection that is open"):
        core.accept(now=0.0)


def test_an_outbox_that_overflows_before_the_accept_stays_aborted() -> None:
    core, stats = make_core(send_queue=2)
    assert [core.push(f) for f in "abc"] == [Pushed.HELD, Pushed.HELD, Pushed.OVERFLOWED]
    assert not core.accept(now=0.0)
    assert core.state is ConnectionState.CLOSING
    assert core.aborted == Close(1013, "send queue full")
    assert core.push("d") is Pushed.DROPPED
    assert stats.slow_consumers_dropped == 1


def test_a_frame_with_nothing_ahead_of_it_is_sent_at_once_and_the_rest_queue_behind_it() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    assert core.push("a") is Pushed.SEND  # the caller sends it: no writer, no hand-off
    assert core.sending
    assert [core.push("b"), core.push("c")] == [Pushed.QUEUED, Pushed.QUEUED]
    assert core.next_item() is None  # one send at a time: "a" is still going out
    assert core.sent()
    assert core.next_item() == "b"
    assert core.push("d") is Pushed.QUEUED  # "c" is ahead of it
    assert core.sent()
    assert [core.next_item(), core.sent(), core.next_item(), core.sent()] == ["c", True, "d", False]
    assert core.push("e") is Pushed.SEND  # all out: the next one goes at once again


def test_a_close_goes_after_the_frames_queued_before_it() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    assert core.push("a") is Pushed.SEND
    core.push("b")
    assert core.close(1000, "bye")
    assert core.push("late") is Pushed.DROPPED
    assert core.next_item() is None  # one send at a time
    assert core.sent()
    assert core.next_item() == "b"
    assert core.sent()  # the close still waits in the outbox
    assert core.next_item() == Close(1000, "bye")


def test_the_first_abort_wins_and_a_closed_connection_cannot_be_aborted() -> None:
    core, stats = make_core()
    core.accept(now=0.0)
    core.push("a")
    core.push("b")
    assert core.abort(1009, "message too big")
    assert not core.abort(1013, "later")
    assert core.aborted == Close(1009, "message too big")
    assert core.next_item() is None  # the outbox went with the abort
    core.disconnected(1009)
    assert not core.abort(1000, "")
    with pytest.raises(InvalidState):
        core.disconnected(1000)
    assert stats.closed == {1009: 1}


def test_a_reply_may_skip_the_writer_only_when_nothing_is_ahead_of_it() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    assert core.send_now()
    assert not core.send_now()  # a send is under way
    core.sent()
    core.push("sending")
    core.push("queued")
    core.sent()
    assert not core.send_now()  # it would overtake the queued frame


def test_a_failed_send_drops_the_outbox_and_closes() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    assert core.push("a") is Pushed.SEND
    core.push("b")
    core.send_failed()
    assert core.state is ConnectionState.CLOSING
    assert core.next_item() is None


def test_frames_in_become_a_call_or_a_refusal() -> None:
    core, _ = make_core()
    core.accept(now=0.0)
    call = core.receive(json.dumps({"event": "echo", "data": 3, "id": 1}), 0)
    handler, data, request_id, trace = call  # type: ignore[misc]
    assert (handler.event, data, request_id, trace) == ("echo", 3, 1, None)
    frame = {"event": "echo", "data": 4, "traceparent": "00-ab", "tracestate": "k=v"}
    _, _, _, trace = core.receive(json.dumps(frame), 0)  # type: ignore[misc]
    assert trace == ("00-ab", "k=v")  # as it came: the telemetry checks it
    refusal = core.receive('{"event":"nope","id":2}', 0.0)
    assert refusal == Refusal("unknown_event", "no handler for event 'nope'", None, 2)


def test_a_frame_over_the_size_limit_aborts_with_1009() -> None:
    core, _ = make_core(max_message_bytes=100)
    core.accept(now=0.0)
    assert core.receive(json.dumps({"event": "echo", "data": "x" * 200}), 0.0) is None
    assert core.aborted == Close(1009, "message too big")
    assert core.receive('{"event":"echo","data":1}', 0.0) is None  # closing: not handled


def test_the_rate_limit_refuses_then_aborts_with_1008() -> None:
    core, stats = make_core(rate=1.0, burst=2)
    core.accept(now=0.0)
    frame = '{"event":"echo","data":1,"id":"k"}'
    outcomes = [core.receive(frame, 0.0) for _ in range(5)]
    assert [type(o).__name__ for o in outcomes] == [
        "tuple",
        "tuple",
        "Refusal",
        "Refusal",
        "NoneType",
    ]
    # The refused event is named (it is registered): the telemetry gives it a span.
    assert outcomes[2] == Refusal("rate_limited", "too many events", None, "k", "echo")
    assert core.aborted == Close(1008, "rate limit exceeded")
    assert stats.rate_limited == 3


def test_time_closes_a_stalled_send_and_an_idle_connection() -> None:
    stalled, _ = make_core(send_timeout=1.0)
    stalled.accept(now=0.0)
    assert stalled.send_now()
    assert stalled.check_time(10.0) is None  # the first look starts the clock
    assert stalled.check_time(10.5) is None
    assert stalled.check_time(11.5) == Close(1013, "send timed out: the client is not reading")
    idle, _ = make_core(idle_timeout=5.0)
    idle.accept(now=0.0)
    idle.receive('{"event":"echo","data":1}', 3.0)
    assert idle.check_time(7.0) is None
    assert idle.check_time(8.5) == Close(1000, "idle")
