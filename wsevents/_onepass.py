"""JSON frames checked in one pydantic-core pass: the envelope and the data together.

For the handlers of a channel whose ``model`` is a flat pydantic model (its
fields are ``str``, ``int``, ``float``, ``bool``, ``None``, ``Literal``s and
unions of them; no model validator, no extra fields kept), one
``validate_json`` call on the frame's text checks the envelope, picks the
handler by ``event`` and validates ``data``, where the general path decodes,
walks the value, reads the envelope and validates the data in four steps.

It keeps every rule the JSON codec enforces:

- repeated keys: the text must hold no more keys than the validated envelope
  and model read (:func:`~wsevents.codecs.keys_match`). A repeated key, an
  ignored key, a nested object: the counts differ.
- numbers: integers within 64 bits and finite floats, checked on the values
  of the fields that can hold them.
- ids: a string of at most 128 characters, or an integer within 2**53-1, or null.

Every other frame, of any codec, is decoded first (with all of its codec's
checks), and then one ``validate_python`` call on the decoded value does what
reading the envelope and validating the data would do one after the other.

Anything that does not pass returns ``None`` and takes the general path,
which gives the exact error, so these paths change speed, not answers.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, Strict, TypeAdapter
from typing_extensions import NotRequired, TypedDict

from ._envelope import MAX_ID_LENGTH, MAX_SAFE_INTEGER, RequestId
from .codecs import INT_MAX, INT_MIN, keys_match

if TYPE_CHECKING:
    from ._routing import Handler

__all__ = ["OnePass", "is_flat_model"]

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


def _holds_number(annotation: Any) -> bool:
    if annotation is int or annotation is float:
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_holds_number(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _holds_number(get_args(annotation)[0])
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


def _validator(handlers: list[Handler]) -> Any:
    """A pydantic-core validator of the envelopes of ``handlers``: one union, by ``event``.

    ``event`` must be the string itself (bytes do not pass), ``id`` strictly an
    integer or a string.
    Without a model, ``data`` is anything, and may be left out.
    """
    envelopes = []
    for index, handler in enumerate(handlers):
        data: Any = NotRequired[Any] if handler.model is None else handler.model
        envelopes.append(
            TypedDict(  # type: ignore[operator]
                f"Envelope{index}",
                {
                    "event": Literal[handler.event],
                    "data": data,
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

    Calling it validates a JSON text frame for the flat handlers
    (:meth:`__call__`); :meth:`decoded` validates the envelope and data of
    an already decoded frame, of any codec, for every handler, in Python mode:
    exactly what reading the envelope and validating the data one after the
    other would give, in one call.
    """

    def __init__(self, handlers: Iterable[Handler]) -> None:
        every = list(handlers)
        flat = [handler for handler in every if is_flat_model(handler.model)]
        self.handlers = {handler.event: handler for handler in every}
        self.flat = {handler.event: handler for handler in flat}
        self._numbers = {  # per event, the fields whose values need a range check
            handler.event: tuple(
                name
                for name, field in handler.model.model_fields.items()
                if _holds_number(field.annotation)
            )
            for handler in flat
        }
        json = _validator(flat)
        self._validate_json: Any = None if json is None else json.validate_json
        python = _validator(every)
        self._validate_python: Any = None if python is None else python.validate_python

    @property
    def takes_json(self) -> bool:
        """Whether any handler can take the pass from JSON text."""
        return self._validate_json is not None

    def __call__(self, text: str) -> tuple[Handler, Any, RequestId] | None:
        """Return ``(handler, data, id)`` for a JSON text, or ``None`` for the general path."""
        try:
            envelope = self._validate_json(text)
        except ValueError:  # pydantic's ValidationError is a ValueError
            return None
        data = envelope["data"]
        if not keys_match(text, len(envelope) + len(data.__pydantic_fields_set__)):
            return None
        event = envelope["event"]
        numbers = self._numbers[event]
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
        return self.flat[event], data, envelope.get("id")

    def decoded(self, value: Any) -> tuple[Handler, Any, RequestId] | None:
        """Return ``(handler, data, id)`` for a decoded frame, or ``None`` for the general path."""
        if self._validate_python is None:
            return None
        try:
            envelope = self._validate_python(value)
        except ValueError:
            return None
        return self.handlers[envelope["event"]], envelope.get("data"), envelope.get("id")
