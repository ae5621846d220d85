"""Channels, handler records, and parameter binding at registration.

Everything a frame needs (the validator, the reply serializer, how to call
the handler with which arguments) is worked out here, once, when the
decorator runs; the receive loop only looks records up and calls them.

Over 300 lines: registration, parameter binding and path compiling belong
together: each check runs once, when a decorator runs.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import PydanticSchemaGenerationError, TypeAdapter
from pydantic_core import to_jsonable_python
from starlette.convertors import CONVERTOR_TYPES, Convertor
from starlette.routing import compile_path

from .exceptions import ErrorCode, PayloadError, RegistrationError

if TYPE_CHECKING:
    from .codecs import Codec, EnvelopeDecoder

__all__ = ["Channel", "Emit", "Handler", "Hook", "bind_hook"]

F = TypeVar("F", bound=Callable[..., Any])
Invoker = Callable[[Any, Any], Any]

RESERVED_EVENTS = frozenset({"error"})
RESERVED_PREFIX = "wsevents."  # the protocol's own events: wsevents.subscribed, ...
MAX_EVENT_LENGTH = 256

_PARAM = re.compile(r"{([^{}:]*)(?::([^{}]*))?}")
_CHANNEL_NAME = re.compile(r"[a-zA-Z0-9.\-_]+")


class _Source(Enum):
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


@dataclass(frozen=True, eq=False)
class Handler:
    """A client-to-server event and everything needed to serve it."""

    event: str
    func: Callable[..., Any]
    model: Any
    reply: Any
    summary: str | None
    description: str | None
    tags: tuple[str, ...]
    validate: Callable[[Any], Any] | None
    validate_reply: Callable[[Any], Any] | None
    reply_class: type | None  # a return value of exactly this class passes unchecked
    invoke: Invoker
    is_async: bool
    errors: tuple[tuple[str, str], ...] = ()  # its own error codes and what each means


@dataclass(frozen=True, eq=False)
class Emit:
    """A server-to-client event declared with ``Channel.emits``."""

    event: str
    model: Any
    summary: str | None
    description: str | None
    dump: Callable[[Any], Any]


class Channel:
    """A WebSocket endpoint at ``address`` and its handlers.

    Args:
        address: a Starlette-style path: ``/chat/{room}``, ``/items/{id:int}``.
            Starlette compiles it: its convertors (``str``, the default, ``int``,
            ``float``, ``path``, ``uuid``) and any registered with
            ``starlette.convertors.register_url_convertor`` convert the values.
        name: the channel's id in the AsyncAPI document; derived from the address
            when not given.
        title: a short human name.
        description: what the channel is for.
        tags: names to group channels in the docs.
        query: the query parameters its hooks read, name to what to give
            (``{"user": "your name"}``): the document and the docs page's
            console show them.
    """

    def __init__(
        self,
        address: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        query: Mapping[str, str] | None = None,
    ) -> None:
        self.address = address
        self.query = dict(query or {})
        self._regex, self.path_format, self._convertors = _compile_address(address)
        self.params = tuple(self._convertors)
        self.param_kinds = {
            found.group(1): found.group(2) or "str" for found in _PARAM.finditer(address)
        }
        if name is not None and not _CHANNEL_NAME.fullmatch(name):
            raise RegistrationError(
                f"channel name {name!r} must match {_CHANNEL_NAME.pattern!r} (an AsyncAPI key)"
            )
        plain = _PARAM.sub(lambda found: found.group(1), address)
        self.name = name or re.sub(r"[^a-zA-Z0-9.\-_]+", "_", plain).strip("_") or "root"
        self.title = title
        self.description = description
        self.tags = tuple(tags)
        self.handlers: dict[str, Handler] = {}
        self._decoders: dict[Codec, EnvelopeDecoder | None] = {}
        self.emitted: dict[str, Emit] = {}
        self.connect_hooks: list[Hook] = []
        self.disconnect_hooks: list[Hook] = []

    def __repr__(self) -> str:
        return f"Channel({self.address!r})"

    def envelope_decoder(self, codec: Codec) -> EnvelopeDecoder | None:
        """The codec's one-pass decoder for this channel's handlers, built once."""
        try:
            return self._decoders[codec]
        except KeyError:
            decoder = self._decoders[codec] = codec.envelope_decoder(self.handlers)
            return decoder

    def compile(self, codecs: Iterable[Codec]) -> None:
        """Build the per-frame decoders now (the app does at startup), not on first use."""
        for codec in codecs:
            self.envelope_decoder(codec)

    @property
    def is_static(self) -> bool:
        """Whether the address has no path parameters."""
        return not self.params

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the converted path parameters if ``path`` is this channel's, else ``None``."""
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        convertors = self._convertors
        return {name: convertors[name].convert(value) for name, value in found.groupdict().items()}

    def on(
        self,
        event: str,
        *,
        model: Any = None,
        reply: Any = None,
        summary: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        errors: Mapping[str, str] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of client event ``event``.

        Returns the function unchanged. See :meth:`add_handler`.
        """

        def decorator(func: F) -> F:
            self.add_handler(
                event,
                func,
                model=model,
                reply=reply,
                summary=summary,
                description=description,
                tags=tags,
                errors=errors,
            )
            return func

        return decorator

    def add_handler(
        self,
        event: str,
        func: Callable[..., Any],
        *,
        model: Any = None,
        reply: Any = None,
        summary: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        errors: Mapping[str, str] | None = None,
    ) -> Handler:
        """Register ``func`` as the handler of client event ``event``.

        Its parameters are bound by annotation and name: one annotated
        ``Connection`` gets the connection; one annotated with ``model``, or named
        ``data``, gets the validated payload; one named after a path parameter
        gets its converted value.

        As in FastAPI, what is not given is read from the annotations: without
        ``model``, the data parameter's annotation (``data: Order``, or the one
        parameter annotated with something else than a ``Connection`` or a path
        parameter); without ``reply``, the return annotation (``-> Receipt``;
        ``-> None`` or none: no reply). Given arguments win.

        ``errors`` names the codes the handler raises as ``EventError``, each
        with what it means: ``{"unknown_item": "the item is not on the menu"}``.
        The document, the docs page and the typed clients list them, and
        ``EventTestClient(check_frames=True)`` fails an answer with another.

        Raises:
            RegistrationError: a duplicate or reserved event, a parameter that
                cannot be bound, or a ``model``/``reply`` pydantic cannot validate.
        """
        what = f"handler {callable_name(func)} for event {event!r} on {self!r}"
        self._check_event(event, what, self.handlers)
        if model is None:
            model = _data_annotation(func, what, self.params)
        if reply is None:
            reply = _return_annotation(func, what)
        # The core validator itself: pydantic's wrapper costs a call per frame.
        validate = (
            None if model is None else _adapter(model, what, "model").validator.validate_python
        )
        # A model instance is returned as it is (pydantic does not revalidate it),
        # and dispatch skips even that call for an instance of ``reply_class``.
        validate_reply = (
            None if reply is None else _adapter(reply, what, "reply").validator.validate_python
        )
        invoke, is_async = _bind(
            func, what, self.params, model=model, sources=(_Source.CONNECTION, _Source.DATA)
        )
        doc_summary, doc_description = _docstring(func)
        own_errors = _error_codes(errors, what)
        handler = Handler(
            event=event,
            func=func,
            model=model,
            reply=reply,
            summary=summary if summary is not None else doc_summary,
            description=description if description is not None else doc_description,
            tags=tuple(tags),
            validate=validate,
            validate_reply=validate_reply,
            reply_class=reply if isinstance(reply, type) else None,
            invoke=invoke,
            is_async=is_async,
            errors=own_errors,
        )
        self.handlers[event] = handler
        self._decoders.clear()
        return handler

    def emits(
        self,
        event: str,
        *,
        model: Any = None,
        summary: str | None = None,
        description: str | None = None,
    ) -> Emit:
        """Declare server-to-client event ``event``: ``send`` validates against ``model``."""
        what = f"emitted event {event!r} on {self!r}"
        self._check_event(event, what, self.emitted)
        dump: Callable[[Any], Any]
        if model is None:
            dump = to_jsonable_python
        else:
            dump = _dumper(_adapter(model, what, "model"), event=event)
        emit = Emit(event=event, model=model, summary=summary, description=description, dump=dump)
        self.emitted[event] = emit
        return emit

    def on_connect(self, func: F) -> F:
        """Register a hook that runs at the handshake; it may raise ``Reject``."""
        self.connect_hooks.append(
            bind_hook(func, f"on_connect hook {callable_name(func)}", self.params)
        )
        return func

    def on_disconnect(self, func: F) -> F:
        """Register a hook that runs after the connection closed; ``code`` gets the close code."""
        self.disconnect_hooks.append(
            bind_hook(
                func, f"on_disconnect hook {callable_name(func)}", self.params, close_code=True
            )
        )
        return func

    def _check_event(self, event: str, what: str, registered: dict[str, Any]) -> None:
        if not isinstance(event, str) or not event or len(event) > MAX_EVENT_LENGTH:
            raise RegistrationError(
                f"{what}: an event name must be a string of 1 to {MAX_EVENT_LENGTH} characters"
            )
        if event in RESERVED_EVENTS or event.startswith(RESERVED_PREFIX):
            raise RegistrationError(
                f"{what}: the event name {event!r} is reserved"
                f" ({', '.join(sorted(RESERVED_EVENTS))} and every name starting"
                f" with {RESERVED_PREFIX!r})"
            )
        if event in registered:
            raise RegistrationError(f"{what}: event {event!r} is already registered")


_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")


def _error_codes(errors: Mapping[str, str] | None, what: str) -> tuple[tuple[str, str], ...]:
    """Check a handler's own error codes: snake_case, described, none of the protocol's."""
    if errors is None:
        return ()
    if not isinstance(errors, Mapping):
        raise RegistrationError(f"{what}: errors must map each code to what it means")
    protocol = {code.value for code in ErrorCode}
    for code, meaning in errors.items():
        if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
            raise RegistrationError(
                f"{what}: error code {code!r} must be snake_case: lowercase letters, digits, _"
            )
        if code in protocol:
            raise RegistrationError(f"{what}: error code {code!r} is the protocol's own")
        if not isinstance(meaning, str) or not meaning.strip():
            raise RegistrationError(f"{what}: say what error code {code!r} means")
    return tuple(errors.items())


def bind_hook(
    func: Callable[..., Any], what: str, params: Iterable[str] = (), *, close_code: bool = False
) -> Hook:
    """Bind a lifecycle hook's parameters: the connection, path parameters, ``code``."""
    sources = (_Source.CONNECTION, _Source.CLOSE_CODE) if close_code else (_Source.CONNECTION,)
    invoke, is_async = _bind(func, what, tuple(params), model=None, sources=sources)
    return Hook(func=func, invoke=invoke, is_async=is_async)


