"""Dependencies: parameters whose default is ``Depends(...)``, resolved per event as FastAPI does.

A handler or a hook may declare ``db = Depends(get_db)`` (or
``Annotated[Db, Depends(get_db)]``), FastAPI's ``Depends`` or wsevents' own
where FastAPI is not installed (``wsevents.Depends`` is FastAPI's where it
is). What a dependency takes is bound at registration by the handler's own
rules (the connection, the data, a path parameter, another dependency);
per event, each dependency is called once however many ask for it (unless
``use_cache=False``), async ones in the event's task, sync ones in a
thread, and a ``yield`` dependency is closed after the handler, once its
reply is sent, with the handler's exception thrown in where it raised.
Handlers without dependencies never come here.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Union

from anyio.to_thread import run_sync

__all__ = [
    "Dependency",
    "Depends",
    "Kind",
    "Solve",
    "arguments",
    "close_after_reply",
    "closed_after",
    "is_marker",
    "kind_of",
]

logger = logging.getLogger("wsevents")

_MISSING = object()


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


async def _value(
    dependency: Dependency, conn: Any, data: Any, cache: dict[Any, Any], stack: Any
) -> Any:
    """A dependency's value for one event: from ``cache`` where it was called already."""
    if dependency.use_cache:
        value = cache.get(dependency.call, _MISSING)
        if value is not _MISSING:
            return value
    args, kwargs = await arguments(dependency, conn, data, cache, stack)
    kind = dependency.kind
    if kind is Kind.ASYNC:
        value = await dependency.call(*args, **kwargs)
    elif kind is Kind.ASYNC_GENERATOR:
        value = await stack.enter_async_context(dependency.enter(*args, **kwargs))  # type: ignore[misc]
    elif kind is Kind.GENERATOR:
        value = await stack.enter_async_context(_InThread(dependency.enter(*args, **kwargs)))  # type: ignore[misc]
    else:
        value = await run_sync(functools.partial(dependency.call, *args, **kwargs))
    if dependency.use_cache:
        cache[dependency.call] = value
    return value


async def arguments(
    bound: Dependency | Solve, conn: Any, data: Any, cache: dict[Any, Any], stack: Any
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments of a handler (or a dependency) for one event: getters called,
    dependencies resolved, each once per ``cache`` (a new dict per event), ``yield``
    ones entered on ``stack``."""
    args = []
    for part in bound.positional:
        if part.__class__ is Dependency:
            args.append(await _value(part, conn, data, cache, stack))
        else:
            args.append(part(conn, data))  # type: ignore[operator]
    kwargs = {}
    for key, part in bound.keyword:
        if part.__class__ is Dependency:
            kwargs[key] = await _value(part, conn, data, cache, stack)
        else:
            kwargs[key] = part(conn, data)  # type: ignore[operator]
    return args, kwargs


def _closes(positional: tuple[Part, ...], keyword: tuple[tuple[str, Part], ...]) -> bool:
    for part in (*positional, *(part for _, part in keyword)):
        if part.__class__ is Dependency:
            dependency: Dependency = part
            if dependency.enter is not None or _closes(dependency.positional, dependency.keyword):
                return True
    return False


class _InThread:
    """A sync context manager entered and exited in a worker thread, as FastAPI does."""

    __slots__ = ("_manager",)

    def __init__(self, manager: AbstractContextManager[Any]) -> None:
        self._manager = manager

    async def __aenter__(self) -> Any:
        return await run_sync(self._manager.__enter__)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await run_sync(self._manager.__exit__, kind, exc, traceback)


@dataclass(frozen=True, eq=False)
class Solve:
    """How to call a function with dependencies: its arguments for one event, and the call."""

    func: Callable[..., Any]
    is_async: bool
    positional: tuple[Part, ...]
    keyword: tuple[tuple[str, Part], ...]
    carry_context: bool = False  # a sync hook: what it sets in a ContextVar is set here too

    @functools.cached_property
    def closes(self) -> bool:
        """Whether a ``yield`` dependency is among its own: an exit stack to close after it."""
        return _closes(self.positional, self.keyword)

    async def call(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the function: an async one here, a sync one in a thread."""
        if self.is_async:
            return await self.func(*args, **kwargs)
        if not self.carry_context:
            return await run_sync(functools.partial(self.func, *args, **kwargs))
        context = contextvars.copy_context()
        result = await run_sync(functools.partial(context.run, self.func, *args, **kwargs))
        for variable, value in context.items():
            if variable.get(_MISSING) is not value:
                variable.set(value)
        return result

    async def __call__(self, conn: Any, data: Any) -> Any:
        """Resolve, call, and close the ``yield`` dependencies at once (an invoker)."""
        if not self.closes:
            return await self.call(*await arguments(self, conn, data, {}, None))
        stack = AsyncExitStack()
        try:
            result = await self.call(*await arguments(self, conn, data, {}, stack))
        except BaseException as exc:
            error = await closed_after(stack, exc)
            if error is exc:
                raise
            raise error from exc
        await stack.aclose()
        return result


async def closed_after(stack: AsyncExitStack, exc: BaseException) -> BaseException:
    """Close the ``yield`` dependencies with ``exc`` thrown in: what to answer for.

    A dependency that raises instead (an ``EventError`` for a database
    error) is answered for; one that swallows ``exc`` does not make it an
    answer: ``exc`` still is.
    """
    try:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
    except BaseException as raised:
        return raised
    return exc


async def close_after_reply(stack: AsyncExitStack, func: Callable[..., Any]) -> None:
    """Close the ``yield`` dependencies of a handler that answered: what they raise is logged."""
    try:
        await stack.aclose()
    except Exception:
        name = getattr(func, "__qualname__", repr(func))
        logger.exception("a dependency of handler %s raised as it closed, after the reply", name)
