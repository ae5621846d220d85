"""One publication to many connections, each send whole in one task, none waiting for another.

:func:`push_all` is what the broker calls for a publication's subscribers
(``Broker(push_all=...)``). The frames with nothing queued ahead of them are
sent one after another from one eager task, in the publisher's step (Python
3.12+), as a hand-written loop over ``send`` would: no task per subscriber.
When one of those sends has to wait (that client is not reading), the task
is left to finish that one send, the connection holds it (an abort cancels
it there), and the rest go on from a new task: nobody waits for that client.
Python 3.10 and 3.11 have no eager tasks: there the task starts in the
loop's next turn, and a callback queued behind its first step sees whether
it stopped at a send that waits, and starts the next; what is pushed to a
connection while the task waits for its turn goes out from it too, right
after (other publishers', made meanwhile), with no writer woken for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._tasks import EAGER, eager_task

if TYPE_CHECKING:
    from starlette.types import Message

    from ._session import Frame, Session

__all__ = ["push_all"]


def push_all(pushes: Iterable[tuple[Session, Frame]]) -> bool:
    """Push a frame to each session; return whether one queued and its queue is half full."""
    backlog = False
    due: list[tuple[Session, Message]] = []
    for session, frame in pushes:
        message = session.take(frame)
        if message is not None:
            due.append((session, message))
        elif session.backlogged:
            backlog = True
    if due:
        FanOut(due).send()
    return backlog


class FanOut:
    """Sends to many connections, one after another, each whole in one task.

    Each run is an eager task: it sends in the publisher's step until a send
    has to wait; that task then finishes that one send alone, and the next
    run goes on with the rest.
    """

    __slots__ = ("_due", "_next", "_runner")

    def __init__(self, due: list[tuple[Session, Message]]) -> None:
        self._due = due
        self._next = 0  # the next send to start, whichever run starts it
        self._runner = 0  # the run that goes on after its send: the others stop

    def send(self) -> None:
        """Send every frame: in this step (3.12+), but for the sends that wait."""
        if not EAGER:
            for session, _ in self._due:
                session.fanned()
            self._start()
            return
        due = self._due
        loop = due[0][0].loop
        while self._next < len(due):
            self._runner += 1
            task = eager_task(self._run(self._runner), loop)
            if not task.done():  # the last send it started waits: it finishes it alone
                due[self._next - 1][0].left_waiting(task)

    def _start(self) -> None:
        """Start a run in the loop's next turn, and look at it right after its first step.

        Until it sends to a connection, what is pushed to that connection
        queues for the run, which sends it right after (no writer wakes).
        """
        self._runner += 1
        loop = self._due[0][0].loop
        assert loop is not None
        task = loop.create_task(self._run(self._runner))
        loop.call_soon(self._went_on, self._runner, task)

    def _went_on(self, runner: int, task: asyncio.Task[None]) -> None:
        """After a run's first step: if it stopped at a send that waits, the rest go on."""
        if task.done() or self._runner != runner:
            return
        self._due[self._next - 1][0].left_waiting(task)
        if self._next < len(self._due):
            self._start()

    async def _run(self, runner: int) -> None:
        due = self._due
        while self._next < len(due):
            session, message = due[self._next]
            self._next += 1
            await session.transmit(message, True)  # a fan-out's: watched once it waits
            if self._runner != runner:
                return  # the send waited, and the publisher went on without this run
            if not EAGER:  # what was pushed to it while this run waited for its turn
                queued = session.next_queued()
                while queued is not None:
                    await session.transmit(queued, True)
                    if self._runner != runner:
                        return
                    queued = session.next_queued()
                session.released()
