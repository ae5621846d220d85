"""The one-pass paths (JSON and MessagePack) give the answers of the general path, only faster."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, Literal

import msgpack
import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticSerializationError, from_json, to_json, to_jsonable_python

from wsevents import Channel, DecodeError, EventApp, JSONCodec, Limits, MessagePackCodec
from wsevents._dispatch import decoding_table, trace_of
from wsevents._envelope import BadEnvelope, parse_envelope
from wsevents._onepass import OnePass, is_flat_model, is_plain_model
from wsevents.codecs import EnvelopeDecoder
from wsevents.exceptions import DuplicateKeyError
from wsevents.testing import EventTestClient


class Echo(BaseModel):
    text: str
    n: int


class Reading(BaseModel):
    level: float
    unit: Literal["c", "f"] = "c"
    note: str | None = None
    ok: bool = True


class Inner(BaseModel):
    x: int


class Nested(BaseModel):
    inner: Inner


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int


class Checked(BaseModel):
    a: int

    @model_validator(mode="after")
    def noop(self) -> Checked:
        return self


def make_channel() -> Channel:
    channel = Channel("/c")

    @channel.on("echo", model=Echo, reply=Echo)
    async def echo(data: Echo) -> Echo:
        return data

    @channel.on("read", model=Reading)
    async def read(data: Reading) -> Reading:
        return data

    @channel.on("nested", model=Nested)
    async def nested(data: Nested) -> None:
        return None

    return channel


channel_codec = JSONCodec()
binary_codec = MessagePackCodec()


def text_pass(channel: Channel) -> EnvelopeDecoder:
    """The JSON codec's one-pass decoder for the channel's decoding table."""
    found = channel_codec.envelope_decoder(decoding_table(channel))
    assert found is not None
    return found


def binary_pass(channel: Channel) -> EnvelopeDecoder:
    """The MessagePack codec's one-pass decoder for the channel's decoding table."""
    found = binary_codec.envelope_decoder(decoding_table(channel))
    assert found is not None
    return found


def general(channel: Channel, text: str) -> tuple[str, Any, Any, Any] | str:
    """The general path: decode, read the envelope, validate; or the kind of error."""
    try:
        decoded = channel_codec.decode(text)
        event, data, request_id = parse_envelope(decoded)
    except (BadEnvelope, DuplicateKeyError, DecodeError) as exc:
        return type(exc).__name__
    handler = channel.handlers.get(event)
    if handler is None:
        return "unknown"
    try:
        assert handler.validate is not None
        return event, handler.validate(data), request_id, trace_of(decoded)
    except ValueError:
        return "invalid"


def test_flat_models_are_recognised() -> None:
    assert is_flat_model(Echo)
    assert is_flat_model(Reading)
    assert not is_flat_model(Nested)  # a nested object has keys the count would miss
    assert not is_flat_model(Loose)  # kept extra fields could hold anything
    assert not is_flat_model(Checked)  # a model validator could change the fields set
    assert not is_flat_model(dict)
    assert not is_flat_model(int)
    assert OnePass(decoding_table(make_channel())).flat == {"echo", "read"}


FAST = [
    '{"event":"echo","data":{"text":"hi","n":1},"id":7}',
    '{"event":"echo","data":{"text":"hi","n":1}}',
    '{"event":"echo","data":{"text":"hi","n":1},"id":"a-b"}',
    '{"event":"echo","data":{"text":"hi","n":-9223372036854775808},"id":null}',
    '{"event":"read","data":{"level":1.5,"unit":"f","note":null,"ok":false},"id":1}',
    '{"event":"read","data":{"level":2}}',
    '{"id":3,"data":{"n":2,"text":"x"},"event":"echo"}',
    # A colon inside a string: the second count (of ":) takes it.
    '{"event":"echo","data":{"text":"http://x:80","n":1},"id":1}',
    # Whitespace after a colon is fine.
    '{"event": "echo", "data": {"text": "hi", "n": 1}, "id": 7}',
]

GENERAL = [
    # repeated keys, with and without whitespace before the colon
    '{"event":"echo","event":"echo","data":{"text":"hi","n":1},"id":1}',
    '{"event":"echo","data":{"text":"hi","n":1,"n":2},"id":1}',
    '{"event" :"echo","event":"echo","data":{"text":"hi","n":1},"id":1}',
    '{"event":"echo","data":{"text":"a:b","n":1,"n"\n:2},"id":1}',
    '{"event":"echo","data":{"text":"hi","n":1},"id":1,"id":2}',
    # numbers the codec refuses
    '{"event":"echo","data":{"text":"hi","n":18446744073709551616},"id":1}',
    '{"event":"read","data":{"level":NaN}}',
    '{"event":"read","data":{"level":Infinity}}',
    '{"event":"read","data":{"level":1e400}}',
    # ids the envelope refuses
    '{"event":"echo","data":{"text":"hi","n":1},"id":1.5}',
    '{"event":"echo","data":{"text":"hi","n":1},"id":true}',
    '{"event":"echo","data":{"text":"hi","n":1},"id":9007199254740992}',
    '{"event":"echo","data":{"text":"hi","n":1},"id":"' + "x" * 129 + '"}',
    # what a flat model cannot answer, or what is not valid
    '{"event":"nested","data":{"inner":{"x":1}}}',
    '{"event":"nope","data":{}}',
    '{"event":"echo","data":{"text":"hi"}}',
    '{"event":"echo","data":{"text":"hi","n":1,"extra":{"a":1,"a":2}}}',
    '{"event":"echo","data":{"text":"hi","n":1},"deep":' + "[" * 70 + "]" * 70 + "}",
    '{"event":"echo","data":{"text":"\\ud800","n":1}}',
    "[]",
    "{",
    # an integer beyond 64 bits that a float field would take (as 1e+30)
    '{"event":"read","data":{"level":1000000000000000000000000000000}}',
    # integers from 2**63 on: valid, for the general path to answer
    '{"event":"echo","data":{"text":"hi","n":9223372036854775808},"id":1}',
]


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Trace context (DESIGN.md section 13) keeps the pass: the keys are read in it.
FAST += [
    '{"event":"echo","data":{"text":"hi","n":1},"id":7,"traceparent":"' + TRACEPARENT + '"}',
    '{"traceparent":"garbage","tracestate":"a=b","event":"echo","data":{"text":"hi","n":1}}',
    '{"event":"echo","data":{"text":"hi","n":1},"tracestate":"k=v:1,w=2"}',
]
GENERAL += [
    '{"event":"echo","data":{"text":"hi","n":1},"traceparent":5}',
    '{"event":"echo","data":{"text":"hi","n":1},"traceparent":"a","traceparent":"b"}',
]


@pytest.mark.parametrize("text", FAST)
def test_plain_frames_take_one_pass_and_get_what_the_general_path_gives(text: str) -> None:
    channel = make_channel()
    found = text_pass(channel)(text)
    assert found is not None
    assert found == general(channel, text)


@pytest.mark.parametrize("text", GENERAL)
def test_frames_the_one_pass_cannot_vouch_for_take_the_general_path(text: str) -> None:
    channel = make_channel()
    assert text_pass(channel)(text) is None


def test_the_general_path_refuses_what_the_one_pass_passes_on() -> None:
    """Each frame above that must fail does fail, so passing it on loses nothing."""
    channel = make_channel()
    outcomes = {text: general(channel, text) for text in GENERAL}
    assert outcomes[GENERAL[0]] == "DuplicateKeyError"
    assert outcomes[GENERAL[3]] == "DuplicateKeyError"
    assert outcomes[GENERAL[5]] == "DecodeError"
    assert outcomes[GENERAL[9]] == "BadEnvelope"
    assert outcomes[GENERAL[13]][0] == "nested"  # valid, just not flat
    assert outcomes[GENERAL[-4]] == "DecodeError"
    assert outcomes[GENERAL[-3]][1] == Echo(text="hi", n=2**63)
    assert outcomes[GENERAL[-2]] == ("echo", Echo(text="hi", n=1), None, None)  # ignored
    assert outcomes[GENERAL[-1]] == "DuplicateKeyError"


def test_a_handler_added_later_is_served_on_the_next_build() -> None:
    channel = make_channel()
    assert text_pass(channel)('{"event":"late","data":{"a":1}}') is None

    @channel.on("late", model=Inner)
    async def late(data: Inner) -> None:
        return None

    found = text_pass(channel)('{"event":"late","data":{"x":1}}')
    assert found is not None
    assert found[1] == Inner(x=1)


def test_an_app_answers_the_same_through_either_path() -> None:
    app = EventApp([make_channel()], title="t", version="1", limits=Limits(rate=None))
    with EventTestClient(app) as client, client.connect("/c") as ws:
        assert ws.request("echo", {"text": "hi", "n": 3}) == {"text": "hi", "n": 3}
        ws.send_raw('{"event":"echo","data":{"text":"hi","n":1,"n":2},"id":5}')
        error = ws.receive()
        assert (error.event, error.id, error.data["code"]) == ("error", 5, "bad_frame")
        ws.send_raw('{"event":"echo","data":{"text":"hi"},"id":6}')
        error = ws.receive()
        assert (error.id, error.data["code"]) == (6, "validation_error")
        assert error.data["details"][0]["loc"] == ["n"]
    assert app.stats()["events"]["echo"] == {"ok": 1, "validation_error": 1}


DECODED: list[Any] = [
    {"event": "echo", "data": {"text": "hi", "n": 1}, "id": 7},
    {"event": "nested", "data": {"inner": {"x": 1}}, "id": "n"},
    {"event": "free", "id": 1},  # no model: data may be left out
    {"event": "free", "data": [1, {"a": None}]},
    {"event": "echo", "data": {"text": "hi", "n": "2"}, "extra": True},  # lax, as validate
    {"event": b"echo", "data": {"text": "hi", "n": 1}},
    {"event": "echo", "data": {"text": "hi", "n": 1}, "id": True},
    {"event": "echo", "data": {"text": "hi", "n": 1}, "id": 1.0},
    {"event": "echo", "data": {"text": "hi", "n": 1}, "id": 2**53},
    {"event": "echo", "data": {"text": "hi", "n": 1}, "id": "x" * 129},
    {"event": "echo", "data": {"text": "hi"}},
    {"event": "echo"},
    {"event": "nope", "data": {}},
    {"data": {}},
    [],
]


@pytest.mark.parametrize("value", DECODED)
def test_a_decoded_frame_gets_what_reading_the_envelope_and_validating_give(value: Any) -> None:
    """MessagePack frames, and JSON ones the text pass cannot take, after decoding."""
    channel = make_channel()

    @channel.on("free")
    async def free(data: Any) -> None:
        return None

    answer: tuple[Any, ...]
    try:
        event, data, request_id = parse_envelope(value)
        handler = channel.handlers[event]
        validated = data if handler.validate is None else handler.validate(data)
        # Only echo declares a reply: the others answer with null data.
        expected = validated.model_dump() if event == "echo" else None
        answer = (event, expected, request_id)
    except (BadEnvelope, KeyError, ValueError) as exc:
        code = {BadEnvelope: "bad_envelope", KeyError: "unknown_event"}
        answer = ("error", code.get(type(exc), "validation_error"))
    app = EventApp([channel], title="t", version="1", limits=Limits(rate=None))
    with (
        EventTestClient(app, check_frames=False) as client,
        client.connect("/c", subprotocols=["wsevents.msgpack"]) as ws,
    ):
        ws.send_raw(msgpack.packb(value))
        if answer[0] == "error":
            got = ws.receive()
            assert (got.event, got.data["code"]) == answer
        elif answer[2] is not None:
            got = ws.receive()
            assert (got.event, got.data, got.id) == answer
        assert ws.request("echo", {"text": "next", "n": 0}) == {"text": "next", "n": 0}


class Aliased(BaseModel):
    x: int = Field(serialization_alias="X")


class Computed(BaseModel):
    x: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.x * 2


class Serialized(BaseModel):
    x: int

    @field_serializer("x")
    def plus_one(self, value: int) -> int:
        return value + 1


class Hidden(BaseModel):
    x: int
    y: int = Field(default=0, exclude=True)


class InfAsConstants(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    x: float


def test_plain_models_are_the_flat_ones_that_serialize_to_their_dict() -> None:
    assert is_plain_model(Echo)
    assert is_plain_model(Reading)
    for model in (Aliased, Computed, Serialized, Hidden, InfAsConstants, Nested, Loose, dict):
        assert not is_plain_model(model), model


@pytest.mark.parametrize(
    "value",
    [
        Echo(text='é "quoted"\n', n=2**64 - 1),
        Reading(level=float("inf")),
        Reading(level=1, unit="f", note=None, ok=False),
        Aliased(x=1),
        Computed(x=2),
        Serialized(x=1),
        Hidden(x=1, y=2),
        InfAsConstants(x=float("inf")),
    ],
)
def test_codecs_encode_a_model_as_pydantic_serializes_it(value: BaseModel) -> None:
    """A plain model goes as its __dict__: the frame must not tell the difference."""
    data = to_json(value).decode()
    assert JSONCodec().encode_event("e", value, 7) == f'{{"event":"e","data":{data},"id":7}}'
    expected = {"event": "e", "data": to_jsonable_python(value), "id": 7}
    assert MessagePackCodec().encode_event("e", value, 7) == msgpack.packb(expected)


def test_msgpack_frames_the_pass_does_not_take_get_the_general_answers() -> None:
    app = EventApp([make_channel()], title="t", version="1", limits=Limits(rate=None))
    nan = msgpack.packb({"event": "read", "data": {"level": float("nan")}, "id": 1})
    # "n" twice in data: the map packs again shorter.
    repeated = b"\x83\xa5event\xa4echo\xa4data\x83\xa4text\xa1a\xa1n\x01\xa1n\x02\xa2id\x02"
    wide = b"\x83\xa5event\xa4echo\xa4data\x82\xa4text\xa1a\xa1n\xce\x00\x00\x00\x05\xa2id\x03"
    with (
        EventTestClient(app, check_frames=False) as client,
        client.connect("/c", subprotocols=["wsevents.msgpack"]) as ws,
    ):
        ws.send_raw(nan)
        error = ws.receive()
        assert (error.id, error.data["code"]) == (None, "bad_frame")
        assert "not a finite number" in error.data["message"]
        ws.send_raw(repeated)
        error = ws.receive()
        assert (error.id, error.data["code"]) == (2, "bad_frame")
        assert "'n'" in error.data["message"]
        ws.send_raw(wide)  # 5 as a uint32: valid, not canonical, answered all the same
        reply = ws.receive()
        assert (reply.event, reply.data, reply.id) == ("echo", {"text": "a", "n": 5}, 3)
        # What the model or the envelope would ignore is still checked by the codec.
        ignored: list[dict[str, Any]] = [
            {"event": "echo", "data": {"text": "a", "n": 1, "x": float("inf")}, "id": 4},
            {"event": "echo", "data": {"text": "a", "n": 1}, "id": 5, "x": _deep(70)},
            {"event": "echo", "data": {"text": "a", "n": 1}, "x": msgpack.Timestamp(1, 0)},
        ]
        for frame in ignored:
            ws.send_raw(msgpack.packb(frame))
            error = ws.receive()
            assert (error.event, error.data["code"]) == ("error", "bad_frame"), frame
    assert app.stats()["events"]["echo"] == {"ok": 1}


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def general_binary(channel: Channel, payload: bytes) -> tuple[str, Any, Any, Any] | None:
    """The general path for a MessagePack frame; ``None`` where it answers an error."""
    try:
        decoded = MessagePackCodec().decode(payload)
        event, data, request_id = parse_envelope(decoded)
        handler = channel.handlers[event]
        assert handler.validate is not None
        return event, handler.validate(data), request_id, trace_of(decoded)
    except (BadEnvelope, DecodeError, KeyError, ValueError):
        return None


# Values for a differential run: valid for some field, wrong for others, and
# what msgspec and msgpack decode differently (extensions, timestamps, binary).
_VALUES: list[Any] = [
    *(0, 1, -1, 127, 128, 255, 256, -33, 2**31, 2**53, 2**63, 2**64 - 1, -(2**63)),
    *(1.5, 2.0, -0.0, 1e300, float("nan"), float("inf"), -float("inf")),
    *("", "a", "2", "c", "f", "é" * 40, b"x", None, True, False, [], {}, {"a": 1}),
    *(msgpack.Timestamp(1, 0), msgpack.ExtType(5, b"ab"), msgpack.ExtType(0, b"1234")),
]


class _Pairs(list):  # type: ignore[type-arg]
    """A map's entries, repeated keys included."""


