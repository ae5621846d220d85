"""Calling the app's own code around a frame: hooks, exception handlers, what handlers return.

Sync hooks run in a thread with what they set in a ``ContextVar`` carried
back; an exception a handler raised becomes the error frame its exception
handler maps it to, or ``internal_error``; a value returned by a handler
that declares no reply is said once.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from anyio.to_thread import run_sync
from pydantic_core import to_jsonable_python

from ._envelope import RequestId, error_frame
from ._routing import Handler, Hook, callable_name
from ._solving import invoke as invoke_solved
from .exceptions import BackplaneUnavailable, ErrorCode, EventError

if TYPE_CHECKING:
    from ._connection import Connection
    from ._registry import Registry
    from ._session import Session
    from .codecs import Codec

__all__ = [
    "Handled",
    "Handling",
    "call_hook",
    "encode_error",
    "invoke",
    "map_exception",
    "returned_without_reply",
    "send_error",
    "unexpected",
]

logger = logging.getLogger("wsevents")
_TOLD: weakref.WeakSet[Handler] = weakref.WeakSet()  # handlers whose dropped value was logged
_MISSING = object()
INTERNAL_ERROR = EventError(ErrorCode.INTERNAL_ERROR.value, "internal error")
BACKPLANE_UNAVAILABLE = EventError(
    ErrorCode.UNAVAILABLE.value, "the backplane did not answer; try again"
)


class Handled(NamedTuple):
    """How a frame's handling ended, where the telemetry has something to record.

    A frame answered without error by a plain handler ends in ``None``.
    """

    code: str | None  # the error frame's code, or None: answered
    exception: BaseException | None = None  # what the handler raised, if it raised
    once: str | None = None  # a once request's answer: "kept" or "computed"


async def call_hook(hook: Hook, conn: Connection, argument: Any) -> None:
    """Call an ``on_connect`` or ``on_disconnect`` hook, sync ones in a thread.

    What a sync hook sets in a ``ContextVar`` is set here too, as for an async
    hook, so that the handlers of the connection see it.
    """
    if hook.solve is not None:
        await invoke_solved(hook.solve, conn, argument)  # what a sync hook sets is kept too
        return
    if hook.is_async:
        await hook.invoke(conn, argument)
        return
    context = contextvars.copy_context()
    await run_sync(context.run, hook.invoke, conn, argument)
    for variable, value in context.items():
        if variable.get(_MISSING) is not value:
            variable.set(value)


async def invoke(handler: Handler, conn: Connection, data: Any) -> Any:
    """Call a handler with its connection and data; a sync one in a thread."""
    if handler.solve is not None:
        return await invoke_solved(handler.solve, conn, data)
    if handler.is_async:
        return await handler.invoke(conn, data)
    return await run_sync(handler.invoke, conn, data)


async def map_exception(
    registry: Registry, conn: Connection, exc: Exception, event: str
) -> EventError:
    """The error frame for an exception a handler raised: its handler's, or ``internal_error``.

    What is not mapped is logged with its traceback; the client never sees
    its text. A ``BackplaneUnavailable`` the app does not map is ``unavailable``
    (the backplane did not answer, as during a Redis failover: worth trying
    again), logged as a warning without a traceback.
    """
    mapper = registry.exception_handler_for(type(exc))
    if mapper is None:
        if isinstance(exc, BackplaneUnavailable):
            logger.warning("handler for event %r: %s", event, exc)
            return BACKPLANE_UNAVAILABLE
        logger.error("handler for event %r raised", event, exc_info=exc)
        return INTERNAL_ERROR
    try:
        result = mapper(conn, exc)
        if inspect.isawaitable(result):
            result = await result
    except EventError as error:
        result = error
    except Exception:
        logger.exception("exception handler for %s failed", type(exc).__name__)
        return INTERNAL_ERROR
    if isinstance(result, EventError):
        return result
    if result is not None:
        logger.error(
            "exception handler for %s returned %r, not an EventError", type(exc).__name__, result
        )
    return INTERNAL_ERROR


def encode_error(
    codec: Codec, code: str, message: str, details: Any, request_id: RequestId
) -> str | bytes:
    """An error frame; ``internal_error`` where its details cannot be encoded (logged)."""
    try:
        return codec.encode(error_frame(code, message, to_jsonable_python(details), request_id))
    except Exception:
        logger.exception("error details for %r could not be encoded", code)
        internal = ErrorCode.INTERNAL_ERROR.value
        return codec.encode(error_frame(internal, "internal error", None, request_id))


async def send_error(
    session: Session,
    code: str,
    message: str,
    details: Any,
    request_id: RequestId,
    event: str | None = None,
) -> None:
    """Send an error frame to ``session``, and count it (by event too, for a registered one)."""
    code = str(code)
    session.stats.error_sent(code, event, session.channel.address)
    await session.send_frame(encode_error(session.codec, code, message, details, request_id))


def returned_without_reply(handler: Handler) -> None:
    """Say once per handler that a value it returned went nowhere."""
    if handler not in _TOLD:
        _TOLD.add(handler)
        logger.warning(
            "handler %s for event %r returned a value, but declares no reply: the client "
            "gets null; annotate its return (-> Model) or pass reply=",
            callable_name(handler.func),
            handler.event,
        )


def unexpected(kind: str) -> RuntimeError:
    """The error for an ASGI message the receive loop cannot take."""
    return RuntimeError(
        f'Expected ASGI message "websocket.receive" or "websocket.disconnect", but got {kind!r}'
    )


class Handling:
    """The tasks a connection reads and handles in, besides the one the server gave it.

    A frame is handled in the task that read it; when its handler waits,
    reading passes to a task started here (see ``Receiving.run``), so that
    answers to server requests are taken whatever runs. Each such task has
    its own copy of the connection's context (what the ``on_connect`` hooks
    set).
    """

    __slots__ = ("_end", "_running", "checking", "handoffs", "reader_busy")

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] | None = None
        self._end: asyncio.Future[int] | None = None  # the close code, once reading passed
        self.handoffs = 0  #: times the reading passed to another task
        self.reader_busy = False  #: the reading task is in a handler
        self.checking = False  #: a check whether it waits is queued for the loop's next turn

    def pass_reading(self, reader: Coroutine[Any, Any, None] | None) -> None:
        """The reading task's handler waits: ``reader`` reads on (``None``: nobody, aborted)."""
        self.handoffs += 1
        if self._end is None:
            self._end = asyncio.get_running_loop().create_future()
        if reader is not None:
            self._start(reader)

    def ended(self, code: int) -> None:
        """The task reading now saw the client leave with ``code``."""
        end = self._end
        if end is not None and not end.done():
            end.set_result(code)

    async def end(self) -> int:
        """The close code, from the task that read the client's leaving."""
        assert self._end is not None, "the reading never passed on"
        return await self._end

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        running = self._running
        if running is None:
            running = self._running = set()
        running.add(task)
        task.add_done_callback(running.discard)

    async def wait(self) -> None:
        """Wait until every task started here has ended."""
        while self._running:
            # A task that ended is not waited for, though its callback that drops it
            # has not run yet: on 3.12+ gathering only tasks that ended does not
            # yield, and this loop would never let that callback run.
            pending = [task for task in self._running if not task.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel the tasks still running, and wait for them."""
        running, self._running = self._running, None
        if running:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
