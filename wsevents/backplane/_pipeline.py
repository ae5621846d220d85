"""One task that sends what many queue, in batches: the backplane's pipelining.

What is queued while a batch is out leaves together in the next, so that
concurrent callers share round trips (as Centrifugo's broker auto-pipelines),
and items leave in the order they were queued.

The sender is a task: it runs only when the callers' tasks yield. A caller
that queues many without yielding (a burst published from one handler, each
publish delivering here first) would hold them all until it is done, and
the other processes would get the whole burst at once, late; so a caller
gives the sender a turn (:meth:`Pipeline.turn`) once what it queued has
waited ``HOLD`` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Generic, TypeVar

__all__ = ["HOLD", "Pipeline"]

HOLD = 0.001  # seconds an item may wait for the sender's turn while its caller goes on

T = TypeVar("T")


class Pipeline(Generic[T]):
    """Items queued by any task, sent by one in batches of at most ``most``.

    Args:
        send: sends one batch; it answers its items' callers itself.
        most: the largest batch.
        abandon: answers the items of a batch that ``send`` could not finish
            (the task was cancelled), and what is left at :meth:`stop`.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[None]],
        *,
        most: int,
        abandon: Callable[[list[T]], None] | None = None,
    ) -> None:
        self._send = send
        self._most = most
        self._abandon = abandon
        self._queue: deque[T] = deque()
        self._since = 0.0  # when the queue last went from empty to not
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        """Whether the sending task runs."""
        return self._task is not None

    def start(self) -> None:
        """Start the sending task, in the running loop."""
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(self._ready))

    def put(self, item: T) -> None:
        """Queue ``item``; the sender takes it in its next batch."""
        queue = self._queue
        if not queue:
            self._since = monotonic()
        queue.append(item)
        if self._ready is not None:
            self._ready.set()

    async def turn(self) -> None:
        """Yield once, so that the sender runs, if what is queued has waited ``HOLD``."""
        if self._queue and monotonic() - self._since > HOLD:
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """Send one batch of what is queued now, from the caller's task (at a stop)."""
        if self._queue:
            await self._send(self._take())

    async def stop(self, timeout: float) -> None:
        """Stop the sending task, waiting at most ``timeout`` for it to end."""
        task, self._task = self._task, None
        if self._ready is not None:
            self._ready.set()  # wakes a sender whose command swallowed the cancel
        if task is not None:
            task.cancel()
            # Bounded: redis-py may swallow a cancellation that lands mid-connect.
            await asyncio.wait({task}, timeout=timeout)

    def clear(self) -> None:
        """Drop what is queued, answering its callers."""
        left = list(self._queue)
        self._queue.clear()
        if self._abandon is not None and left:
            self._abandon(left)

    def _take(self) -> list[T]:
        queue = self._queue
        return [queue.popleft() for _ in range(min(len(queue), self._most))]

    async def _run(self, ready: asyncio.Event) -> None:
        while self._task is not None:
            await ready.wait()
            ready.clear()
            while self._queue and self._task is not None:
                batch = self._take()
                try:
                    await self._send(batch)
                except BaseException:
                    if self._abandon is not None:
                        self._abandon(batch)
                    raise
