"""Parameter binding at registration: how to call a handler or a hook, worked out once.

A handler's parameters are bound by annotation and name when its decorator
runs: the connection, the validated data, a path parameter, the close code
of ``on_disconnect``. The result is an invoker, ``invoke(conn, data)``, that
the receive loop calls without looking at the signature again. The data's
model and the reply are read from the annotations where not given, as
FastAPI does.

Over 300 lines: every rule of binding, each with the error that names what it
expected, in one place.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import typing_extensions
from pydantic import BaseModel, PydanticSchemaGenerationError, TypeAdapter

from .exceptions import PayloadError, RegistrationError

__all__ = [
    "Hook",
    "Invoker",
    "Source",
    "adapter",
    "bind",
    "bind_hook",
    "data_annotation",
    "docstring_of",
    "dumper",
    "model_like",
    "return_annotation",
]

Invoker = Callable[[Any, Any], Any]


class Source(Enum):
    CONNECTION = "connection"
    DATA = "data"
    PATH = "path"
    CLOSE_CODE = "close code"


@dataclass(frozen=True, eq=False)
class Hook:
    """An ``on_connect`` or ``on_disconnect`` function, bound at registration."""

    func: Callable[..., Any]
    invoke: Invoker
    is_async: bool


def bind_hook(
    func: Callable[..., Any], what: str, params: Iterable[str] = (), *, close_code: bool = False
) -> Hook:
    """Bind a lifecycle hook's parameters: the connection, path parameters, ``code``."""
    sources = (Source.CONNECTION, Source.CLOSE_CODE) if close_code else (Source.CONNECTION,)
    invoke, is_async = bind(func, what, tuple(params), model=None, sources=sources)
    return Hook(func=func, invoke=invoke, is_async=is_async)


def docstring_of(func: Callable[..., Any]) -> tuple[str | None, str | None]:
    doc = inspect.getdoc(func) if getattr(func, "__doc__", None) else None
    if not doc:
        return None, None
    summary, _, rest = doc.partition("\n")
    return summary.strip() or None, rest.strip() or None


def adapter(model: Any, what: str, role: str) -> TypeAdapter[Any]:
    if model is object:
        raise RegistrationError(
            f"{what}: {role} object says nothing pydantic can check or write as JSON: "
            "use a model, a standard type, or typing.Any for any JSON value"
        )
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(model)
        if not adapter.pydantic_complete:
            adapter.rebuild(raise_errors=True)
    except PydanticSchemaGenerationError as exc:
        if not isinstance(model, type):
            raise RegistrationError(
                f"{what}: {role} {model!r} is not a type pydantic can validate: {exc}"
            ) from exc
        name = model.__qualname__
        raise RegistrationError(
            f"{what}: {role} {name} is a class pydantic cannot validate: make it a "
            "pydantic BaseModel, a dataclass or a TypedDict"
        ) from exc
    except Exception as exc:
        raise RegistrationError(
            f"{what}: {role} {model!r} is not a type pydantic can validate: {exc}"
        ) from exc
    if role == "reply":
        try:
            adapter.json_schema(mode="serialization")
        except Exception as exc:
            raise RegistrationError(
                f"{what}: reply {model!r} cannot be written as JSON: {exc}"
            ) from exc
    return adapter


