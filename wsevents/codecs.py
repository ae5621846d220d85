"""Codecs: how envelopes become frames, and subprotocol negotiation.

A codec turns an envelope (a ``dict`` of JSON-compatible values) into the
payload of one WebSocket frame and back. JSON travels in text frames,
MessagePack in binary frames. A client picks one with the
``Sec-WebSocket-Protocol`` header (``wsevents.json`` or ``wsevents.msgpack``);
with none, the server answers in JSON.

Add your own by subclassing :class:`Codec` and passing it to
``EventApp(codecs=[...])``; one with the subprotocol of a built-in codec
replaces it.

Over 300 lines: two codecs, each with its fast and its strict decoder.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import msgpack
import msgspec
from pydantic_core import from_json, to_json, to_jsonable_python

from ._onepass import INT_MAX, INT_MIN, Decoding, Found, OnePass, is_plain_model, keys_match
from .exceptions import DecodeError, DuplicateKeyError

__all__ = [
    "Codec",
    "CodecSet",
    "Decoding",
    "EnvelopeDecoder",
    "JSONCodec",
    "MessagePackCodec",
]


EnvelopeDecoder = Callable[[Any], "Found | None"]
"""Decode and validate a frame in one pass: ``(event, data, id, trace)``, or ``None``
for the general path (:meth:`Codec.decode`, then the envelope, then the model)."""

FrameType = Literal["text", "binary"]


_PLAIN: dict[type, bool] = {}  # per class of data: does it serialize to its __dict__?

# msgspec's encoders, for the values of a plain model's __dict__ (str, int, float,
# bool, None): the same bytes as msgpack's packer (float64, the shortest
# integers and strings) and pydantic's JSON (infinite and NaN floats as null), but
# for an exponent's "+" that pydantic writes and msgspec does not (1e+308, 1e308: the
# same number), in a fraction of the time. tests/test_onepass.py compares them.
_encode_msgpack = msgspec.msgpack.Encoder().encode
_encode_json = msgspec.json.Encoder().encode
# What they raise for a value no plain field should hold (a lone surrogate, an
# integer beyond 64 bits, an object): the general encoder gives its own answer.
_UNENCODABLE = (TypeError, ValueError, OverflowError)


def _plain(kind: type) -> bool:
    plain = _PLAIN[kind] = is_plain_model(kind)
    return plain


class Codec(ABC):
    """Encode envelopes to frames and decode frames to envelopes.

    Attributes:
        subprotocol: the ``Sec-WebSocket-Protocol`` value that selects it.
        frame_type: ``"text"`` or ``"binary"``: the frames it writes and reads.
    """

    subprotocol: str
    frame_type: FrameType

    @abstractmethod
    def encode(self, message: Any) -> str | bytes:
        """Encode ``message`` (JSON-compatible values) as one frame's payload."""

    @abstractmethod
    def decode(self, payload: str | bytes) -> Any:
        """Decode one frame's payload.

        Raises:
            DecodeError: the payload is not valid in this codec.
        """

    def encode_event(self, event: str, data: Any, request_id: Any = None) -> str | bytes:
        """Encode a push or a reply whose ``data`` may hold pydantic models or dataclasses.

        The default makes ``data`` JSON-compatible and calls :meth:`encode`;
        a codec may do it in one step.
        """
        message = {"event": event, "data": to_jsonable_python(data)}
        if request_id is not None:
            message["id"] = request_id
        return self.encode(message)

    def envelope_decoder(self, table: Mapping[str, Decoding]) -> EnvelopeDecoder | None:
        """Return a decoder that reads the frames of ``table``'s events in one pass, or ``None``.

        ``table`` maps each event a channel handles to its :class:`Decoding`;
        it is given once per channel, at startup. The pass must answer as the
        general path would (the event, the validated data, the ``id``, and the
        frame's ``(traceparent, tracestate)`` strings or ``None``), or return
        ``None`` for a frame and leave it to the general path; only its speed
        may differ. The default has none.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(subprotocol={self.subprotocol!r})"


class _RepeatedKey(Exception):
    def __init__(self, key: object) -> None:
        self.key = key


def _repeated_key(pairs: Sequence[tuple[Any, Any]]) -> object:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None  # pragma: no cover - only called when a key repeats


def _object_strict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey(_repeated_key(pairs))
    return obj


class _Repeated(dict[Any, Any]):
    """An object that repeated a key; only built on the error path."""


def _object_marking(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    if len(dict(pairs)) != len(pairs):
        return _Repeated(pairs)
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a JSON number")


def _repeated_error(error: _RepeatedKey, decoded: Any) -> DuplicateKeyError:
    # The second pass marks instead of raising, so it tells whether the envelope
    # itself repeats a key, and lets the caller read what it can (the ``id``).
    return DuplicateKeyError(
        error.key, top_level=type(decoded) is _Repeated, decoded=_unmark(decoded)
    )


def _unmark(decoded: Any) -> Any:
    return dict(decoded) if type(decoded) is _Repeated else decoded


MAX_DEPTH = 64


def check_decoded(value: Any, *, depth: int = 0) -> None:
    """Reject what a decoder let through: deep nesting, non-finite floats, integers
    beyond 64 bits, lone surrogates, MessagePack extension values, map keys
    that are not strings (MessagePack allows binary ones).

    Raises:
        DecodeError: naming the first problem found.
    """
    kind = type(value)
    if kind is dict or kind is list:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"nesting deeper than {MAX_DEPTH}")
        if kind is list:
            for item in value:
                check_decoded(item, depth=depth + 1)
            return
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError(f"a map key must be a string, got {type(key).__name__}")
            check_decoded(key, depth=depth + 1)
            check_decoded(item, depth=depth + 1)
    elif kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("a string with a lone surrogate") from None
    elif kind is float:
        if not math.isfinite(value):
            raise DecodeError(f"{value!r} is not a finite number")
    elif kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise DecodeError("an integer beyond 64 bits")
    elif kind not in (bool, bytes, type(None)):
        raise DecodeError(f"a {kind.__name__} value is not allowed")


def _members(value: Any) -> int:
    """Count the members of every object in ``value``; -1 if it holds a number to check."""
    kind = type(value)
    if kind is dict:
        count = len(value)
        items = value.values()
    elif kind is list:
        count = 0
        items = value
    elif kind is int:
        return 0 if INT_MIN <= value <= INT_MAX else -1
    elif kind is float:
        return 0 if math.isfinite(value) else -1
    else:
        return 0
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        inner = _members(item)
        if inner < 0:
            return -1
        count += inner
    return count


class JSONCodec(Codec):
    """JSON in text frames, the default.

    Decoding rejects what the standard library would let through: ``NaN`` and
    ``Infinity``, numbers that overflow a float, integers beyond 64 bits,
    lone surrogates, nesting deeper than 64, repeated keys. The strict checks
    run only on frames that could need them, so a plain frame costs one scan.
    """

    subprotocol = "wsevents.json"
    frame_type: FrameType = "text"

    def __init__(self) -> None:
        self._decode = json.JSONDecoder(
            object_pairs_hook=_object_strict, parse_constant=_reject_constant
        ).decode
        self._decode_marking = json.JSONDecoder(
            object_pairs_hook=_object_marking, parse_constant=_reject_constant
        ).decode
        self._encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode

    def encode(self, message: Any) -> str:
        """Encode ``message`` as compact JSON text."""
        return self._encode(message)

    def encode_event(self, event: str, data: Any, request_id: Any = None) -> str:
        """Encode a push or a reply in one pass, models included (pydantic-core).

        A plain model (see :func:`~wsevents._onepass.is_plain_model`) goes as
        its ``__dict__``, which serializes the same, and msgspec's encoder
        writes it. Infinite and NaN floats become ``null``, as pydantic writes
        them in a model: JSON has no other way to say them.
        """
        plain = _PLAIN.get(data.__class__)
        if plain is None:
            plain = _plain(data.__class__)
        if plain:
            data = data.__dict__
        if request_id is None:
            message = {"event": event, "data": data}
        else:
            message = {"event": event, "data": data, "id": request_id}
        if plain:
            try:
                return _encode_json(message).decode()
            except _UNENCODABLE:
                pass
        return to_json(message, inf_nan_mode="null").decode()

    def envelope_decoder(self, table: Mapping[str, Decoding]) -> EnvelopeDecoder | None:
        """One pass for the JSON texts of flat models (see :mod:`wsevents._onepass`)."""
        return OnePass(table).text_pass

    def decode(self, payload: str | bytes) -> Any:
        """Decode JSON text (or UTF-8 bytes).

        pydantic-core parses; one walk over the result counts object members
        and flags what needs a strict look (integers beyond 64 bits, numbers
        that overflowed). When the members may not add up to the keys in the
        text (a repeated key, or a colon inside a string: see
        :func:`keys_match`), or the nesting may be deep, the standard library
        decodes it again with every check.
        """
        try:
            text = payload if isinstance(payload, str) else payload.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"frame is not valid JSON: {exc}") from None
        try:
            value = from_json(text, allow_inf_nan=False)
        except ValueError:
            return self._strict(text)  # it raises, with the precise reason
        members = _members(value)
        if members < 0 or not keys_match(text, members):
            return self._strict(text)
        # Nesting deeper than 64 takes 130 characters at least.
        if len(text) > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
            return self._strict(text)
        return value

    def _strict(self, text: str) -> Any:
        try:
            value = self._decode(text)
            check_decoded(value)
            return value
        except _RepeatedKey as error:
            raise _repeated_error(error, self._decode_marking(text)) from None
        except DecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"frame is not valid JSON: {exc}") from None


_unpackb = msgpack.unpackb


# msgpack says nothing in some of its errors (FormatError on a reserved byte).
_MSGPACK_ERRORS = {
    "FormatError": "a byte that is not a MessagePack type (0xc1 is reserved)",
    "StackError": "nested too deeply",
    "ExtraData": "more bytes after the value",
}


def _why(exc: Exception) -> str:
    """What was wrong with a frame, in msgpack's words or ours where it has none."""
    return str(exc) or _MSGPACK_ERRORS.get(type(exc).__name__, type(exc).__name__)


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"MessagePack extension type {code} is not allowed")


