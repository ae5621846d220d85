"""Server requests: ask a client and wait for its answer (DESIGN.md section 12).

:func:`request` sends ``{"event", "data", "ask"}`` to one connection of this
process and waits for the frame with the same ``ask``, which the receive
loop hands over whatever the connection's handlers are doing. What the
answer becomes (its data, validated by the declared ``reply``, or the
exception ``conn.request`` raises) is worked out here, in the asking task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from ._dispatch import validation_details
from ._envelope import ask_frame, event_error
from ._outcomes import Answered, TooManyRequests
from ._tasks import deadline
from .exceptions import ConnectionGone, ErrorCode, EventError, RequestTimeout

if TYPE_CHECKING:
    from ._routing import Asked
    from ._session import Session
    from ._stats import Stats
    from ._subscriptions import Carrier

__all__ = ["answer_of", "request", "timed_out", "validated"]


async def request(
    session: Session, event: str, data: Any, timeout: float, trace: Carrier | None = None
) -> Any:
    """Ask ``session``'s client ``event`` with ``data``; return its answer's data.

    With telemetry on, the request is a CLIENT span (a child of ``trace``,
    the asking process's context where another process asked, else of the
    current one) whose context the frame carries.

    Raises:
        PayloadError: ``data`` does not match the model the channel ``asks``.
        EventError: the client answered with an error, or with data that
            fails the declared ``reply`` (``validation_error``); or
            ``Limits.max_requests`` requests are open (``rate_limited``).
        RequestTimeout: no answer within ``timeout`` seconds.
        ConnectionGone: the connection closed first, or was not open.
    """
    tracing = session.tracing
    if tracing is None:
        return await _request(session, event, data, timeout, None)
    with tracing.ask(session.channel.address, event, session.id, trace) as frame_trace:
        return await _request(session, event, data, timeout, frame_trace)


async def _request(
    session: Session, event: str, data: Any, timeout: float, trace: Carrier | None
) -> Any:
    asked = session.channel.asked.get(event)
    payload = to_jsonable_python(data) if asked is None else asked.dump(data)
    stats = session.stats
    waiter: asyncio.Future[Answered] = asyncio.get_running_loop().create_future()
    try:
        ask = session.ask(waiter)
    except ConnectionGone:
        stats.requests["gone"] += 1
        raise
    except TooManyRequests as exc:
        stats.requests["refused"] += 1
        raise EventError(ErrorCode.RATE_LIMITED.value, str(exc)) from None
    try:
        frame = ask_frame(event, payload, ask)
        if trace:  # W3C Trace Context: the client's spans may follow it
            frame.update(trace)
        await session.send_frame(session.codec.encode(frame))
        async with deadline(timeout):
            answered = await waiter
    except ConnectionGone:
        stats.requests["gone"] += 1
        raise
    except TimeoutError:
        stats.requests["timeout"] += 1
        raise timed_out(session.id, event, timeout) from None
    finally:
        session.forget(ask)
    return answer_of(asked, event, answered.event, answered.data, stats)


def answer_of(
    asked: Asked | None, event: str, answered: str | None, data: Any, stats: Stats
) -> Any:
    """The data of an answer to ``event``, or the ``EventError`` it stands for."""
    if answered == "error":
        stats.requests["error"] += 1
        raise event_error(data)
    if answered != event:
        stats.requests["invalid"] += 1
        raise EventError(
            ErrorCode.BAD_ENVELOPE.value,
            f"the answer to {event!r} came as event {answered!r}",
        )
    try:
        value = validated(asked, event, data)
    except EventError:
        stats.requests["invalid"] += 1
        raise
    stats.requests["answered"] += 1
    return value


def validated(asked: Asked | None, event: str, data: Any) -> Any:
    """An answer's data, validated by the ``reply`` that ``asked`` declares, if any.

    Raises:
        EventError: ``validation_error``, with pydantic's details.
    """
    if asked is None or asked.validate_reply is None:
        return data
    try:
        return asked.validate_reply(data)
    except ValidationError as exc:
        raise EventError(
            ErrorCode.VALIDATION_ERROR.value,
            f"invalid answer to {event!r}",
            validation_details(exc),
        ) from None


def timed_out(connection_id: str, event: str, timeout: float | None) -> RequestTimeout:
    """The ``RequestTimeout`` of a request of ``event`` that ``connection_id`` left unanswered."""
    within = "" if timeout is None else f" within {timeout} s"
    return RequestTimeout(f"connection {connection_id} did not answer {event!r}{within}")