def _pack_pairs(pairs: list[tuple[Any, Any]], single_float: bool) -> bytes:
    """A MessagePack map of ``pairs``, which may repeat a key (msgpack's packer cannot)."""
    packer = msgpack.Packer(use_single_float=single_float)
    out = [packer.pack_map_header(len(pairs))]
    for key, value in pairs:
        out.append(packer.pack(key))
        out.append(
            _pack_pairs(value, single_float) if isinstance(value, _Pairs) else packer.pack(value)
        )
    return b"".join(out)


def _random_frame(rng: random.Random) -> bytes:
    """A frame for echo or read, mostly valid, sometimes packed oddly or damaged."""

    def value(valid: Any) -> Any:
        return valid if rng.random() < 0.6 else rng.choice(_VALUES)

    event = rng.choice(["echo", "read", "read", b"read", 1])
    if event == "echo":
        data = {"text": value("hi"), "n": value(rng.randrange(-(2**63), 2**64))}
    else:
        data = {"level": value(rng.choice([1.5, 2, float("nan"), -1e308]))}
        for key, valid in (("unit", "f"), ("note", None), ("ok", False)):
            if rng.random() < 0.4:
                data[key] = value(valid)
    if rng.random() < 0.1:
        data["x"] = rng.choice(_VALUES)
    frame: dict[Any, Any] = {"event": event, "data": data}
    if rng.random() < 0.8:
        frame["id"] = value(rng.choice([1, "a", 2**53 - 1, "x" * 128]))
    if rng.random() < 0.15:
        frame["traceparent"] = value(TRACEPARENT)
    if rng.random() < 0.1:
        frame["tracestate"] = value("k=v")
    if rng.random() < 0.05:
        frame[rng.choice(["z", b"z", 3])] = rng.choice(_VALUES)
    items = list(frame.items())
    rng.shuffle(items)
    single = rng.random() < 0.1
    if rng.random() < 0.1:  # a key twice, in the data or in the envelope
        pairs = list(data.items()) if rng.random() < 0.5 else items
        pairs.append((rng.choice(pairs)[0], rng.choice(_VALUES)))
        if pairs is not items:
            items = [(key, _Pairs(pairs) if key == "data" else value) for key, value in items]
    try:
        payload = bytearray(_pack_pairs(items, single))
    except OverflowError:  # a float too large for float32
        payload = bytearray(_pack_pairs(items, False))
    damage = rng.random()
    if damage < 0.2:
        payload[rng.randrange(len(payload))] = rng.randrange(256)
    elif damage < 0.25:
        del payload[rng.randrange(len(payload))]
    elif damage < 0.3:
        payload.append(rng.randrange(256))
    return bytes(payload)


