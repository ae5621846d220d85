"""The Python client: talk to a wsevents server from asyncio code.

::

    from wsevents.client import connect

    async with connect("ws://127.0.0.1:8000/ws/chat/lobby?user=ann") as client:
        client.on("said", lambda data: print(data["user"], data["text"]))
        await client.send("say", {"text": "hello"})
        pong = await client.request("ping", {"n": 1}, timeout=5)
        async for message in client:  # every push no listener took
            print(message.event, message.data)

It speaks the protocol of ``docs/protocol.md`` over the ``websockets``
library: requests get an ``id`` and wait for the frame that answers it (an
error frame raises :class:`~wsevents.EventError`); pushes go to the
listeners of their event, or else to ``async for``. When the connection
drops, it reconnects with exponential backoff and runs ``on_connect`` again,
so the subscriptions the server keeps per connection can be made anew; not
after 4403, nor after 4401 without a ``token`` function (``_closes``).

Requests outlive a dropped connection (docs/requests.md): kept until answered
or timed out, they are sent again, same ``id``, in order, once reconnected and
before anything new; ``client.session`` (``wsevents-session``) lets the server
run a ``once`` handler once. :meth:`Client.answer` answers server requests.
On history topics (docs/resumable-topics.md) it keeps ``client.positions``,
drops a push it holds already and names them in ``wsevents-resume`` on every
reconnect, so that the server replays what was missed.

Over 300 lines: one public client class with its reconnecting reader.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from types import TracebackType
from typing import Any, Literal

from pydantic_core import to_jsonable_python
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from ._answers import Answerer, Answerers, ask_of
from ._carrier import inject
from ._closes import (
    ConnectionClosedByServer,
    ConnectionLost,
    Token,
    call_back,
    check_token,
    lost,
    reconnect,
    reconnects_after,
    token_of,
)
from ._envelope import REFRESH_EVENT, Message, event_error
from ._history import Position
from ._kept import Out, handshake_url, track_position
from ._retry import Backoff
from .codecs import Codec, JSONCodec, MessagePackCodec
from .exceptions import DecodeError, Reject

__all__ = ["Client", "ConnectionLost", "Message", "connect"]

logger = logging.getLogger("wsevents.client")

DEFAULT_TIMEOUT = 10.0
Listener = Callable[[Any], Any]
OnConnect = Callable[["Client"], Any]
OnDisconnect = Callable[["int | None", str], Any]


class Client:
    """A connection to a wsevents channel: ``async with connect(url, ...) as client:``.

    ``connect`` is this class: entering the block opens the connection (or
    call :meth:`open`), leaving it closes the connection.

    Args:
        url: the channel's ``ws://`` or ``wss://`` URL, query string included.
        codec: ``"json"`` (text frames) or ``"msgpack"`` (binary frames).
        headers: extra handshake headers.
        token: a bearer token (``Authorization: Bearer``), or a function (sync
            or async) that returns one: called at every handshake and to answer
            ``wsevents.refresh``. After a 4401 close the client reconnects
            only with a function, which it calls first.
        on_connect: called with the client after every connection, the first
            and each reconnect (it may be async, and may make requests): subscribe here.
        on_disconnect: called with the close code (``None`` where none came)
            and reason each time an open connection closes, before any
            reconnect (it may be async).
        reconnect: reconnect when the connection drops.
        backoff: the first and the longest wait between attempts, in seconds;
            each wait doubles, with jitter.
        max_attempts: give up after this many failed attempts in a row (``None``: never).
        timeout: the default for ``request`` and for the opening handshake.
        max_queue: pushes kept for ``async for``; past it the oldest is dropped
            (counted in ``Client.dropped``).
        resume: positions held already, topic to ``(epoch, offset)`` (saved
            from an earlier client's ``positions``): the first connection
            names them too.
    """

    def __init__(
        self,
        url: str,
        *,
        codec: Literal["json", "msgpack"] = "json",
        headers: Mapping[str, str] | None = None,
        token: Token | None = None,
        on_connect: OnConnect | None = None,
        on_disconnect: OnDisconnect | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        max_attempts: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_queue: int = 1024,
        resume: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        if codec not in ("json", "msgpack"):
            raise ValueError(f"codec must be 'json' or 'msgpack', got {codec!r}")
        self.url = url
        self.codec: Codec = JSONCodec() if codec == "json" else MessagePackCodec()
        self.headers = dict(headers or {})
        self.token = check_token(token)
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.close_code: int | None = None  #: the last close's code (``None``: none came)
        self.close_reason = ""  #: the last close's reason
        self.reconnect = reconnect
        Backoff(*backoff)  # refused here, not at the first reconnect
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.reconnects = 0  #: how many times the connection was made again
        self.dropped = 0  #: pushes dropped because ``async for`` fell max_queue behind
        #: The position held in each history topic: sent in ``wsevents-resume``.
        self.positions: dict[str, Position] = {
            topic: Position(str(epoch), int(offset))
            for topic, (epoch, offset) in (resume or {}).items()
        }
        self.duplicates = 0  #: pushes dropped because their position was held already
        #: This client's session, sent as ``wsevents-session`` on every connection.
        self.session = secrets.token_urlsafe(24)
        self._ws: ClientConnection | None = None
        self._generation = 0  # connections made so far: the number of the current one
        self._connected = asyncio.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int | str, Out] = {}  # in the order first sent
        self._listeners: dict[str, list[Listener]] = {}
        self._answerers = Answerers()
        if token is not None:
            self._answerers.add(REFRESH_EVENT, self._refreshed)
        self._inbox: deque[Message] = deque(maxlen=max_queue)
        self._arrived = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- opening and closing -------------------------------------------------------

    async def open(self) -> None:
        """Connect, start reading, and run ``on_connect`` (it may make requests).

        Raises:
            Reject: the server refused the handshake with an HTTP status.
            OSError: the server could not be reached.
        """
        await self._connect()
        self._runner = asyncio.get_running_loop().create_task(self._run())
        try:
            await self._connected_hook()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; pending requests fail with :class:`ConnectionLost`."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        self._fail_pending(ConnectionLost("the client was closed"))
        for task in list(self._tasks):
            task.cancel()
        self._arrived.set()

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether the client holds an open connection now."""
        return self._connected.is_set()

    # -- sending -------------------------------------------------------------------

    async def send(self, event: str, data: Any = None) -> None:
        """Send an event without an ``id``: the server answers nothing unless it fails.

        While the client reconnects, this waits for the connection (up to
        ``timeout``) rather than losing the frame.
        """
        ws = await self._ready()
        await ws.send(self._encode(event, data, None))

    async def request(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send an event with an ``id`` and return the ``data`` of the reply.

        A connection that drops does not fail it: it is sent again, same
        ``id``, once the client has reconnected, until ``timeout`` has passed.

        Raises:
            EventError: the server answered with an error frame.
            TimeoutError: no answer within ``timeout`` seconds (the client's default).
            ConnectionLost: the client was closed, or gave up reconnecting,
                before the answer came.
        """
        if self._closed:
            raise ConnectionLost("the client is closed")
        if self._failure is not None:
            raise lost(self._failure, "the connection was lost: ") from self._failure
        limit = self.timeout if timeout is None else timeout
        request_id = next(self._ids)
        out = Out(self._encode(event, data, request_id), asyncio.get_running_loop().create_future())
        self._pending[request_id] = out
        try:
            return await asyncio.wait_for(self._ask(out), limit)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer to {event!r} within {limit} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _ask(self, out: Out) -> Any:
        ws = self._ws
        if self._connected.is_set() and ws is not None:  # else the reconnect sends it
            out.sent = self._generation
            with suppress(ConnectionClosed):  # sent again on the next connection
                await ws.send(out.frame)
        return await out.future

    def _encode(self, event: str, data: Any, request_id: int | None) -> str | bytes:
        message: dict[str, Any] = {"event": event, "data": to_jsonable_python(data)}
        if request_id is not None:
            message["id"] = request_id
        return self.codec.encode(inject(message))  # the current trace context, if any

    async def _ready(self) -> ClientConnection:
        if not self._connected.is_set():
            if self._closed:
                raise ConnectionLost("the client is closed")
            if self._failure is not None:
                raise lost(self._failure, "the connection was lost: ") from self._failure
            await asyncio.wait_for(self._connected.wait(), self.timeout)
        assert self._ws is not None
        return self._ws

    # -- receiving -----------------------------------------------------------------

    def on(self, event: str, listener: Listener | None = None) -> Any:
        """Call ``listener(data)`` for every push of ``event``; usable as a decorator.

        A listener may be async (it runs as a task). Pushes with a listener do
        not reach ``async for``. Use ``"error"`` for error frames no request
        waits for.
        """

        def add(func: Listener) -> Listener:
            self._listeners.setdefault(event, []).append(func)
            return func

        return add if listener is None else add(listener)

    def answer(self, event: str, answerer: Answerer | None = None) -> Any:
        """Answer the server's requests of ``event`` with ``answerer(data)``; usable as a decorator.

        Its return value (it may be async) is the answer's data; raising
        ``EventError`` answers with that error, anything else with
        ``internal_error``. A request of an event nobody answers gets
        ``unknown_event``.
        """

        def add(func: Answerer) -> Answerer:
            self._answerers.add(event, func)
            return func

        return add if answerer is None else add(answerer)

    def off(self, event: str, listener: Listener) -> None:
        """Stop calling ``listener`` for ``event``."""
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            while self._inbox:
                yield self._inbox.popleft()
            if self._closed:
                return
            if self._failure is not None:
                raise lost(self._failure, "the connection was lost: ") from self._failure
            self._arrived.clear()
            await self._arrived.wait()

    def _deliver(self, message: Message) -> None:
        request_id = message.id
        if request_id is not None:  # an answer: pushes carry no id
            out = self._pending.pop(request_id, None)
            future = None if out is None else out.future
            if future is None:
                logger.debug("an answer to %r came after its request gave up", request_id)
            elif not future.done():
                if message.event == "error":
                    future.set_exception(event_error(message.data))
                else:
                    future.set_result(message.data)
            return
        listeners = self._listeners.get(message.event)
        if listeners:
            for listener in list(listeners):
                self._call(listener, message.data)
            return
        if len(self._inbox) == self._inbox.maxlen:
            self.dropped += 1
        self._inbox.append(message)
        self._arrived.set()

    def _asked(self, ws: ClientConnection, decoded: dict[str, Any], ask: str) -> None:
        """Answer a server request in a task of its own, on the connection it came on."""

        async def send(frame: dict[str, Any]) -> None:
            with suppress(ConnectionClosed):  # the server sees the request unanswered
                await ws.send(self.codec.encode(frame))

        self._spawn(self._answerers.answer_to(decoded, ask, send))

    def _call(self, listener: Listener, data: Any) -> None:
        try:
            result = listener(data)
        except Exception:
            logger.exception("listener %r failed", listener)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("listener failed", exc_info=task.exception())

    # -- the connection and its reconnects -----------------------------------------

    async def _refreshed(self, data: Any) -> dict[str, str]:
        """Answer ``wsevents.refresh``: the token, a fresh one from a function."""
        assert self.token is not None
        return {"token": await token_of(self.token)}

    async def _connect(self, *, again: bool = False) -> None:
        headers = self.headers
        if self.token is not None:
            headers = {**headers, "Authorization": f"Bearer {await token_of(self.token)}"}
        try:
            ws = await ws_connect(
                handshake_url(self.url, self.session, self.positions),
                subprotocols=[Subprotocol(self.codec.subprotocol)],
                additional_headers=headers,
                open_timeout=self.timeout,
                max_size=None,
            )
        except InvalidStatus as exc:
            response = exc.response
            reason = response.body.decode(errors="replace") if response.body else ""
            raise Reject(response.status_code, reason) from None
        self._ws = ws
        if again:
            self.reconnects += 1
        await self._resend(ws)
        self._connected.set()

    async def _resend(self, ws: ClientConnection) -> None:
        """Send the requests still waiting for an answer, in the order first sent.

        Before anything new: the connection counts as made only once none is
        left unsent on it (no await between that last look and the caller's
        ``_connected.set()``).
        """
        self._generation += 1
        generation = self._generation
        while due := [out for out in self._pending.values() if out.sent != generation]:
            for out in due:
                out.sent = generation
                if not out.future.done():
                    try:
                        await ws.send(out.frame)
                    except ConnectionClosed:
                        return  # the reader sees it and reconnects again

    def _positioned(self, decoded: dict[str, Any], event: str) -> bool:
        """Track positions; return whether the frame is new (not a duplicate)."""
        fresh = track_position(self.positions, decoded, event)
        if not fresh:
            self.duplicates += 1
        return fresh

    async def _connected_hook(self) -> None:
        if self.on_connect is not None:
            result = self.on_connect(self)
            if inspect.isawaitable(result):
                await result

    async def _run(self) -> None:
        while True:
            assert self._ws is not None
            error = await self._read(self._ws)
            self._connected.clear()
            if self._closed:
                return
            self.close_code, self.close_reason = error.code, error.reason
            await call_back("on_disconnect", self.on_disconnect, error.code, error.reason)
            if not self.reconnect or not reconnects_after(error.code, self.token):
                self._give_up(error)
                return
            try:
                await self._reconnect()
            except Exception as exc:
                self._give_up(exc)
                return
            # Runs beside the reads, so that it can wait for replies.
            self._spawn(self._connected_hook())

    async def _read(self, ws: ClientConnection) -> ConnectionClosedByServer:
        try:
            async for payload in ws:
                try:
                    decoded = self.codec.decode(payload)
                    ask = ask_of(decoded)
                    if ask is not None:
                        self._asked(ws, decoded, ask)
                        continue
                    message = Message(decoded["event"], decoded.get("data"), decoded.get("id"))
                    fresh = message.id is not None or self._positioned(decoded, message.event)
                except (DecodeError, KeyError, TypeError, ValueError):
                    logger.warning("the server sent a frame that is not an envelope: %r", payload)
                    continue
                if fresh:
                    self._deliver(message)
        except ConnectionClosed as exc:
            closed = exc.rcvd
            if closed is None:  # no close frame came: the connection dropped
                return ConnectionClosedByServer(None, str(exc))
            return ConnectionClosedByServer(closed.code, closed.reason)
        return ConnectionClosedByServer(ws.close_code, ws.close_reason)

    async def _reconnect(self) -> None:
        await reconnect(lambda: self._connect(again=True), self.backoff, self.max_attempts)

    def _give_up(self, error: BaseException) -> None:
        self._failure = error
        self._fail_pending(lost(error))
        self._arrived.set()

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for out in pending.values():
            if not out.future.done():
                out.future.set_exception(error)


connect = Client
"""Connect to a wsevents channel: ``async with connect(url) as client:`` (see :class:`Client`)."""