def _compile_address(address: str) -> tuple[re.Pattern[str], str, dict[str, Convertor[Any]]]:
    """Starlette's ``compile_path``, its errors as registration errors."""
    if not isinstance(address, str) or not address.startswith("/"):
        raise RegistrationError(f"a channel address must start with '/', got {address!r}")
    if len(address) > 1 and address.endswith("/"):
        bare = address.rstrip("/") or "/"
        raise RegistrationError(
            f"channel address {address!r} ends with '/': paths match exactly, so a client "
            f"connecting to {bare!r} would get 404; write {bare!r}"
        )
    for found in _PARAM.finditer(address):
        name, kind = found.group(1), found.group(2) or "str"
        if not name.isidentifier():
            raise RegistrationError(f"bad path parameter name {name!r} in {address!r}")
        if kind not in CONVERTOR_TYPES:
            raise RegistrationError(
                f"unknown convertor {kind!r} for {{{name}}} in {address!r}: "
                f"expected one of {', '.join(CONVERTOR_TYPES)}"
            )
    try:
        regex, path_format, convertors = compile_path(address)
    except ValueError as exc:  # Starlette's words: "Duplicated param name x at path ..."
        raise RegistrationError(f"a path parameter repeats in {address!r}: {exc}") from exc
    literal = _PARAM.sub("", address)
    if "{" in literal or "}" in literal:
        raise RegistrationError(f"unbalanced braces in channel address {address!r}")
    return regex, path_format, convertors


