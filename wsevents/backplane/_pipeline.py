"""One task that sends what many queue, in batches: the backplane's pipelining.

What is queued while a batch is out leaves together in the next, so that
concurrent callers share round trips (as Centrifugo's broker auto-pipelines),
and items leave in the order they were queued.

The sender is a task: it runs only when the callers' tasks yield. A caller
that queues many without yielding (a burst published from one handler, each
publish delivering here first) would hold them all until it is done, and
the other processes would get the whole burst at once, late. A single yield
is not enough either: the sender needs a turn of the loop to read its last
reply and one more to send, and each turn waits for the publisher's next
delivery. So a caller whose queue has waited ``HOLD`` waits until the sender
took it (:meth:`Pipeline.turn`), ``WAIT`` at most: the other processes hear a
burst as it goes, and a process that shares its core with them lets them run.

A caller that finds nothing queued and nothing out (:attr:`Pipeline.idle`)
may send its own item from its task instead (:meth:`Pipeline.alone`): a
sequential caller pays its round trip and no hop through the sender.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Generic, TypeVar

from .._tasks import deadline

__all__ = ["HOLD", "Pipeline"]

HOLD = 0.001  # seconds an item may wait for the sender's turn while its caller goes on
WAIT = 0.005  # the longest a caller then waits for the sender to take it

T = TypeVar("T")
R = TypeVar("R")


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
        self._out = 0  # batches on their way, the sender's and callers' own
        self._taken: asyncio.Future[None] | None = None  # callers in turn() wait on it
        self._stuck = False  # the sender did not take in WAIT: callers go on until it does
        self._solo = 0  # callers' own items out (alone): the sender's next batch waits
        self._free = asyncio.Event()
        self._free.set()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> bool:
        """Whether the sending task runs."""
        return self._task is not None

    @property
    def idle(self) -> bool:
        """Whether nothing is queued and nothing is out: a caller may go :meth:`alone`."""
        return not self._queue and not self._out

    async def alone(self, sending: Awaitable[R]) -> R:
        """Await ``sending`` (the caller's item, sent from its task) as a batch out.

        Items queued meanwhile go in the sender's next batch, as they would
        behind one of its own.
        """
        self._out += 1
        self._solo += 1
        self._free.clear()
        try:
            return await sending
        finally:
            self._out -= 1
            self._solo -= 1
            if not self._solo:
                self._free.set()

    def start(self) -> None:
        """Start the sending task, in the running loop."""
        self._ready = asyncio.Event()
        self._free = asyncio.Event()  # of this loop, as _ready (a backplane may start again)
        self._free.set()
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
        """If what is queued has waited ``HOLD``, wait until the sender took it, ``WAIT`` at most.

        A sender that did not take it in time (Redis hangs, or this process
        had no CPU) is not waited for again until it takes a batch, only given
        its turn: a publish is held up once, not each time.
        """
        if not self._queue or monotonic() - self._since <= HOLD:
            return
        if self._stuck:
            await asyncio.sleep(0)  # its turn, without waiting for it
            return
        taken = self._taken
        if taken is None:
            taken = self._taken = asyncio.get_running_loop().create_future()
        try:
            async with deadline(WAIT):
                await asyncio.shield(taken)
        except TimeoutError:
            self._stuck = True

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
        taken, self._taken, self._stuck = self._taken, None, False
        if taken is not None and not taken.done():
            taken.set_result(None)
        queue = self._queue
        return [queue.popleft() for _ in range(min(len(queue), self._most))]

    async def _run(self, ready: asyncio.Event) -> None:
        while self._task is not None:
            await ready.wait()
            ready.clear()
            while self._queue and self._task is not None:
                if self._solo:  # behind a caller's own, as behind a batch of its own
                    await self._free.wait()
                    continue
                batch = self._take()
                self._out += 1
                try:
                    await self._send(batch)
                except BaseException:
                    if self._abandon is not None:
                        self._abandon(batch)
                    raise
                finally:
                    self._out -= 1
