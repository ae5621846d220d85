"""Frames for flat models checked in one pass, from the payload as it came.

For the handlers of a channel whose ``model`` is a flat pydantic model (its
fields are ``str``, ``int``, ``float``, ``bool``, ``None``, ``Literal``s and
unions of them; no model validator, no extra fields kept), where the general
path decodes, walks the value, reads the envelope and validates the data in
four steps:

- a JSON text: msgspec's decoder reads the envelope into a struct (``event`` a
  string, ``data`` an object, ``id`` checked), then the handler's model
  validates ``data`` (:meth:`OnePass.text`);
- a MessagePack frame: msgspec's decoder reads it into the same kind of
  struct, which msgspec must encode again to the same bytes, then the
  handler's model validates ``data`` (:meth:`OnePass.binary`). A frame whose
  keys come in another order, or that holds binary data, is decoded to a map
  instead, encoded again to the same bytes, its envelope read in Python.

The data is validated as the general path validates it (pydantic, in Python
mode, on the decoded values), and every rule the codecs enforce still holds:

- repeated keys: the JSON text must hold no more keys than the decoder read
  (:func:`keys_match`), which keeps one value of a repeated
  key, so the counts differ (a nested object it refuses). A MessagePack map
  with a repeated key packs again shorter.
- numbers: integers within 64 bits and finite floats. The struct takes in
  ``data`` only scalars, integers within int64 (wider ones, valid up to
  2**64-1, take a slower path) and finite floats; the MessagePack map pass
  checks the floats as decoded (MessagePack holds no wider integer).
- MessagePack extension values: msgspec decodes a timestamp to a
  ``datetime`` and any other extension to an ``Ext``; no flat field accepts
  either.
- a key the envelope would ignore sends the frame to the general path, and so
  does, in a MessagePack map, a key the model would ignore: the codec checks
  what it holds (depth, numbers, extensions). In a struct such a key holds a
  scalar the decoder has checked.
- ids: a string of at most 128 characters, or an integer within 2**53-1, or null.

Anything that does not pass returns ``None`` and takes the general path,
which gives the exact error, so this pass changes speed, not answers.

Over 300 lines: the two passes and the rules they keep (the envelope, trace
context included, and the codecs' checks) in one place, beside each other.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import BaseModel

from ._envelope import MAX_ID_LENGTH, MAX_SAFE_INTEGER, RequestId


class Decoding(NamedTuple):
    """How one event's data is read: the type it is validated as, and its validator.

    A channel's decoding table maps each event it handles to one of these;
    the routing builds it once, and a codec builds its one-pass decoder from
    it (:meth:`wsevents.codecs.Codec.envelope_decoder`).
    """

    model: Any
    validate: Callable[[Any], Any] | None


Trace = tuple[str, "str | None"]  # a frame's traceparent and tracestate, as it wrote them
# The event, its validated data, the id, the trace context (None: the frame carries none).
Found = tuple[str, Any, RequestId, "Trace | None"]

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "Decoding",
    "Found",
    "OnePass",
    "Trace",
    "is_flat_model",
    "is_plain_model",
    "keys_match",
]

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # the integers a frame may hold


def keys_match(text: str, members: int) -> bool:
    """Whether the JSON ``text`` holds no more keys than the ``members`` its objects kept.

    Every key is followed by a colon outside a string, so ``members`` colons
    in all leave no room for a repeated key; failing that (a colon inside a
    string), ``members`` occurrences of ``":``, where no ``"`` meets whitespace.
    """
    if text.count(":") == members:
        return True
    return text.count('":') == members and not (
        '" ' in text or '"\n' in text or '"\t' in text or '"\r' in text
    )


_SCALARS = (str, int, float, bool, type(None))


# A value of a flat model's field, as the passes decode it: an integer within
# int64 (a valid wider one, up to 2**64-1, takes a slower path: JSON can hold
# integers of any size, which msgspec would decode), a finite float (in JSON
# msgspec refuses one that overflows), a string, a bool or null. Anything else
# (an array, an object, MessagePack binary data or an extension) is for the
# slower paths, whose codecs check it.
_Scalar = Union[  # noqa: UP007 - a runtime type for msgspec
    Annotated[int, Meta(ge=INT_MIN, le=2**63 - 1)],
    Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)],
    str,
    bool,
    None,
]


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A frame's envelope as the passes read it: ``data`` an object of scalars, ``id`` checked."""

    event: str
    data: dict[str, _Scalar]
    id: (
        Annotated[int, Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
        | Annotated[str, Meta(max_length=MAX_ID_LENGTH)]
        | UnsetType
        | None
    ) = UNSET
    # W3C Trace Context (DESIGN.md section 13): read in the same pass, checked by
    # the telemetry that uses it (a malformed one is ignored there).
    traceparent: str | UnsetType = UNSET
    tracestate: str | UnsetType = UNSET


def _trace(frame: _Envelope) -> tuple[Trace | None, int]:
    """A frame's trace context, and how many keys of the envelope hold it."""
    traceparent, tracestate = frame.traceparent, frame.tracestate
    keys = (traceparent is not UNSET) + (tracestate is not UNSET)
    if traceparent is UNSET:
        return None, keys  # a tracestate alone means nothing
    return (traceparent, None if tracestate is UNSET else tracestate), keys


def _is_scalar(annotation: Any) -> bool:
    if annotation in _SCALARS:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(type(value) in _SCALARS for value in get_args(annotation))
    if origin is Union or origin is types.UnionType:
        return all(_is_scalar(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _is_scalar(get_args(annotation)[0])
    return False


def is_flat_model(model: Any) -> bool:
    """Whether ``model`` can be validated in one pass from the frame as it came.

    A pydantic model whose fields all hold scalars takes no nested object, so
    the frame's keys are the envelope's and those of one flat ``data`` object,
    which the pass can count and check; a model validator could change
    ``model_fields_set`` (which the MessagePack pass compares with the keys),
    and kept extra fields could hold anything, so models with either take the
    general path.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    if getattr(model, "__pydantic_root_model__", False):
        return False
    if model.model_config.get("extra") == "allow":
        return False
    if model.__pydantic_decorators__.model_validators:
        return False
    return all(_is_scalar(field.annotation) for field in model.model_fields.values())


def is_plain_model(model: Any) -> bool:
    """Whether an instance of ``model`` serializes to its ``__dict__``, as it is.

    A flat model with no aliases, no excluded fields, no serializers, no
    computed fields and infinite floats written as ``null`` in JSON (pydantic's
    default): pydantic-core would give the same dict, so the codecs encode the
    instance's own without building another.
    """
    if not is_flat_model(model) or model.model_config.get("ser_json_inf_nan", "null") != "null":
        return False
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
        return False
    return all(
        field.alias is None
        and field.serialization_alias is None
        and not field.exclude
        and getattr(field, "exclude_if", None) is None
        for field in model.model_fields.values()
    )


class OnePass:
    """The one-pass validators of one channel's events.

    :meth:`text` validates a JSON text frame for the events of flat models,
    :meth:`binary` a MessagePack frame.
    """

    def __init__(self, table: Mapping[str, Decoding]) -> None:
        # Per event of a flat model: its validator.
        self._table = {
            event: decoding.validate
            for event, decoding in table.items()
            if is_flat_model(decoding.model)
        }
        # Bound once: every connection of the channel shares them.
        self.text_pass = self.text if self._table else None
        self.binary_pass = self.binary if self._table else None

    @property
    def flat(self) -> frozenset[str]:
        """The events whose frames can take the pass."""
        return frozenset(self._table)

    def text(self, text: str) -> Found | None:
        """Return ``(event, data, id, trace)`` for a JSON text, or ``None``: the general path."""
        try:
            frame = _decode_json(text)
            event = frame.event
            validate = self._table[event]
            fields = frame.data
            data = validate(fields)  # type: ignore[misc]  # flat: a model
        except Exception:  # anything amiss: the general path gives the exact answer
            return None
        # Every key of the text read once: none repeated (the decoder would have kept
        # the last), no nested object. A key the model ignores may stay: its value
        # is a scalar the decoder checked, as the codec would have.
        request_id = frame.id
        members = len(fields) + 2 if request_id is UNSET else len(fields) + 3
        trace = None
        if frame.traceparent is not UNSET or frame.tracestate is not UNSET:
            trace, keys = _trace(frame)
            members += keys
        if text.count(":") != members and not keys_match(text, members):
            return None
        return event, data, None if request_id is UNSET else request_id, trace

    def binary(self, payload: bytes) -> Found | None:
        """Return ``(event, data, id, trace)`` for a MessagePack frame, or ``None``."""
        try:
            frame = _decode_envelope(payload)
        except Exception:  # binary data, an extension, a nested value: the map itself
            return self._binary_map(payload)
        # Canonical bytes, in the envelope's order (event, data, id): no repeated key
        # (the decoder keeps one), no float32, nothing packed longer than needed.
        if _encode(frame) != payload:
            return self._binary_map(payload)
        try:
            event = frame.event
            data = self._table[event](frame.data)  # type: ignore[misc]  # flat: a model
        except Exception:  # anything amiss: the general path gives the exact answer
            return None
        # Every value checked by the decoder, as the codec would have (a key the model
        # ignores included): the envelope and the numbers.
        request_id = frame.id
        trace = None
        if frame.traceparent is not UNSET or frame.tracestate is not UNSET:
            trace = _trace(frame)[0]
        return event, data, None if request_id is UNSET else request_id, trace

    def _binary_map(self, payload: bytes) -> Found | None:
        """The pass for a frame in another key order, or holding more than scalars."""
        try:
            value = _decode(payload)
            # Canonical bytes: no repeated key, no float32, nothing packed longer than
            # needed (msgspec packs as msgpack's packer does, in about a third of its time).
            if _encode(value) != payload:
                return None
            # Not a map, no event, an event that is not a str key: all raise or miss.
            event = value["event"]
            validate = self._table[event]
            request_id = value.get("id")
            if request_id is not None:
                kind = type(request_id)
                if kind is int:
                    if not -MAX_SAFE_INTEGER <= request_id <= MAX_SAFE_INTEGER:
                        return None
                elif kind is not str or len(request_id) > MAX_ID_LENGTH:
                    return None
            fields = value["data"]
            data = validate(fields)  # type: ignore[misc]  # flat: a model
        except Exception:  # anything amiss: the general path gives the exact answer
            return None
        # Nothing the model ignored, at either level: the codec's checks (depth,
        # finite floats, no extensions) would look at it, so the general path must
        # (a frame with trace context in another order takes it too).
        if len(fields) != len(data.__pydantic_fields_set__) or len(value) != (
            3 if "id" in value else 2
        ):
            return None
        # The codec's number check, on the values as decoded: MessagePack holds no
        # wider integer, so floats alone need a look.
        for number in fields.values():
            if number.__class__ is float and number - number != 0.0:  # infinite or NaN
                return None
        return event, data, request_id, None


_decode_json = msgspec.json.Decoder(_Envelope).decode
_decode_envelope = msgspec.msgpack.Decoder(_Envelope).decode
_decode = msgspec.msgpack.Decoder().decode
_encode = msgspec.msgpack.Encoder().encode