def callable_name(func: Callable[..., Any]) -> str:
    return repr(getattr(func, "__qualname__", None) or type(func).__qualname__)


def _docstring(func: Callable[..., Any]) -> tuple[str | None, str | None]:
    doc = inspect.getdoc(func) if getattr(func, "__doc__", None) else None
    if not doc:
        return None, None
    summary, _, rest = doc.partition("\n")
    return summary.strip() or None, rest.strip() or None


def _adapter(model: Any, what: str, role: str) -> TypeAdapter[Any]:
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


def _data_annotation(func: Callable[..., Any], what: str, path_params: tuple[str, ...]) -> Any:
    """The model a handler's annotations name for its data, or ``None``.

    The parameter named ``data``, else the one parameter annotated with
    something else than a ``Connection`` and not named after a path parameter.
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
        return _resolved(func, annotation, name, what)
    return None


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


def _return_annotation(func: Callable[..., Any], what: str) -> Any:
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


def _dumper(adapter: TypeAdapter[Any], *, event: str | None = None) -> Callable[[Any], Any]:
    """Return a function that validates a value and dumps it to JSON-compatible data."""
    validate, dump = adapter.validate_python, adapter.dump_python

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
        return typing.get_type_hints(target)
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


def _bind(
    func: Callable[..., Any],
    what: str,
    path_params: tuple[str, ...],
    *,
    model: Any,
    sources: tuple[_Source, ...],
) -> tuple[Invoker, bool]:
    """Work out, once, how to call ``func`` with ``(connection, data)``."""
    if not callable(func):
        raise RegistrationError(f"{what}: expected a function, got {func!r}")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{what}: cannot read its signature") from exc
    hints = _hints(func)
    positional: list[tuple[_Source, str]] = []
    keyword: list[tuple[str, _Source, str]] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise RegistrationError(f"{what}: *args and **kwargs cannot be bound")
        annotation = hints.get(name, parameter.annotation)
        if _is_connection(annotation):
            source = _Source.CONNECTION
        elif _Source.DATA in sources and (name == "data" or _is_model(annotation, model)):
            source = _Source.DATA
        elif name in path_params:
            source = _Source.PATH
        elif _Source.CLOSE_CODE in sources and name == "code":
            source = _Source.CLOSE_CODE
        else:
            expected = ["a Connection"]
            if _Source.DATA in sources:
                expected.append("'data' or the event's model")
            expected += [repr(p) for p in path_params]
            if _Source.CLOSE_CODE in sources:
                expected.append("'code'")
            hint = ""
            if annotation is inspect.Parameter.empty and name in ("conn", "connection", "ws"):
                hint = f"; to get the connection, annotate it: {name}: Connection"
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


def _getter(source: _Source, name: str) -> Callable[[Any, Any], Any]:
    if source is _Source.CONNECTION:
        return lambda conn, data: conn
    if source is _Source.PATH:
        return lambda conn, data: conn.params[name]
    return lambda conn, data: data  # the payload, or the close code for on_disconnect


def _invoker(
    func: Callable[..., Any],
    positional: list[tuple[_Source, str]],
    keyword: list[tuple[str, _Source, str]],
) -> Invoker:
    # The common shapes get a direct call; the per-frame cost is one lambda.
    if not keyword:
        shape = tuple(source for source, _ in positional)
        conn, data = _Source.CONNECTION, _Source.DATA
        if shape == ():
            return lambda c, d: func()
        if shape in ((conn,),):
            return lambda c, d: func(c)
        if shape in ((data,), (_Source.CLOSE_CODE,)):
            return lambda c, d: func(d)
        if shape in ((conn, data), (conn, _Source.CLOSE_CODE)):
            return lambda c, d: func(c, d)
    args = [_getter(source, name) for source, name in positional]
    kwargs = [(key, _getter(source, name)) for key, source, name in keyword]

    def invoke(c: Any, d: Any) -> Any:
        return func(*[get(c, d) for get in args], **{key: get(c, d) for key, get in kwargs})

    return invoke
