"""Dependencies as registration sees them: ``Depends(...)`` markers and what each is bound to.

A handler or a hook may declare ``db = Depends(get_db)`` (or
``Annotated[Db, Depends(get_db)]``), FastAPI's ``Depends`` or wsevents' own
where FastAPI is not installed (``wsevents.Depends`` is FastAPI's where it
is). ``_binding`` binds what a dependency takes by the handler's own rules
(the connection, the data, a path parameter, another dependency) into the
records here; ``_solving`` resolves them per event. Nothing here awaits.
"""

from __future__ import annotations

import enum
import functools
import inspect
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Dependency", "Depends", "Getter", "Kind", "Part", "Solve", "is_marker", "kind_of"]


class Depends:
    """wsevents' own ``Depends``, for apps without FastAPI (``wsevents.Depends`` is FastAPI's where
    it is installed, and either is taken).

    ``dependency`` is the callable whose result the parameter gets; without
    it, the parameter's annotation is called. ``use_cache=False`` calls it
    again wherever it is asked for in one event.
    """

    __slots__ = ("dependency", "scope", "use_cache")

    def __init__(
        self,
        dependency: Callable[..., Any] | None = None,
        *,
        use_cache: bool = True,
        scope: str | None = None,
    ) -> None:
        self.dependency = dependency
        self.use_cache = use_cache
        self.scope = scope

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__qualname__", repr(self.dependency))
        cache = "" if self.use_cache else ", use_cache=False"
        return f"Depends({'' if self.dependency is None else name}{cache})"


def is_marker(value: Any) -> bool:
    """Whether ``value`` is a ``Depends(...)``: wsevents' own or FastAPI's (``Security`` too)."""
    if isinstance(value, Depends):
        return True
    params = sys.modules.get("fastapi.params")  # not imported: nothing can be one of its
    return params is not None and isinstance(value, params.Depends)


class Kind(enum.Enum):
    CALL = "a function, run in a thread"
    ASYNC = "an async function"
    GENERATOR = "a generator, entered and closed in a thread"
    ASYNC_GENERATOR = "an async generator"


def kind_of(call: Callable[..., Any]) -> Kind:
    if isinstance(call, type):
        return Kind.CALL
    target = call if inspect.isroutine(call) else type(call).__call__
    if isinstance(target, functools.partial):
        target = target.func
    if inspect.isasyncgenfunction(target):
        return Kind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return Kind.GENERATOR
    if inspect.iscoroutinefunction(target):
        return Kind.ASYNC
    return Kind.CALL


Getter = Callable[[Any, Any], Any]
Part = Union[Getter, "Dependency"]


@dataclass(frozen=True, eq=False)
class Dependency:
    """One ``Depends(call)``, its own parameters bound."""

    call: Callable[..., Any]
    kind: Kind
    use_cache: bool
    positional: tuple[Part, ...]
    keyword: tuple[tuple[str, Part], ...]
    enter: Callable[..., Any] | None = None  # a generator's context manager factory

    @classmethod
    def of(
        cls,
        call: Callable[..., Any],
        use_cache: bool,
        positional: tuple[Part, ...],
        keyword: tuple[tuple[str, Part], ...],
    ) -> Dependency:
        kind = kind_of(call)
        enter: Callable[..., Any] | None = None
        if kind is Kind.ASYNC_GENERATOR:
            enter = asynccontextmanager(call)
        elif kind is Kind.GENERATOR:
            enter = contextmanager(call)
        return cls(call, kind, use_cache, positional, keyword, enter)


def _closes(positional: tuple[Part, ...], keyword: tuple[tuple[str, Part], ...]) -> bool:
    for part in (*positional, *(part for _, part in keyword)):
        if part.__class__ is Dependency:
            dependency: Dependency = part
            if dependency.enter is not None or _closes(dependency.positional, dependency.keyword):
                return True
    return False


@dataclass(frozen=True, eq=False)
class Solve:
    """A function with dependencies, bound: its parameters' getters and dependencies."""

    func: Callable[..., Any]
    is_async: bool
    positional: tuple[Part, ...]
    keyword: tuple[tuple[str, Part], ...]
    carry_context: bool = False  # a sync hook: what it sets in a ContextVar is set here too

    @functools.cached_property
    def closes(self) -> bool:
        """Whether a ``yield`` dependency is among its own: an exit stack to close after it."""
        return _closes(self.positional, self.keyword)