def differential_run(
    make: Callable[[random.Random], Any], fast: Callable[[Any], Any], slow: Callable[[Any], Any]
) -> int:
    """Run 20,000 random frames through both paths; return how many the pass took.

    Where the pass answers, the general path must give the same handler, data
    (down to each value's type and the fields set) and id.
    """
    rng = random.Random(6)
    taken = 0
    for _ in range(20_000):
        frame = make(rng)
        found = fast(frame)
        if found is None:
            continue
        taken += 1
        expected = slow(frame)
        assert isinstance(expected, tuple), (frame, expected)
        found_event, data, request_id, trace = found
        event, model, general_id, general_trace = expected
        assert (found_event, request_id, trace) == (event, general_id, general_trace), frame
        assert type(request_id) is type(general_id)
        assert type(data) is type(model)
        assert data.model_fields_set == model.model_fields_set
        got = {name: (type(value), value) for name, value in data.__dict__.items()}
        assert got == {name: (type(value), value) for name, value in model.__dict__.items()}
    return taken


def test_the_msgpack_pass_takes_only_what_the_general_path_answers_the_same() -> None:
    """msgspec decodes in the pass, msgpack in the codec: where the pass answers, they agree."""
    channel = make_channel()
    taken = differential_run(
        _random_frame, binary_pass(channel), lambda frame: general_binary(channel, frame)
    )
    assert taken > 1_000  # the run did reach the pass


