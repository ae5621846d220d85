"""Dependencies resolved per event, as FastAPI resolves them.

Per event, each dependency is called once however many ask for it (unless
``use_cache=False``), async ones in the event's task, sync ones in a thread
(FastAPI's habit), and a ``yield`` dependency is entered on the event's exit
stack: the receive loop closes it after the handler, once its reply is
sent, with the handler's exception thrown in where it raised. Handlers
without dependencies never come here.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, AsyncExitStack
from types import TracebackType
from typing import Any

from anyio.to_thread import run_sync

from ._depends import Dependency, Kind, Solve

__all__ = ["arguments", "call", "close_after_reply", "closed_after", "invoke"]

logger = logging.getLogger("wsevents")
_MISSING = object()


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


async def call(solve: Solve, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call the function: an async one here, a sync one in a thread."""
    if solve.is_async:
        return await solve.func(*args, **kwargs)
    if not solve.carry_context:
        return await run_sync(functools.partial(solve.func, *args, **kwargs))
    context = contextvars.copy_context()
    result = await run_sync(functools.partial(context.run, solve.func, *args, **kwargs))
    for variable, value in context.items():
        if variable.get(_MISSING) is not value:
            variable.set(value)
    return result


async def invoke(solve: Solve, conn: Any, data: Any) -> Any:
    """Resolve, call, and close the ``yield`` dependencies at once (hooks, ``once`` runs)."""
    if not solve.closes:
        return await call(solve, *await arguments(solve, conn, data, {}, None))
    stack = AsyncExitStack()
    try:
        result = await call(solve, *await arguments(solve, conn, data, {}, stack))
    except BaseException as exc:
        error = await closed_after(stack, exc)
        if error is exc:
            raise
        raise error from exc
    await stack.aclose()
    return result


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