# Bytes that start a non-finite float64 (its exponent all ones), a timestamp
# extension, as the canonical packer writes them (the other extension types
# fail in the decoder), or binary data (which may be a map key). Where one
# appears, the decoded value gets a walk (finite floats, no extension values,
# string keys): inside numbers or strings they only cost the walk.
_MARKERS = b"\xcb\xd6\xd7\xc7\xc4\xc5\xc6"
_SUSPECT = re.compile(rb"\xcb[\x7f\xff]|[\xd6\xd7]\xff|\xc7\x0c\xff|[\xc4-\xc6]").search
# Bytes that may start a map or an array: fewer than MAX_DEPTH cannot nest deeper.
_CONTAINERS = bytes(range(0x80, 0xA0)) + bytes(range(0xDC, 0xE0))


class MessagePackCodec(Codec):
    """MessagePack in binary frames.

    Decoding rejects extension types (timestamps included), trailing bytes,
    repeated keys, map keys that are not strings, NaN and infinite floats, and
    nesting deeper than 64.
    """

    subprotocol = "wsevents.msgpack"
    frame_type: FrameType = "binary"

    def __init__(self) -> None:
        # One packer, reused: packing holds the GIL throughout, so threads cannot interleave.
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def encode(self, message: Any) -> bytes:
        """Encode ``message`` as MessagePack."""
        return self._pack(message)  # type: ignore[no-any-return]

    def encode_event(self, event: str, data: Any, request_id: Any = None) -> bytes:
        """Encode a push or a reply; a plain model packs its own ``__dict__``.

        A flat model without aliases, serializers or computed fields (see
        :func:`~wsevents._onepass.is_plain_model`) holds just what
        pydantic-core would make of it, and msgspec's encoder packs it (the
        same bytes as msgpack's); anything else is made JSON-compatible
        first (floats stay floats, infinite ones included: MessagePack has them).
        """
        plain = _PLAIN.get(data.__class__)
        if plain is None:
            plain = _plain(data.__class__)
        value = data.__dict__ if plain else to_jsonable_python(data)
        if request_id is None:
            message = {"event": event, "data": value}
        else:
            message = {"event": event, "data": value, "id": request_id}
        if plain:
            try:
                return _encode_msgpack(message)
            except _UNENCODABLE:
                pass
        return self._pack(message)  # type: ignore[no-any-return]

    def envelope_decoder(self, table: Mapping[str, Decoding]) -> EnvelopeDecoder | None:
        """One pass for the MessagePack frames of flat models (see :mod:`wsevents._onepass`)."""
        return OnePass(table).binary_pass

    def decode(self, payload: str | bytes) -> Any:
        """Decode MessagePack bytes.

        The C decoder runs alone; the value, packed again, must give the same
        bytes, which a map with a repeated key does not (nor does a sender that
        packs numbers or strings longer than needed, nor a float32): where they
        differ, the strict decoder runs, with every check. Where a non-finite
        float or a timestamp may start, or enough container markers appear to
        nest deep, the decoded value gets a walk with the checks.
        """
        if isinstance(payload, str):
            raise DecodeError("MessagePack travels in binary frames")
        try:
            value = _unpackb(payload, raw=False, ext_hook=_reject_ext)
            if self._pack(value) != payload:
                return self._strict(payload)
        except DecodeError:
            raise
        except Exception as exc:  # msgpack raises many unrelated types for bad input
            raise DecodeError(f"frame is not valid MessagePack: {_why(exc)}") from None
        size = len(payload)
        suspect = len(payload.translate(None, _MARKERS)) != size and _SUSPECT(payload)
        if suspect or (
            size > MAX_DEPTH and size - len(payload.translate(None, _CONTAINERS)) > MAX_DEPTH
        ):
            check_decoded(value)
        return value

    def _strict(self, payload: bytes) -> Any:
        try:
            value = msgpack.unpackb(
                payload, raw=False, object_pairs_hook=_object_strict, ext_hook=_reject_ext
            )
            check_decoded(value)
            return value
        except _RepeatedKey as error:
            marked = msgpack.unpackb(payload, raw=False, object_pairs_hook=_object_marking)
            raise _repeated_error(error, marked) from None
        except DecodeError:
            raise
        except Exception as exc:  # msgpack raises many unrelated types for bad input
            raise DecodeError(f"frame is not valid MessagePack: {_why(exc)}") from None


