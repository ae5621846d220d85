"""Parameter binding at registration: how to call a handler or a hook, worked out once.

A handler's parameters are bound by annotation and name when its decorator
runs: the connection, the validated data, a path parameter, the close code
of ``on_disconnect``, a ``Depends(...)`` (its own parameters bound by the
same rules, see ``_depends``). The result is an invoker, ``invoke(conn,
data)``, that the receive loop calls without looking at the signature
again; for a function with dependencies, a ``Solve`` instead, which the
runtime resolves per event (``_solving``) and closes after the reply. The data's
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

from ._depends import Dependency, Getter, Solve, is_marker
from .exceptions import PayloadError, RegistrationError

__all__ = [
    "Bound",
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
    solve: Solve | None = None  # its dependencies: called through _solving, not invoke


def bind_hook(
    func: Callable[..., Any], what: str, params: Iterable[str] = (), *, close_code: bool = False
) -> Hook:
    """Bind a hook's parameters: the connection, path parameters, ``code``, dependencies."""
    sources = (Source.CONNECTION, Source.CLOSE_CODE) if close_code else (Source.CONNECTION,)
    bound = bind(func, what, tuple(params), model=None, sources=sources, carry_context=True)
    return Hook(func=func, invoke=bound.invoke, is_async=bound.is_async, solve=bound.solve)


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
        and _marker(parameter, hints.get(name, parameter.annotation)) is None  # a dependency
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
    if isinstance(func, type):
        target: Any = func.__init__  # type: ignore[misc]  # a class called as a dependency
    elif inspect.isfunction(func) or inspect.ismethod(func):
        target = func
    else:
        target = func.__call__  # type: ignore[operator]
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


class Bound(typing.NamedTuple):
    """How to call a handler or a hook: ``invoke(conn, data)``; ``solve``: its dependencies."""

    invoke: Invoker
    is_async: bool  # invoke returns an awaitable
    solve: Solve | None = None


def bind(
    func: Callable[..., Any],
    what: str,
    path_params: tuple[str, ...],
    *,
    model: Any,
    sources: tuple[Source, ...],
    carry_context: bool = False,
) -> Bound:
    """Work out, once, how to call ``func`` with ``(connection, data)``."""
    if not callable(func):
        raise RegistrationError(f"{what}: expected a function, got {func!r}")
    is_async = inspect.iscoroutinefunction(func) or (
        not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__)
    )
    positional, keyword = _parts(func, what, path_params, model, sources, 0)
    if any(part.__class__ is Dependency for part in positional) or any(
        part.__class__ is Dependency for _, part in keyword
    ):
        solve = Solve(func, is_async, tuple(positional), tuple(keyword), carry_context)
        return Bound(_through_solving, is_async, solve)
    return Bound(_invoker(func, positional, keyword), is_async)


