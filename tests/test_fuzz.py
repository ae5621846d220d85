"""Fuzz the decoder and the dispatcher: any input gets an answer that DESIGN.md names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from wsevents import (
    Channel,
    Connection,
    DecodeError,
    EventApp,
    EventError,
    JSONCodec,
    Limits,
    MessagePackCodec,
)

from .test_asgi import ASGIPeer, scope

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ERROR_CODES = {
    "bad_frame", "bad_envelope", "unknown_event", "validation_error", "rate_limited",
    "internal_error", "app_error",
}  # fmt: skip
CLOSE_CODES = {1000, 1001, 1008, 1009, 1011, 1013}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["echo", "item", "boom", "fail", "nope", "error", ""])
        | json_values,
        "data": json_values | st.fixed_dictionaries({"name": st.text(), "n": st.integers()}),
        "id": st.integers() | st.text(max_size=140) | st.none() | json_values,
    },
)


@FUZZ
@given(st.text())
def test_json_decoding_any_text_returns_a_value_or_raises_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        JSONCodec().decode(text)


@FUZZ
@given(st.binary())
def test_msgpack_decoding_any_bytes_returns_a_value_or_raises_decode_error(payload: bytes) -> None:
    try:
        value = MessagePackCodec().decode(payload)
    except DecodeError:
        return
    assert not isinstance(value, float) or math.isfinite(value)


class Item(BaseModel):
    name: str
    n: int


def build() -> EventApp:
    channel = Channel("/c")

    @channel.on("echo", reply=Any)
    async def echo(data: Any) -> Any:
        return data

    @channel.on("item", model=Item, reply=Item)
    async def item(data: Item) -> Item:
        return data

    @channel.on("boom")
    async def boom() -> None:
        raise RuntimeError("handler bug")

    @channel.on("fail")
    async def fail(conn: Connection) -> None:
        raise EventError("app_error", "no", {"nested": [1, 2]})

    return EventApp([channel], title="Fuzz", version="1", limits=Limits(rate=None))


def run(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Feed frames to a fresh app through raw ASGI; return what it sent."""

    async def main() -> list[dict[str, Any]]:
        peer = ASGIPeer(
            {"type": "websocket.connect"},
            *frames,
            {"type": "websocket.disconnect", "code": 1000},
        )
        await asyncio.wait_for(build()(scope(), peer.receive, peer.send), 10)
        return peer.sent

    return asyncio.run(main())


def check_answers(sent: list[dict[str, Any]], frames: int) -> None:
    assert sent[0]["type"] == "websocket.accept"
    answers = 0
    for message in sent[1:]:
        if message["type"] == "websocket.close":
            assert message["code"] in CLOSE_CODES
            return
        assert message["type"] == "websocket.send"
        frame = (
            json.loads(message["text"]) if "text" in message else msgpack.unpackb(message["bytes"])
        )
        assert set(frame) <= {"event", "data", "id"}
        if frame["event"] == "error":
            assert frame["data"]["code"] in ERROR_CODES
            assert "handler bug" not in json.dumps(frame)
        answers += 1
    assert answers <= frames


@FUZZ
@given(st.lists(st.text() | st.binary(), max_size=6))
def test_any_text_or_bytes_in_any_frame(payloads: list[str | bytes]) -> None:
    frames = [
        {"type": "websocket.receive", "text": p}
        if isinstance(p, str)
        else {"type": "websocket.receive", "bytes": p}
        for p in payloads
    ]
    check_answers(run(frames), len(frames))


@FUZZ
@given(st.lists(envelopes | json_values, max_size=6), st.booleans())
def test_any_json_value_in_either_frame_type(values: list[Any], binary: bool) -> None:
    frames = []
    for value in values:
        if binary:
            try:
                frames.append({"type": "websocket.receive", "bytes": msgpack.packb(value)})
            except (OverflowError, ValueError):  # msgpack cannot carry ints beyond 64 bits
                continue
        else:
            text = json.dumps(value)  # NaN and Infinity included: they must be refused
            frames.append({"type": "websocket.receive", "text": text})
    check_answers(run(frames), len(frames))


safe_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["echo", "item", "boom", "fail", "nope", "error", ""]),
            safe_values | st.fixed_dictionaries({"name": st.text(), "n": st.integers(0, 9)}),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_every_request_with_an_id_gets_exactly_one_answer(
    requests: list[tuple[str, Any]], binary: bool
) -> None:
    codec = MessagePackCodec() if binary else JSONCodec()
    key = "bytes" if binary else "text"
    frames = [
        {"type": "websocket.receive", key: codec.encode({"event": e, "data": d, "id": n})}
        for n, (e, d) in enumerate(requests)
    ]
    sent = run(frames)
    # No subprotocol was negotiated: the answers are JSON, whatever the requests were.
    answered = [json.loads(m["text"])["id"] for m in sent if m["type"] == "websocket.send"]
    assert answered == list(range(len(requests)))  # one each, in order