_JSON_VALUES = [
    *("0", "-0", "1", "-1", "1.0", "-0.0", "1e2", "1E+2", "2.5e-3", "1e-400", "1e400", "01"),
    *("9223372036854775807", "-9223372036854775808", "9223372036854775808"),
    *("18446744073709551616", "100000000000000000000000000000", "NaN", "Infinity"),
    *("0.1000000000000000055511151231257827", "1.7976931348623157e308", "5e-324"),
    *("true", "false", "null", "[]", "{}", '{"a":1}', "[1,2]", "tru", '"2"', '"c"', '"f"'),
    *('""', '"hi"', '"a:b"', '"\\u00e9\\n\\t\\""', '"\\ud83d\\ude00"', '"\\ud800"'),
    *('"\\udc00x"', '"\x01"', '"\x7f"', '"é😀"', '"\\x"', '"a\\u0000b"', '"' + "x" * 129 + '"'),
]


def _random_text(rng: random.Random) -> str:
    """A JSON frame for echo or read, mostly valid, sometimes odd or damaged."""

    def value(valid: str) -> str:
        return valid if rng.random() < 0.6 else rng.choice(_JSON_VALUES)

    event = rng.choice(['"echo"', '"read"', '"read"', '"nope"', "1", "null"])
    if event == '"echo"':
        pairs = [('"text"', value('"hi"')), ('"n"', value(str(rng.randrange(-(2**63), 2**64))))]
    else:
        level = repr(rng.uniform(-1e6, 1e6)) if rng.random() < 0.5 else str(rng.randrange(-99, 99))
        pairs = [('"level"', value(level))]
        for key, valid in (('"unit"', '"f"'), ('"note"', "null"), ('"ok"', "false")):
            if rng.random() < 0.4:
                pairs.append((key, value(valid)))
    if rng.random() < 0.1:
        pairs.append((rng.choice(['"x"', '"n"', '"text"', '"level"']), rng.choice(_JSON_VALUES)))
    rng.shuffle(pairs)
    space = rng.choice(["", "", " ", "\n"])

    def members(items: list[tuple[str, str]]) -> str:
        inner = ("," + space).join(f"{key}{space}:{space}{item}" for key, item in items)
        return "{" + space + inner + space + "}"

    frame = [('"event"', event), ('"data"', members(pairs))]
    if rng.random() < 0.8:
        frame.append(('"id"', value(rng.choice(["1", '"a"', "9007199254740991", "null"]))))
    if rng.random() < 0.15:
        frame.append(('"traceparent"', value(f'"{TRACEPARENT}"')))
    if rng.random() < 0.1:
        frame.append(('"tracestate"', value('"k=v:1"')))
    if rng.random() < 0.05:
        frame.append((rng.choice(['"z"', '"id"', '"event"', '"data"']), rng.choice(_JSON_VALUES)))
    rng.shuffle(frame)
    text = members(frame)
    damage = rng.random()
    if damage < 0.15:
        index = rng.randrange(len(text))
        text = text[:index] + rng.choice('{}[]:,"\\ 0e.-') + text[index + 1 :]
    elif damage < 0.2:
        index = rng.randrange(len(text))
        text = text[:index] + text[index + 1 :]
    return text