def _parts(
    func: Callable[..., Any],
    what: str,
    path_params: tuple[str, ...],
    model: Any,
    sources: tuple[Source, ...],
    depth: int,
) -> tuple[list[Any], list[tuple[str, Any]]]:
    """Each parameter's source, or its bound dependency: positional ones, then keyword ones."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{what}: cannot read its signature") from exc
    hints = _hints(func)
    positional: list[Any] = []
    keyword: list[tuple[str, Any]] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise RegistrationError(f"{what}: *args and **kwargs cannot be bound")
        annotation = hints.get(name, parameter.annotation)
        part: Any
        if (marker := _marker(parameter, annotation)) is not None:
            part = _dependency(marker, annotation, name, what, path_params, model, sources, depth)
        else:
            source = _source(name, annotation, what, path_params, model, sources)
            part = _getter(source, name)
        if parameter.kind is parameter.KEYWORD_ONLY:
            keyword.append((name, part))
        else:
            positional.append(part)
    return positional, keyword


def _marker(parameter: inspect.Parameter, annotation: Any) -> Any:
    """The ``Depends(...)`` of a parameter, in its default or its ``Annotated``; or ``None``."""
    if is_marker(parameter.default):
        return parameter.default
    if typing.get_origin(annotation) is typing.Annotated:
        for extra in reversed(typing.get_args(annotation)[1:]):
            if is_marker(extra):
                return extra
    return None


def _dependency(
    marker: Any,
    annotation: Any,
    name: str,
    what: str,
    path_params: tuple[str, ...],
    model: Any,
    sources: tuple[Source, ...],
    depth: int,
) -> Dependency:
    call = marker.dependency
    if call is None:  # Depends(): the annotation is called, as FastAPI does
        call = annotation
        if typing.get_origin(call) is typing.Annotated:
            call = typing.get_args(call)[0]
    if isinstance(call, str):
        raise RegistrationError(
            f"{what}: Depends() calls the annotation {call!r} of parameter {name!r}, which "
            "cannot be resolved (a class defined inside a function, with `from __future__ import "
            "annotations`?): define it at module level, or name it in Depends(...)"
        )
    if not callable(call):
        raise RegistrationError(
            f"{what}: the dependency of parameter {name!r} is {call!r}, not something to call"
        )
    if depth > 32:
        raise RegistrationError(f"{what}: dependencies nested more than 32 deep (a cycle?)")
    inner = f"dependency {getattr(call, '__qualname__', repr(call))} of {what}"
    positional, keyword = _parts(call, inner, path_params, model, sources, depth + 1)
    return Dependency.of(call, bool(marker.use_cache), tuple(positional), tuple(keyword))


def _source(
    name: str,
    annotation: Any,
    what: str,
    path_params: tuple[str, ...],
    model: Any,
    sources: tuple[Source, ...],
) -> Source:
    """Where a parameter's value comes from, by its annotation and name."""
    if _is_connection(annotation):
        return Source.CONNECTION
    if Source.DATA in sources and name == "data":
        return Source.DATA
    if name in path_params:  # before the model: `room: str` with model=str is the room
        return Source.PATH
    if Source.DATA in sources and _is_model(annotation, model):
        return Source.DATA
    if Source.CLOSE_CODE in sources and name == "code":
        return Source.CLOSE_CODE
    expected = ["a Connection"]
    if Source.DATA in sources:
        expected.append("'data' or the event's model")
    expected += [repr(p) for p in path_params]
    if Source.CLOSE_CODE in sources:
        expected.append("'code'")
    expected.append("a Depends(...)")
    hint = ""
    shown = getattr(annotation, "__name__", annotation)
    if annotation is inspect.Parameter.empty and name in ("conn", "connection", "ws"):
        hint = f"; to get the connection, annotate it: {name}: Connection"
    elif isinstance(annotation, str) and "Depends(" in annotation:
        hint = (
            f"; its annotation {annotation!r} cannot be resolved (a name defined inside a "
            "function, with `from __future__ import annotations`?): define it at module level"
        )
    elif shown in ("WebSocket", "Request", "HTTPConnection"):
        hint = (
            f"; an event has no Starlette {shown}: take the Connection (conn: Connection), "
            "which has the headers, cookies and query_params of the handshake"
        )
    elif close := difflib.get_close_matches(name, list(path_params), n=1, cutoff=0.6):
        hint = f"; did you mean the path parameter {close[0]!r}?"
    raise RegistrationError(
        f"{what}: cannot bind parameter {name!r}; expected {', '.join(expected)}{hint}"
    )


def _through_solving(conn: Any, data: Any) -> Any:
    """The invoker of a function with dependencies: the runtime calls it through ``_solving``."""
    raise RuntimeError("a function with dependencies is called through wsevents._solving")


def _connection(conn: Any, data: Any) -> Any:
    return conn


def _data(conn: Any, data: Any) -> Any:
    return data  # the payload, or the close code for on_disconnect


_SHAPES: dict[Any, str] = {_connection: "c", _data: "d"}


def _getter(source: Source, name: str) -> Getter:
    if source is Source.CONNECTION:
        return _connection
    if source is Source.PATH:
        return lambda conn, data: conn.params[name]
    return _data


def _invoker(
    func: Callable[..., Any],
    positional: list[Getter],
    keyword: list[tuple[str, Getter]],
) -> Invoker:
    # The common shapes get a direct call; the per-frame cost is one lambda.
    if not keyword:
        shape = tuple(_SHAPES.get(get) for get in positional)
        if shape == ():
            return lambda c, d: func()
        if shape == ("c",):
            return lambda c, d: func(c)
        if shape == ("d",):
            return lambda c, d: func(d)
        if shape == ("c", "d"):
            return lambda c, d: func(c, d)
    args, kwargs = tuple(positional), tuple(keyword)

    def invoke(c: Any, d: Any) -> Any:
        return func(*[get(c, d) for get in args], **{key: get(c, d) for key, get in kwargs})

    return invoke
