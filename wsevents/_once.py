"""``once`` handlers: a client's request runs at most once, whichever process it reaches.

Stripe's idempotency keys, for WebSocket requests (DESIGN.md section 12).
A request to a ``@channel.on(..., once=True)`` handler from a client that
names its session (``wsevents-session``) and gives an ``id`` is keyed by
(session, channel, event, id). Before the handler runs, the backplane is
asked to claim the key (one round trip): the first claim runs the handler;
a key whose answer is kept gets that answer again; a key another run holds
waits for its answer (a run in this process is waited for directly, one in
another process by asking again, with backoff). After the run, its answer
(the reply, or the error frame it raised) is kept for ``request_window``
seconds (one more round trip, after the answer went out).

A claim is a lease: it lapses ``lease`` seconds after the last renewal, so
the request runs again only once the process that ran it is gone. A run
renews its lease while it lasts, and while its answer cannot be kept it
keeps trying (and renewing): never twice while its process lives. The run
is a task of its own, so that it goes on when its connection closes; at
shutdown it is cancelled and its claim let go. When the backplane cannot be
reached, the request gets ``unavailable`` and its handler does not run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any

import msgpack
from pydantic_core import to_jsonable_python

from ._calls import Handled, invoke, map_exception, send_error
from ._envelope import RequestId, event_frame
from ._retry import Backoff, Tally
from .exceptions import ErrorCode, EventError

if TYPE_CHECKING:
    from ._routing import Handler
    from ._session import Session
    from .backplane import Backplane

__all__ = ["OnceRuns", "once_key"]

logger = logging.getLogger("wsevents")

CLAIM_TIMEOUT = 5.0  # how long a claim may take before the request gets unavailable

Answer = list[Any]  # ["r", reply data] or ["e", code, message, details]


def once_key(session: str, channel: str, event: str, request_id: RequestId) -> str:
    """The key of a request: an id ``1`` and an id ``"1"`` are two requests."""
    kind = "i" if isinstance(request_id, int) else "s"
    return f"{session}:{channel}:{event}:{kind}{request_id}"


class OnceRuns:
    """This process's runs of ``once`` handlers, and its way to the backplane's claims.

    Args:
        backplane: where claims and answers are kept.
        node_id: this process's id (an owner of a claim is this and a count).
        window: seconds an answer is kept (``EventApp(request_window=...)``).
        lease: seconds a claim holds without renewal (``Backplane.once_lease``).
    """

    def __init__(self, backplane: Backplane, node_id: str, window: float, lease: float) -> None:
        self._backplane = backplane
        self._node_id = node_id
        self.window = window
        self.lease = lease
        self._owners = itertools.count(1)
        self._answers: dict[str, asyncio.Future[Answer]] = {}  # runs here, by key
        self._runs: set[asyncio.Task[None]] = set()
        self._failures = Tally()

    async def serve(
        self, session: Session, handler: Handler, data: Any, request_id: RequestId
    ) -> Handled:
        """Answer a ``once`` request: the kept answer, the one a run gives, or ``unavailable``.

        Returns how it ended, and whether its answer was kept or computed by this request.
        """
        event = handler.event
        key = once_key(session.client_session or "", session.channel.name, event, request_id)
        backoff = Backoff(0.02, 0.5)
        source = "kept"  # the answer of an earlier copy of the request, kept or running
        while True:
            running = self._answers.get(key)
            if running is not None:  # a run in this process: its answer, when it comes
                answer = await asyncio.shield(running)
                break
            owner = f"{self._node_id}:{next(self._owners)}"
            try:
                kind, kept = await asyncio.wait_for(
                    self._backplane.once_claim(key, owner, self.lease), CLAIM_TIMEOUT
                )
            except Exception as exc:
                if self._failures.add("claim"):
                    logger.warning("a once request could not be claimed: %r", exc)
                message = "the request could not be checked against earlier runs; send it again"
                code = ErrorCode.UNAVAILABLE.value
                await send_error(session, code, message, None, request_id, event)
                return Handled(code)
            if kind == "done" and kept is not None:
                answer = msgpack.unpackb(kept, raw=False)
                break
            if kind == "run":
                answer = await asyncio.shield(self._start(session, handler, data, key, owner))
                source = "computed"
                break
            await asyncio.sleep(backoff.next())  # another process runs it: ask again
        await send_answer(session, event, request_id, answer)
        return Handled(None if answer[0] == "r" else answer[1], None, source)

    def _start(
        self, session: Session, handler: Handler, data: Any, key: str, owner: str
    ) -> asyncio.Future[Answer]:
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[key] = answered
        run = asyncio.get_running_loop().create_task(
            self._run(session, handler, data, key, owner, answered)
        )
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        return answered

    async def _run(
        self,
        session: Session,
        handler: Handler,
        data: Any,
        key: str,
        owner: str,
        answered: asyncio.Future[Answer],
    ) -> None:
        """Run the handler to its end, whatever its connection does; keep its answer."""
        renewing = asyncio.get_running_loop().create_task(self._renew(key, owner))
        try:
            answer = await outcome(session, handler, data)
            answered.set_result(answer)
            await self._keep(key, owner, msgpack.packb(answer, use_bin_type=True))
        except asyncio.CancelledError:  # shutdown: the claim lapses, the request may run again
            if not answered.done():
                answered.cancel()
            try:
                await asyncio.wait_for(self._backplane.once_release(key, owner), 1.0)
            except Exception:
                logger.info("the claim of a cancelled once request lapses with its lease")
            raise
        finally:
            renewing.cancel()
            if self._answers.get(key) is answered:
                del self._answers[key]

    async def _renew(self, key: str, owner: str) -> None:
        """Renew the claim every third of its lease while the run lasts."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await asyncio.wait_for(
                    self._backplane.once_renew(key, owner, self.lease), self.lease / 3
                )
            except Exception as exc:
                if self._failures.add("renew"):
                    logger.warning("a once request's claim could not be renewed: %r", exc)

    async def _keep(self, key: str, owner: str, answer: bytes) -> None:
        """Keep the answer; while that fails, hold the claim and try again."""
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                await asyncio.wait_for(
                    self._backplane.once_keep(key, owner, answer, self.window), CLAIM_TIMEOUT
                )
                return
            except Exception as exc:
                if self._failures.add("keep"):
                    logger.warning("a once request's answer could not be kept yet: %r", exc)
            await asyncio.sleep(backoff.next())

    async def stop(self) -> None:
        """Cancel the runs still going (shutdown); their claims lapse."""
        runs, self._runs = self._runs, set()
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def outcome(session: Session, handler: Handler, data: Any) -> Answer:
    """Run ``handler`` for a ``once`` request; its answer as it is kept."""
    conn = session.connection
    try:
        result = await invoke(handler, conn, data)
        reply = None
        if handler.validate_reply is not None:
            reply = to_jsonable_python(handler.validate_reply(result), by_alias=True)
    except EventError as exc:
        return ["e", exc.code, exc.message, to_jsonable_python(exc.details)]
    except Exception as exc:
        error = await map_exception(session.registry, conn, exc, handler.event)
        return ["e", error.code, error.message, to_jsonable_python(error.details)]
    session.stats.ok_counter(session.channel.address)[handler.event] += 1
    return ["r", reply]


async def send_answer(session: Session, event: str, request_id: RequestId, answer: Answer) -> None:
    """Send a ``once`` request's answer, kept or fresh, as the reply or the error frame."""
    if answer[0] == "r":
        await session.send_frame(session.codec.encode(event_frame(event, answer[1], request_id)))
    else:
        await send_error(session, answer[1], answer[2], answer[3], request_id, event)