def test_the_json_pass_takes_only_what_the_general_path_answers_the_same() -> None:
    """msgspec reads the envelope in the pass, pydantic-core in the codec: where the pass
    answers, the general path gives the same handler, data and id."""
    channel = make_channel()
    taken = differential_run(
        _random_text, text_pass(channel), lambda frame: general(channel, frame)
    )
    assert taken > 1_000  # the run did reach the pass


def test_the_msgpack_pass_takes_a_plain_frame_in_any_key_order() -> None:
    channel = make_channel()
    for frame in (
        {"event": "echo", "data": {"text": "hi", "n": 3}, "id": 9},
        {"id": "a", "data": {"n": -1, "text": ""}, "event": "echo"},
        {"data": {"level": 2.5, "ok": False, "note": None}, "event": "read"},
    ):
        found = binary_pass(channel)(msgpack.packb(frame))
        assert found is not None, frame
        event, data, request_id, _ = found
        assert event == frame["event"]
        assert data.model_dump(exclude_unset=True) == frame["data"]
        assert request_id == frame.get("id")


@pytest.mark.parametrize("level", [1e16, -2.5e-300, 1e22, 5e-324, 0.1, 123456789.125])
def test_json_replies_write_the_float_pydantic_reads_back(level: float) -> None:
    """msgspec writes 1e16 where pydantic writes 1e+16: the same number to any reader."""
    text = JSONCodec().encode_event("read", Reading(level=level), 1)
    assert from_json(text) == {
        "event": "read",
        "data": to_jsonable_python(Reading(level=level)),
        "id": 1,
    }
    assert from_json(text)["data"]["level"] == level