def data_annotation(
    func: Callable[..., Any], what: str, path_params: tuple[str, ...], path: str = ""
) -> Any:
    """The model a handler's annotations name for its data, or ``None``.

    The parameter named ``data``, else the one parameter annotated with a
    model-like type (:func:`model_like`) and not named after a path
    parameter. Another parameter annotated with a plain type (``usr: str``
    on ``/n/{user}``) is a typo, not the data: an error naming the path
    parameter it is closest to.
    """
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None  # _bind says why
    hints = _hints(func)
    annotated = {
        name: hints.get(name, parameter.annotation)
        for name, parameter in parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    if "data" in annotated:
        found = annotated["data"]
        return None if found is inspect.Parameter.empty else _resolved(func, found, "data", what)
    candidates = {
        name: annotation
        for name, annotation in annotated.items()
        if annotation is not inspect.Parameter.empty
        and not _is_connection(annotation)
        and name not in path_params
    }
    if len(candidates) > 1:
        raise RegistrationError(
            f"{what}: {' and '.join(map(repr, candidates))} could each take the event's data: "
            "name the one that does 'data', or pass model="
        )
    for name, annotation in candidates.items():
        found = _resolved(func, annotation, name, what)
        if not model_like(found):
            raise RegistrationError(
                f"{what}: {_not_a_path_parameter(name, path_params, path)} name the data "
                "parameter 'data' or pass model="
            )
        return found
    return None


def model_like(annotation: Any) -> bool:
    """Whether ``annotation`` reads as the shape of a payload, not as one plain value.

    A pydantic model, a dataclass, a ``TypedDict``, a collection (``list``,
    ``dict[str, int]``, a ``NamedTuple``), an ``Annotated`` or a union of such;
    not ``str``, ``int``, an ``Enum``, ``Literal`` or ``Any``.
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return model_like(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return all(model_like(member) for member in members)
    shape = origin if isinstance(origin, type) else annotation
    if not isinstance(shape, type):
        return False
    if issubclass(shape, BaseModel) or dataclasses.is_dataclass(shape):
        return True
    if typing.is_typeddict(shape) or typing_extensions.is_typeddict(shape):
        return True
    return issubclass(shape, Collection) and not issubclass(shape, (str, bytes, bytearray))


def _not_a_path_parameter(name: str, path_params: Iterable[str], path: str) -> str:
    """``name`` takes no path parameter: the one it is closest to, where one is close."""
    where = f" of {path!r}" if path else ""
    close = difflib.get_close_matches(name, list(path_params), n=1, cutoff=0.6)
    guess = f": did you mean {close[0]!r}?" if close else "."
    return f"{name!r} is not a path parameter{where}{guess}"


def _resolved(func: Callable[..., Any], annotation: Any, name: str, what: str) -> Any:
    """An annotation that names a type; a string Python cannot resolve is an error."""
    if not isinstance(annotation, str):
        return annotation
    try:  # the hints of the whole function failed: this one may still resolve
        # The handler's own annotation, in its own module: what get_type_hints does too.
        return eval(annotation, getattr(func, "__globals__", {}))
    except Exception:
        pass
    role = "the return" if name == "return" else f"parameter {name!r}"
    raise RegistrationError(
        f"{what}: the annotation {annotation!r} of {role} cannot be resolved (a class "
        "defined inside a function, with `from __future__ import annotations`?): define it "
        f"at module level, or pass {'reply' if name == 'return' else 'model'}= explicitly"
    )


def return_annotation(func: Callable[..., Any], what: str) -> Any:
    """The reply a handler's return annotation names: ``None`` for none or ``-> None``."""
    found = _hints(func).get("return")
    if found is None and callable(func):
        try:  # unresolved hints: the raw annotation, a string
            found = inspect.signature(func).return_annotation
        except (TypeError, ValueError):
            return None
        found = None if found is inspect.Signature.empty or found == "None" else found
    if found is None or found is type(None):
        return None
    found = _resolved(func, found, "return", what)
    if found is object:
        raise RegistrationError(
            f"{what}: its return annotation object says nothing a client can rely on: "
            "annotate a model, a standard type or typing.Any, or pass reply="
        )
    return found


def dumper(type_adapter: TypeAdapter[Any], *, event: str | None = None) -> Callable[[Any], Any]:
    """Return a function that validates a value and dumps it to JSON-compatible data."""
    validate, dump = type_adapter.validate_python, type_adapter.dump_python

    def validate_and_dump(value: Any) -> Any:
        try:
            return dump(validate(value), mode="json", by_alias=True)  # as replies are
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            if event is None:
                raise
            raise PayloadError(f"data for event {event!r} does not match its model: {exc}") from exc

    return validate_and_dump


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    if not callable(func):
        return {}  # _bind says so
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else func.__call__  # type: ignore[operator]
    try:
        return typing.get_type_hints(target, include_extras=True)  # Annotated's Field(...) too
    except Exception:  # unresolvable string annotations: fall back to names below
        return {}


def _is_connection(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == "Connection"
    return bool(getattr(annotation, "__wsevents_connection__", False))


def _is_model(annotation: Any, model: Any) -> bool:
    if model is None or annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):
        return annotation == getattr(model, "__name__", None)
    return bool(annotation is model or annotation == model)


def bind(
    func: Callable[..., Any],
    what: str,
    path_params: tuple[str, ...],
    *,
    model: Any,
    sources: tuple[Source, ...],
) -> tuple[Invoker, bool]:
    """Work out, once, how to call ``func`` with ``(connection, data)``."""
    if not callable(func):
        raise RegistrationError(f"{what}: expected a function, got {func!r}")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{what}: cannot read its signature") from exc
    hints = _hints(func)
    positional: list[tuple[Source, str]] = []
    keyword: list[tuple[str, Source, str]] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise RegistrationError(f"{what}: *args and **kwargs cannot be bound")
        annotation = hints.get(name, parameter.annotation)
        if _is_connection(annotation):
            source = Source.CONNECTION
        elif Source.DATA in sources and name == "data":
            source = Source.DATA
        elif name in path_params:  # before the model: `room: str` with model=str is the room
            source = Source.PATH
        elif Source.DATA in sources and _is_model(annotation, model):
            source = Source.DATA
        elif Source.CLOSE_CODE in sources and name == "code":
            source = Source.CLOSE_CODE
        else:
            expected = ["a Connection"]
            if Source.DATA in sources:
                expected.append("'data' or the event's model")
            expected += [repr(p) for p in path_params]
            if Source.CLOSE_CODE in sources:
                expected.append("'code'")
            hint = ""
            if annotation is inspect.Parameter.empty and name in ("conn", "connection", "ws"):
                hint = f"; to get the connection, annotate it: {name}: Connection"
            elif close := difflib.get_close_matches(name, list(path_params), n=1, cutoff=0.6):
                hint = f"; did you mean the path parameter {close[0]!r}?"
            raise RegistrationError(
                f"{what}: cannot bind parameter {name!r}; expected {', '.join(expected)}{hint}"
            )
        if parameter.kind is parameter.KEYWORD_ONLY:
            keyword.append((name, source, name))
        else:
            positional.append((source, name))
    is_async = inspect.iscoroutinefunction(func) or (
        not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
    )
    return _invoker(func, positional, keyword), is_async


def _getter(source: Source, name: str) -> Callable[[Any, Any], Any]:
    if source is Source.CONNECTION:
        return lambda conn, data: conn
    if source is Source.PATH:
        return lambda conn, data: conn.params[name]
    return lambda conn, data: data  # the payload, or the close code for on_disconnect


def _invoker(
    func: Callable[..., Any],
    positional: list[tuple[Source, str]],
    keyword: list[tuple[str, Source, str]],
) -> Invoker:
    # The common shapes get a direct call; the per-frame cost is one lambda.
    if not keyword:
        shape = tuple(source for source, _ in positional)
        conn, data = Source.CONNECTION, Source.DATA
        if shape == ():
            return lambda c, d: func()
        if shape in ((conn,),):
            return lambda c, d: func(c)
        if shape in ((data,), (Source.CLOSE_CODE,)):
            return lambda c, d: func(d)
        if shape in ((conn, data), (conn, Source.CLOSE_CODE)):
            return lambda c, d: func(c, d)
    args = [_getter(source, name) for source, name in positional]
    kwargs = [(key, _getter(source, name)) for key, source, name in keyword]

    def invoke(c: Any, d: Any) -> Any:
        return func(*[get(c, d) for get in args], **{key: get(c, d) for key, get in kwargs})

    return invoke
