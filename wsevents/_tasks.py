"""asyncio on every supported Python: a deadline, and a task that starts in the caller's step.

Python 3.10 has no ``asyncio.timeout`` and 3.10 and 3.11 have no eager
tasks; these are the one place that knows, so that the rest of the package
reads the same on every version.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

__all__ = ["EAGER", "deadline", "eager_task", "within"]

T = TypeVar("T")

EAGER = sys.version_info >= (3, 12)  # eager tasks: a coroutine's first step in the caller's

if sys.version_info >= (3, 11):
    # Not anyio's fail_after where asyncio has a timeout: its cancel scope leaves
    # state behind for the life of the task, about 1.4 kB per open connection.
    from asyncio import timeout as deadline
else:  # pragma: no cover - Python 3.10
    from anyio import fail_after

    @asynccontextmanager
    async def deadline(seconds: float | None) -> AsyncIterator[None]:
        """Raise ``TimeoutError`` in this task once ``seconds`` have passed."""
        with fail_after(seconds):
            yield


def eager_task(
    coroutine: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Task[None]:
    """Start ``coroutine`` as a task whose first step runs now, in the caller's step (3.12+).

    It ends there when nothing waits (no task is scheduled); otherwise the
    task goes on with it, in its own context, as any task. Only where
    :data:`EAGER` is true.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    return asyncio.Task(coroutine, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """What ``awaitable`` gives, or ``TimeoutError`` once ``seconds`` have passed.

    Awaited in the caller's task, never in one of its own: on 3.10 and 3.11
    ``asyncio.wait_for`` runs it in another task, and a cancel of the caller
    that lands while that task is being cancelled leaves it running alone (a
    Redis connect it made then outlives the client closed after it).
    """
    async with deadline(seconds):
        return await awaitable