class CodecSet:
    """The codecs an app speaks, and how a connection picks one.

    Text frames decode with the text codec of the connection's subprotocol, or
    JSON; binary frames with its binary codec, or MessagePack.
    """

    def __init__(self, codecs: Iterable[Codec] | None = None) -> None:
        by_subprotocol: dict[str, Codec] = {}
        for codec in (JSONCodec(), MessagePackCodec(), *(codecs or ())):
            if not isinstance(codec, Codec):
                raise TypeError(f"expected a Codec instance, got {codec!r}")
            if codec.frame_type not in ("text", "binary"):
                raise ValueError(f"frame_type must be 'text' or 'binary', got {codec.frame_type!r}")
            by_subprotocol[codec.subprotocol] = codec
        self.by_subprotocol = by_subprotocol
        self.default = by_subprotocol[JSONCodec.subprotocol]
        self._fallback: dict[FrameType, Codec] = {
            "text": self.default,
            "binary": by_subprotocol[MessagePackCodec.subprotocol],
        }

    def negotiate(self, offered: Iterable[str]) -> tuple[Codec, str | None]:
        """Pick the first offered subprotocol this app speaks.

        Returns the codec and the subprotocol to accept with (``None`` when the
        client offered none that we speak: JSON, and no subprotocol header).
        """
        for name in offered:
            codec = self.by_subprotocol.get(name)
            if codec is not None:
                return codec, name
        return self.default, None

    def decoders(self, codec: Codec) -> tuple[Codec, Codec]:
        """Return the codecs that decode text and binary frames for ``codec``'s connections."""
        text = codec if codec.frame_type == "text" else self._fallback["text"]
        binary = codec if codec.frame_type == "binary" else self._fallback["binary"]
        return text, binary
