"""Codecs: bytes in, values out; subprotocol negotiation. Pure, no event loop."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from wsevents import Codec, DecodeError, JSONCodec, MessagePackCodec
from wsevents.codecs import CodecSet
from wsevents.exceptions import DuplicateKeyError


def test_json_encodes_compact_utf8_text() -> None:
    assert JSONCodec().encode({"event": "é", "data": [1, None]}) == '{"event":"é","data":[1,null]}'


def test_json_events_write_infinite_floats_as_null_like_pydantic_does() -> None:
    # JSON has no Infinity: a client's JSON.parse would refuse the whole frame.
    frame = JSONCodec().encode_event("e", {"a": float("inf"), "b": [float("nan")]}, 1)
    assert frame == '{"event":"e","data":{"a":null,"b":[null]},"id":1}'


def test_json_refuses_to_encode_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        JSONCodec().encode({"x": float("nan")})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{", "frame is not valid JSON"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": Infinity}', "Infinity is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ('{"a": 1} x', "frame is not valid JSON"),
        (b"\xff", "frame is not valid JSON"),
        ("[" * 100_000, "frame is not valid JSON"),
    ],
)
def test_json_rejects_what_is_not_strict_json(payload: str | bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        JSONCodec().decode(payload)


def test_json_decodes_utf8_bytes_too() -> None:
    assert JSONCodec().decode(b'{"a": "\xc3\xa9"}') == {"a": "é"}


@pytest.mark.parametrize(
    ("payload", "key", "top_level", "decoded"),
    [
        ('{"event": "a", "event": "b", "id": 1}', "event", True, {"event": "b", "id": 1}),
        ('{"data": {"x": 1, "x": 2}, "id": 2}', "x", False, {"data": {"x": 2}, "id": 2}),
        ('{"a": [{"k": 1, "k": 1}]}', "k", False, {"a": [{"k": 1}]}),
        # Whitespace between a key and its colon hides nothing.
        ('{"event" :"a","event":"b","id":1}', "event", True, {"event": "b", "id": 1}),
        ('{"data":{"x"\n:1,"x"\t:2},"id":2}', "x", False, {"data": {"x": 2}, "id": 2}),
        ('{"a":"u:v","a"\r:"w"}', "a", True, {"a": "w"}),
    ],
)
def test_repeated_keys_are_reported_with_their_level(
    payload: str, key: str, top_level: bool, decoded: Any
) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        JSONCodec().decode(payload)
    assert (caught.value.key, caught.value.top_level, caught.value.decoded) == (
        key,
        top_level,
        decoded,
    )
    packed = _pack_pairs(payload)
    with pytest.raises(DuplicateKeyError) as caught:
        MessagePackCodec().decode(packed)
    assert (caught.value.key, caught.value.top_level, caught.value.decoded) == (
        key,
        top_level,
        decoded,
    )


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _pack_pairs(payload: str) -> bytes:
    """Pack a JSON text as MessagePack, keeping repeated keys (msgpack maps can repeat them)."""
    import json

    def pack(value: Any) -> bytes:
        if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
            pairs = b"".join(pack(k) + pack(v) for k, v in value)
            return bytes([0x80 | len(value)]) + pairs
        if isinstance(value, list):
            return bytes([0x90 | len(value)]) + b"".join(pack(v) for v in value)
        return bytes(msgpack.packb(value))

    return pack(json.loads(payload, object_pairs_hook=lambda pairs: list(pairs)))


def test_msgpack_round_trips_binary_and_text() -> None:
    codec = MessagePackCodec()
    message = {"event": "e", "data": {"blob": b"\x00\x01", "text": "é"}, "id": 1}
    assert codec.decode(codec.encode(message)) == message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xc1", "not valid MessagePack"),
        (msgpack.packb({"a": 1}) + b"\x00", "not valid MessagePack"),
        (msgpack.packb(msgpack.ExtType(5, b"x")), "extension type 5 is not allowed"),
        (msgpack.packb({1: "a"}), "not valid MessagePack"),
        (b"\xa2\xff\xfe", "not valid MessagePack"),
        ("text", "MessagePack travels in binary frames"),
    ],
)
def test_msgpack_rejects_what_is_not_a_plain_document(payload: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        MessagePackCodec().decode(payload)


LONG = "x" * 80  # past 64 bytes, where the old check sent every frame the slow way


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"data": float("nan")}, "nan is not a finite number"),
        ({b"event": "e"}, "a map key must be a string, got bytes"),
        ({"data": {"a": 1, b"b": 2}}, "a map key must be a string, got bytes"),
        ({"data": [{b"k": 1}], "pad": LONG}, "a map key must be a string, got bytes"),
        ({"data": b"\x00binary values are fine", "list": [1, [2]]}, None),
        ({"data": -float("inf")}, "inf is not a finite number"),
        ({"data": msgpack.Timestamp(2**33, 5)}, "Timestamp value is not allowed"),  # fixext 8
        (
            {"data": msgpack.Timestamp(2**40, 0)},
            "Timestamp value is not allowed",
        ),  # ext 8, 12 bytes
        ({"data": float("nan"), "pad": LONG}, "nan is not a finite number"),
        ({"data": [float("inf")], "pad": LONG}, "inf is not a finite number"),
        ({"data": msgpack.Timestamp(1, 0), "pad": LONG}, "Timestamp value is not allowed"),
        ({"deep": _nest(65), "pad": LONG}, "nesting deeper than 64"),
        ({"big": 2**64 - 1, "small": -(2**63), "pad": LONG}, None),
        # Marker bytes inside numbers and strings: decoded as they are.
        ({"n": 0xCBCACBC7, "s": "\u00ca\u00cb", "pad": LONG}, None),
    ],
)
def test_msgpack_checks_long_frames_too(value: Any, message: str | None) -> None:
    payload = msgpack.packb(value, datetime=False)
    if message is None:
        assert MessagePackCodec().decode(payload) == value
    else:
        with pytest.raises(DecodeError, match=message):
            MessagePackCodec().decode(payload)


def test_msgpack_decodes_what_a_packer_wrote_longer_than_needed() -> None:
    # 1 as a uint32, "a" as a str8, a map with a 16-bit header: valid, just not canonical.
    payload = b"\xde\x00\x02" + b"\xd9\x01a" + b"\xce\x00\x00\x00\x01" + b"\xa1b\xc3"
    assert MessagePackCodec().decode(payload) == {"a": 1, "b": True}


def test_a_float32_cannot_hide_a_repeated_key() -> None:
    # The float32 packs again four bytes longer: just what the repeated "kk": 1 drops.
    payload = b"\x83\xa1f\xca" + msgpack.packb(1.5, use_single_float=True)[1:]
    payload += b"\xa2kk\x01\xa2kk\x01"
    assert len(msgpack.packb(msgpack.unpackb(payload))) == len(payload)
    with pytest.raises(DuplicateKeyError):
        MessagePackCodec().decode(payload)


class CBORish(Codec):
    subprotocol = "x.binary"
    frame_type = "binary"

    def encode(self, message: Any) -> bytes:
        return b"x"

    def decode(self, payload: str | bytes) -> Any:
        return {}


def test_negotiation_picks_the_first_offered_subprotocol_spoken() -> None:
    codecs = CodecSet([CBORish()])
    assert codecs.negotiate(["nope", "wsevents.msgpack", "wsevents.json"])[1] == "wsevents.msgpack"
    assert codecs.negotiate(["x.binary"])[1] == "x.binary"
    codec, subprotocol = codecs.negotiate([])
    assert (type(codec), subprotocol) == (JSONCodec, None)
    codec, subprotocol = codecs.negotiate(["token.abc"])
    assert (type(codec), subprotocol) == (JSONCodec, None)


def test_decoders_follow_the_frame_type() -> None:
    custom = CBORish()
    codecs = CodecSet([custom])
    text, binary = codecs.decoders(custom)
    assert (type(text), binary) == (JSONCodec, custom)
    text, binary = codecs.decoders(codecs.default)
    assert (type(text), type(binary)) == (JSONCodec, MessagePackCodec)


def test_a_codec_with_a_builtin_subprotocol_replaces_it() -> None:
    class LoudJSON(JSONCodec):
        pass

    codecs = CodecSet([LoudJSON()])
    assert type(codecs.default) is LoudJSON
    assert type(codecs.negotiate(["wsevents.json"])[0]) is LoudJSON


def test_codec_set_refuses_what_is_not_a_codec() -> None:
    with pytest.raises(TypeError, match="expected a Codec instance"):
        CodecSet([object()])  # type: ignore[list-item]

    class Odd(CBORish):
        frame_type = "smoke"  # type: ignore[assignment]

    with pytest.raises(ValueError, match="frame_type must be"):
        CodecSet([Odd()])
    assert repr(CBORish()) == "CBORish(subprotocol='x.binary')"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\xc1", "a byte that is not a MessagePack type (0xc1 is reserved)"),
        (b"\x92\x01", "Unpack failed: incomplete input"),
    ],
)
def test_a_frame_that_is_not_msgpack_says_what_is_wrong_with_it(payload: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as caught:
        MessagePackCodec().decode(payload)
    assert str(caught.value) == f"frame is not valid MessagePack: {why}"
