"""Channels and their handler records, checked at registration.

Everything a frame needs (the validator, the reply serializer, how to call
the handler with which arguments: :mod:`wsevents._binding`) is worked out
here, once, when the decorator runs; the receive loop only looks records up
and calls them.

Over 300 lines: the public ``Channel``, whose every decorator and argument is
documented here, with its path compiling and the checks of an event's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic_core import to_jsonable_python
from starlette.convertors import CONVERTOR_TYPES, Convertor
from starlette.routing import compile_path

from ._binding import (
    Hook,
    Invoker,
    Source,
    adapter,
    bind,
    bind_hook,
    data_annotation,
    docstring_of,
    dumper,
    return_annotation,
)
from ._depends import Solve
from .exceptions import ErrorCode, RegistrationError

__all__ = ["Asked", "Channel", "Emit", "Handler", "Hook", "bind_hook"]

F = TypeVar("F", bound=Callable[..., Any])

RESERVED_EVENTS = frozenset({"error"})
RESERVED_PREFIX = "wsevents."  # the protocol's own events: wsevents.subscribed, ...
MAX_EVENT_LENGTH = 256

_PARAM = re.compile(r"{([^{}:]*)(?::([^{}]*))?}")
_CHANNEL_NAME = re.compile(r"[a-zA-Z0-9.\-_]+")


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
    once: bool = False  # runs at most once per (session, channel, event, id): section 12
    solve: Solve | None = None  # its Depends(...): resolved per event, closed after the reply


@dataclass(frozen=True, eq=False)
class Emit:
    """A server-to-client event declared with ``Channel.emits``."""

    event: str
    model: Any
    summary: str | None
    description: str | None
    dump: Callable[[Any], Any]


@dataclass(frozen=True, eq=False)
class Asked:
    """A server-to-client request declared with ``Channel.asks``."""

    event: str
    model: Any
    reply: Any
    summary: str | None
    description: str | None
    dump: Callable[[Any], Any]
    validate_reply: Callable[[Any], Any] | None


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
        self.revision = 0  # counts the handlers added: a router built before is stale
        self.emitted: dict[str, Emit] = {}
        self.asked: dict[str, Asked] = {}
        self.connect_hooks: list[Hook] = []
        self.disconnect_hooks: list[Hook] = []

    def __repr__(self) -> str:
        return f"Channel({self.address!r})"

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
        once: bool = False,
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
                once=once,
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
        once: bool = False,
    ) -> Handler:
        """Register ``func`` as the handler of client event ``event``.

        Its parameters are bound by annotation and name: one annotated
        ``Connection`` gets the connection; one annotated with ``model``, or named
        ``data``, gets the validated payload; one named after a path parameter
        gets its converted value; one whose default (or ``Annotated``) is
        ``Depends(dep)`` gets what ``dep`` returns, resolved per event as
        FastAPI does (docs/fastapi.md).

        As in FastAPI, what is not given is read from the annotations: without
        ``model``, the data parameter's annotation (``data: Order``, or the one
        parameter annotated with something else than a ``Connection`` or a path
        parameter); without ``reply``, the return annotation (``-> Receipt``;
        ``-> None`` or none: no reply). Given arguments win.

        ``errors`` names the codes the handler raises as ``EventError``, each
        with what it means: ``{"unknown_item": "the item is not on the menu"}``.
        The document, the docs page and the typed clients list them, and
        ``EventTestClient(check_frames=True)`` fails an answer with another.

        With ``once=True`` the handler runs at most once per request: a
        client's request (one with an ``id``, from a client that names its
        session with ``wsevents-session``) sent again after a reconnect, to
        this process or another, gets the first run's answer again, kept in
        the backplane for ``EventApp(request_window=...)`` seconds; one sent
        again while the first still runs waits for its answer. Such a
        handler runs to its end when its connection closes. See
        docs/requests.md for the guarantee.

        Raises:
            RegistrationError: a duplicate or reserved event, a parameter that
                cannot be bound, or a ``model``/``reply`` pydantic cannot validate.
        """
        what = f"handler {callable_name(func)} for event {event!r} on {self!r}"
        self._check_event(event, what, self.handlers)
        if model is None:
            model = data_annotation(func, what, self.params, self.path_format)
        if reply is None:
            reply = return_annotation(func, what)
        # The core validator itself: pydantic's wrapper costs a call per frame.
        validate = (
            None if model is None else adapter(model, what, "model").validator.validate_python
        )
        # A model instance is returned as it is (pydantic does not revalidate it),
        # and dispatch skips even that call for an instance of ``reply_class``.
        validate_reply = (
            None if reply is None else adapter(reply, what, "reply").validator.validate_python
        )
        bound = bind(func, what, self.params, model=model, sources=(Source.CONNECTION, Source.DATA))
        doc_summary, doc_description = docstring_of(func)
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
            invoke=bound.invoke,
            is_async=bound.is_async,
            errors=own_errors,
            once=bool(once),
            solve=bound.solve,
        )
        self.handlers[event] = handler
        self.revision += 1
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
            dump = dumper(adapter(model, what, "model"), event=event)
        emit = Emit(event=event, model=model, summary=summary, description=description, dump=dump)
        self.emitted[event] = emit
        return emit

    def asks(
        self,
        event: str,
        *,
        model: Any = None,
        reply: Any = None,
        summary: str | None = None,
        description: str | None = None,
    ) -> Asked:
        """Declare a request the server makes of this channel's clients: ``conn.request(event)``.

        ``conn.request`` checks its data against ``model`` (as ``send`` checks
        an ``emits`` model) and validates the client's answer with ``reply``,
        returning an instance of it. The document, the docs page and the
        typed clients describe both.
        """
        what = f"server request {event!r} on {self!r}"
        self._check_event(event, what, self.asked)
        dump: Callable[[Any], Any]
        if model is None:
            dump = to_jsonable_python
        else:
            dump = dumper(adapter(model, what, "model"), event=event)
        validate_reply = (
            None if reply is None else adapter(reply, what, "reply").validator.validate_python
        )
        asked = Asked(
            event=event,
            model=model,
            reply=reply,
            summary=summary,
            description=description,
            dump=dump,
            validate_reply=validate_reply,
        )
        self.asked[event] = asked
        return asked

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