def test_a_plain_model_holding_what_it_should_not_is_encoded_by_the_general_encoders() -> None:
    surrogate = Echo.model_construct(text="\ud800", n=1)
    with pytest.raises(PydanticSerializationError):
        JSONCodec().encode_event("echo", surrogate, 1)
    huge = Echo.model_construct(text="a", n=2**70)
    assert from_json(JSONCodec().encode_event("echo", huge, 1))["data"]["n"] == 2**70
    # msgpack's packer answers, as before msgspec wrote plain models (its message).
    with pytest.raises(OverflowError, match="Integer value out of range"):
        MessagePackCodec().encode_event("echo", huge, 1)


_FIELD_VALUES: dict[Any, list[Any]] = {
    str: ["", "a", 'é "q"\n\t\\', "\u2028", "😀", "x" * 300],
    int: [0, -1, 2**31, -(2**63), 2**63 - 1, 2**64 - 1, 2**53 + 1],
    float: [0.0, -0.0, 1.5, 1e308, 5e-324, 0.1, float("inf"), float("-inf"), float("nan")],
    bool: [True, False],
    type(None): [None],
}
_FIELD_TYPES: list[Any] = [
    str,
    int,
    float,
    bool,
    int | None,
    str | None,
    Literal["a", "b"],
]


