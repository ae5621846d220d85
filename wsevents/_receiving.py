"""The receive side of a connection: its loop, its frames' handling, answers to server requests.

A mixin of :class:`~wsevents._session.Session` (the same object, the same
core): the receive loop hands each frame to the core, handles what the core
admits in its own task, and gives answers to server requests to whoever
waits for them, whatever the handlers are doing. A handler that waits
passes the reading to a new task (:class:`~wsevents._calls.Handling` keeps
them), so that no frame pays for a task it does not need and the loop never
stops reading for long. The handler call and its reply are the per-frame
path: one method, no boundary crossed per frame.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.to_thread import run_sync
from starlette.types import Receive

from ._calls import (
    Handled,
    Handling,
    map_exception,
    returned_without_reply,
    send_error,
    unexpected,
)
from ._dispatch import Call, Refusal
from ._outcomes import Answered, InvalidState
from ._solving import arguments, call, close_after_reply, closed_after
from .exceptions import CloseCode, ConnectionGone, EventError

if TYPE_CHECKING:
    from starlette.types import Message

    from ._connection import Connection
    from ._protocol import ConnectionCore
    from ._registry import Registry
    from ._routing import Channel
    from ._runtime import Runtime
    from ._session import Session
    from ._telemetry import Telemetry
    from .codecs import Codec

__all__ = ["Receiving"]

logger = logging.getLogger("wsevents")

_PASSED = object()  # what _read returns when another task took the reading


class Receiving:
    """The receive loop and the handling of frames, for :class:`~wsevents._session.Session`."""

    __slots__ = ()

    # What the session holds and this side uses.
    id: str
    channel: Channel
    client_session: str | None
    codec: Codec
    connection: Connection
    registry: Registry
    _core: ConnectionCore
    _runtime: Runtime
    _handling: Handling
    _frame_key: str
    _ok: Any
    _tracing: Telemetry | None  # None: telemetry off, nothing of it on the way

    if TYPE_CHECKING:  # the session's own, for the type checker

        def abort(self, code: int, reason: str) -> None: ...

        def _aborted(self, *, stop_loop: bool = True, level: int = logging.WARNING) -> None: ...

        async def transmit(self, message: Message) -> None: ...

        def push(self, frame: str | bytes) -> bool: ...

    async def run(self, receive: Receive) -> int | None:
        """Read frames until the client disconnects; return its close code.

        ``None``: a frame made the core abort the connection (too big, too
        many refused, too many waiting); :meth:`send_abort_close` sends its
        close frame. A frame is handled in the task that read it, with no
        hand-off; when its handler waits, reading passes to a task of its own
        (:meth:`_pass_reading`), so that an answer to a server request is
        taken at once, whatever runs, and other frames wait in order in the
        core (at most ``Limits.concurrency`` handled at once). Frames that
        came before the client's disconnect are still handled; an abort
        cancels them.
        """
        try:
            code = await self._read(receive, home=True)
            if code is _PASSED:
                # Reading went on elsewhere: the task that reads the end says it.
                code = await self._handling.end()
                await self._handling.wait()
            return cast("int | None", code)
        finally:
            # Shielded: a host that cancels this task again while it waits for the
            # tasks it cancels (anyio does, each loop turn) must not count twice.
            with anyio.CancelScope(shield=True):
                await self._handling.cancel()

    async def _read(self, receive: Receive, *, home: bool) -> int | object | None:
        """The receive loop, in the server's task (``home``) or one it passed to.

        Returns the close code, ``None`` for an abort, or :data:`_PASSED` when
        a handler of this task waited and another task took the reading.
        """
        core = self._core
        limits = self._runtime.limits
        # The clock is read per frame only where a limit needs it (idle, rate).
        timed = limits.idle_timeout is not None or limits.rate is not None
        loop = asyncio.get_running_loop()
        handling = self._handling
        tracing = self._tracing
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                found = core.receive(
                    text if text is not None else message.get("bytes") or b"",
                    monotonic() if timed else 0.0,
                )
                if found is None:
                    if core.aborted is not None:
                        self._aborted(stop_loop=not home)
                        return None
                elif found.__class__ is Answered:
                    waiter = found.waiter
                    if not waiter.done():
                        waiter.set_result(found)
                elif core.admit(found):  # type: ignore[arg-type]  # not Answered
                    # Handled here. A check queued for the loop's next turn, one for
                    # every frame read in this turn, passes the reading on should
                    # a handler still run then: it waits.
                    if not handling.checking:
                        handling.checking = True
                        loop.call_soon(self._pass_reading, receive)
                    handoffs = handling.handoffs
                    handling.reader_busy = True
                    work: Call | Refusal | None = found  # type: ignore[assignment]
                    while work is not None:  # this frame, then those that waited for it
                        if tracing is None:
                            await self._handle(work)
                        else:
                            await self._traced(tracing, work)
                        work = core.handled()
                    if handling.handoffs != handoffs:
                        return _PASSED
                    handling.reader_busy = False
                elif core.aborted is not None:  # too many frames waiting
                    self._aborted(stop_loop=not home)
                    return None
            elif kind == "websocket.disconnect":
                # The frames that came before it are handled; no answer can come.
                core.client_left()
                self._gone()
                code = int(message.get("code") or 1005)
                if not home:
                    handling.ended(code)
                    return code
                await handling.wait()
                return code
            else:
                raise unexpected(kind)

    def _pass_reading(self, receive: Receive) -> None:
        """A turn of the loop after a frame was read: if its handler waits, read on elsewhere.

        The reading task is suspended now: in ``receive`` (nothing to do) or
        in a handler (``reader_busy``), whose wait must not stop the reading.
        """
        handling = self._handling
        handling.checking = False
        if handling.reader_busy:
            handling.reader_busy = False  # the new reader is not
            aborted = self._core.aborted is not None
            handling.pass_reading(None if aborted else self._read_on(receive))

    async def _read_on(self, receive: Receive) -> None:
        try:
            await self._read(receive, home=False)
        except Exception as exc:  # in the server's task, Runtime.serve does the same
            logger.error("connection %s failed", self.id, exc_info=exc)
            self.abort(CloseCode.INTERNAL_ERROR, "internal error")

    # -- server requests -----------------------------------------------------------------

    def ask(self, waiter: asyncio.Future[Answered]) -> str:
        """Open a server request answered to ``waiter``; return its ``ask``.

        Raises:
            ConnectionGone: the connection is not open.
            TooManyRequests: ``Limits.max_requests`` are open.
        """
        try:
            return self._core.ask(waiter)
        except InvalidState:
            raise ConnectionGone(f"connection {self.id} is closed") from None

    def forget(self, ask: str) -> None:
        """The request ``ask`` is over: an answer that comes now is dropped."""
        self._core.forget(ask)

    def _gone(self) -> None:
        """No answer can come any more: every open request raises ``ConnectionGone``."""
        for waiter in self._core.end_asks():
            if not waiter.done():
                waiter.set_exception(ConnectionGone(f"connection {self.id} closed"))

    async def _traced(self, tracing: Telemetry, found: Call | Refusal) -> None:
        """Handle a frame in its event's span (none for an unknown event: names are declared)."""
        if found.__class__ is Refusal:
            event, request_id, trace = found.event, found.request_id, found.trace
            if event is None:
                await self._handle(found)
                return
        else:
            handler, _, request_id, trace = found  # type: ignore[misc]
            event = handler.event
        address = self.channel.address
        await tracing.event(address, event, self.id, request_id, trace, self._handle(found))

    async def _handle(self, found: Call | Refusal) -> Handled | None:
        """Call the handler the core named and answer, or send the core's error frame.

        Returns how it ended for the telemetry: ``None``, answered by a plain handler.
        """
        session = cast("Session", self)
        if found.__class__ is Refusal:
            code, message, details, request_id, event, _ = found
            await send_error(session, code, message, details, request_id, event)
            return Handled(str(code))
        handler, data, request_id, _ = found  # type: ignore[misc]
        if handler.once and request_id is not None and self.client_session is not None:
            return await self._runtime.once.serve(session, handler, data, request_id)
        event = handler.event
        stack: AsyncExitStack | None = None  # its yield dependencies, closed once it is answered
        try:
            if handler.solve is not None:
                solve = handler.solve
                if solve.closes:
                    stack = AsyncExitStack()
                args, kwargs = await arguments(solve, self.connection, data, {}, stack)
                if solve.is_async:
                    result = await handler.func(*args, **kwargs)
                else:
                    result = await call(solve, args, kwargs)
            elif handler.is_async:
                result = await handler.invoke(self.connection, data)
            else:
                result = await run_sync(handler.invoke, self.connection, data)
            if result is not None and handler.validate_reply is None:
                returned_without_reply(handler)
            if request_id is None:
                frame = None
            else:
                validate_reply = handler.validate_reply
                if validate_reply is None:
                    reply = None
                elif result.__class__ is handler.reply_class:
                    reply = result  # a model instance already: the codec serializes it
                else:
                    reply = validate_reply(result)
                frame = self.codec.encode_event(event, reply, request_id)
        except Exception as caught:  # the dependencies see it; one may raise its own instead
            exc = caught if stack is None else await closed_after(stack, caught)
            if not isinstance(exc, Exception):
                raise exc from caught
            if isinstance(exc, EventError):
                await send_error(session, exc.code, exc.message, exc.details, request_id, event)
                return Handled(str(exc.code))
            error = await map_exception(self.registry, self.connection, exc, event)
            await send_error(session, error.code, error.message, error.details, request_id, event)
            return Handled(str(error.code), exc)
        except BaseException as exc:  # cancelled: its dependencies are closed with it
            if stack is not None:
                await closed_after(stack, exc)
            raise
        self._ok[event] += 1
        try:
            if frame is not None:
                if self._core.send_now():
                    await self.transmit({"type": "websocket.send", self._frame_key: frame})
                else:
                    self.push(frame)
        finally:
            if stack is not None:
                await close_after_reply(stack, handler.func)
        return None
