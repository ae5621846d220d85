"""Frames for flat models checked in one pass, from the payload as it came.

For the handlers of a channel whose ``model`` is a flat pydantic model (its
fields are ``str``, ``int``, ``float``, ``bool``, ``None``, ``Literal``s and
unions of them; no model validator, no extra fields kept), where the general
path decodes, walks the value, reads the envelope and validates the data in
four steps:

- a JSON text: one ``validate_json`` call checks the envelope, picks the
  handler by ``event`` and validates ``data`` (:meth:`OnePass.text`);
- a MessagePack frame: msgspec's decoder, encoded again by msgspec to the
  same bytes, then the envelope read and the data validated by the handler's
  model (:meth:`OnePass.binary`).

They keep every rule the codecs enforce:

- repeated keys: the JSON text must hold no more keys than the validated
  envelope and model read (:func:`~wsevents.codecs.keys_match`): a repeated
  key, an ignored key, a nested object, and the counts differ. A MessagePack
  map with a repeated key packs again shorter.
- MessagePack extension values: msgspec decodes a timestamp to a
  ``datetime`` and any other extension to an ``Ext``; no flat field accepts
  either, and in a key the model or the envelope would ignore they send the
  frame to the general path (below), whose codec refuses them.
- numbers: integers within 64 bits and finite floats, checked on the values
  of the fields that can hold them. A frame with a key the model or the
  envelope would ignore takes the general path, which checks what it holds.
- ids: a string of at most 128 characters, or an integer within 2**53-1, or null.

Every other frame is decoded first (with all of its codec's checks), its
envelope read and its data validated by its handler's model.

Anything that does not pass returns ``None`` and takes the general path,
which gives the exact error, so this pass changes speed, not answers.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from pydantic import BaseModel, Field, Strict, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from ._envelope import MAX_ID_LENGTH, MAX_SAFE_INTEGER, RequestId
from .codecs import INT_MAX, INT_MIN, keys_match

if TYPE_CHECKING:
    from ._routing import Handler

__all__ = ["OnePass", "is_flat_model", "is_plain_model"]

_SCALARS = (str, int, float, bool, type(None))

_RequestId = Union[  # noqa: UP007 - a runtime type for pydantic
    Annotated[int, Strict(), Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)],
    Annotated[str, Strict(), Field(max_length=MAX_ID_LENGTH)],
    None,
]


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


def _holds(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field of type ``annotation`` can hold a value of one of ``kinds``."""
    if annotation in kinds:
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_holds(arg, kinds) for arg in get_args(annotation))
    if origin is Annotated:
        return _holds(get_args(annotation)[0], kinds)
    return False  # a Literal's values are fixed; bool, str and None need no check


def is_flat_model(model: Any) -> bool:
    """Whether ``model`` can be validated from the frame's text in one pass.

    A pydantic model whose fields all hold JSON scalars validates the same in
    JSON mode as in Python mode, and shows in ``model_fields_set`` every key
    it read; a model validator could change that set, and kept extra fields
    could hold anything, so models with either take the general path.
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


def _validator(handlers: list[Handler]) -> Any:
    """A pydantic-core validator of the envelopes of ``handlers``: one union, by ``event``.

    ``event`` must be the string itself, ``id`` strictly an integer or a string.
    """
    envelopes = []
    for index, handler in enumerate(handlers):
        envelopes.append(
            TypedDict(  # type: ignore[operator]
                f"Envelope{index}",
                {
                    "event": Literal[handler.event],
                    "data": handler.model,
                    "id": NotRequired[_RequestId],
                },
            )
        )
    if not envelopes:
        return None
    if len(envelopes) == 1:
        return TypeAdapter(envelopes[0]).validator
    union: Any = Annotated[Union[tuple(envelopes)], Field(discriminator="event")]  # noqa: UP007
    return TypeAdapter(union).validator


class OnePass:
    """The one-pass validators of one channel's handlers.

    :meth:`text` validates a JSON text frame for the flat handlers,
    :meth:`binary` a MessagePack frame.
    """

    def __init__(self, handlers: Iterable[Handler]) -> None:
        flat = [handler for handler in handlers if is_flat_model(handler.model)]

        def fields(handler: Handler, kinds: tuple[type, ...]) -> tuple[str, ...]:
            items = handler.model.model_fields.items()
            return tuple(name for name, field in items if _holds(field.annotation, kinds))

        # Per event: the handler, and the fields whose values need a range check
        # (JSON: integers and floats; MessagePack, which has no wider integers: floats).
        self._text = {handler.event: (handler, fields(handler, (int, float))) for handler in flat}
        self._binary = {
            handler.event: (handler, handler.validate, fields(handler, (float,)))
            for handler in flat
        }
        json = _validator(flat)
        self._validate_json: Any = None if json is None else json.validate_json
        # Bound once: every connection of the channel shares them (see Connection).
        self.text_pass = self.text if json is not None else None
        self.binary_pass = self.binary if flat else None

    @property
    def flat(self) -> dict[str, Handler]:
        """The handlers, by event, whose frames can take the pass."""
        return {event: handler for event, (handler, _) in self._text.items()}

    def text(self, text: str) -> tuple[Handler, Any, RequestId] | None:
        """Return ``(handler, data, id)`` for a JSON text, or ``None`` for the general path."""
        try:
            envelope = self._validate_json(text)
        except ValueError:  # pydantic's ValidationError is a ValueError
            return None
        data = envelope["data"]
        members = len(envelope) + len(data.__pydantic_fields_set__)
        if text.count(":") != members and not keys_match(text, members):
            return None
        handler, numbers = self._text[envelope["event"]]
        if numbers:
            values = data.__dict__
            for name in numbers:
                value = values[name]
                kind = type(value)
                if kind is int:
                    if not INT_MIN <= value <= INT_MAX:
                        return None
                elif kind is float and value - value != 0.0:  # infinite or NaN
                    return None
        return handler, data, envelope.get("id")

    def binary(self, payload: bytes) -> tuple[Handler, Any, RequestId] | None:
        """Return ``(handler, data, id)`` for a MessagePack frame, or ``None``: the general path."""
        try:
            value = _decode(payload)
            # Canonical bytes: no repeated key, no float32, nothing packed longer than
            # needed (msgspec packs as msgpack's packer does, in about a third of its time).
            if _encode(value) != payload:
                return None
            # Not a map, no event, an event that is not a str key: all raise or miss.
            entry = self._binary[value["event"]]
            request_id = value.get("id")
            if request_id is not None:
                kind = type(request_id)
                if kind is int:
                    if not -MAX_SAFE_INTEGER <= request_id <= MAX_SAFE_INTEGER:
                        return None
                elif kind is not str or len(request_id) > MAX_ID_LENGTH:
                    return None
            handler, validate, floats = entry
            fields = value["data"]
            data = validate(fields)  # type: ignore[misc]  # flat: a model
        except Exception:  # anything amiss: the general path gives the exact answer
            return None
        # Nothing the model ignored, at either level: the codec's checks (depth,
        # finite floats, no timestamps) would look at it, so the general path must.
        if len(fields) != len(data.__pydantic_fields_set__) or len(value) != (
            3 if "id" in value else 2
        ):
            return None
        if floats:  # MessagePack cannot hold a wider integer: floats alone need a look
            values = data.__dict__
            for name in floats:
                number = values[name]
                if type(number) is float and number - number != 0.0:  # infinite or NaN
                    return None
        return handler, data, request_id


_decode = msgspec.msgpack.Decoder().decode
_encode = msgspec.msgpack.Encoder().encode