def _values_for(annotation: Any) -> list[Any]:
    if annotation in _FIELD_VALUES:
        return _FIELD_VALUES[annotation]
    if annotation == Literal["a", "b"]:
        return ["a", "b"]
    return [value for arg in annotation.__args__ for value in _FIELD_VALUES[arg]]


def _typed(value: Any) -> Any:
    """A decoded value with each scalar's type beside it (1 and 1.0 differ; -0.0 keeps its sign)."""
    if isinstance(value, dict):
        return [(key, _typed(item)) for key, item in value.items()]
    return (type(value), repr(value))


def test_the_msgspec_reply_encoder_writes_what_pydantic_writes() -> None:
    """Random plain models and values: the codecs' msgspec encoding equals pydantic's output."""
    from pydantic import create_model

    rng = random.Random(14)
    json_codec, msgpack_codec = JSONCodec(), MessagePackCodec()
    plain = compared = 0
    for index in range(300):
        fields = {f"f{n}": (rng.choice(_FIELD_TYPES), ...) for n in range(rng.randrange(0, 6))}
        model = create_model(f"Random{index}", **fields)  # type: ignore[call-overload]
        plain += is_plain_model(model)
        for _ in range(10):
            values = {
                name: rng.choice(_values_for(field.annotation))
                for name, field in model.model_fields.items()
            }
            value = model(**values)
            request_id = rng.choice([None, 0, -(2**53 - 1), "k" * rng.randrange(1, 129)])
            event = rng.choice(["e", "é.v", "x" * 256])
            tail = "" if request_id is None else f',"id":{to_json(request_id).decode()}'
            data = to_json(value).decode()
            written = json_codec.encode_event(event, value, request_id)
            pydantic = f'{{"event":{to_json(event).decode()},"data":{data}{tail}}}'
            # The same text, but for how an exponent is spelled (msgspec: 1e308,
            # pydantic-core: 1e+308): the same keys in the same order, the same values.
            assert written.replace("e+", "e") == pydantic.replace("e+", "e"), (fields, values)
            assert _typed(json.loads(written)) == _typed(json.loads(pydantic))
            expected = {"event": event, "data": to_jsonable_python(value)}
            if request_id is not None:
                expected["id"] = request_id
            assert msgpack_codec.encode_event(event, value, request_id) == msgpack.packb(
                expected
            ), (fields, values)
            compared += 1
    assert plain == 300  # every model took the msgspec path
    assert compared == 3_000
