"""EventTestClient: drive an app in-process from synchronous tests.

::

    from wsevents.testing import EventTestClient

    def test_ping() -> None:
        with EventTestClient(app) as client, client.connect("/chat/lobby?user=ann") as ws:
            assert ws.request("ping", {"n": 1}) == {"n": 1}

Server requests (``conn.request``) are answered by the functions given to
:meth:`EventTestSession.answer`, as the real clients answer them; one with
no answerer reaches :meth:`EventTestSession.receive` as a ``Message`` with its
``ask`` set, for the test to answer (:meth:`EventTestSession.send_answer`).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic_core import to_jsonable_python

try:
    from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession
except RuntimeError as missing:  # Starlette's: "requires the httpx2 package"
    raise ImportError(
        "wsevents.testing needs an HTTP client for Starlette's test client: "
        "pip install 'wsevents[testing]'"
    ) from missing
from starlette.types import ASGIApp
from starlette.types import Message as ASGIMessage
from starlette.websockets import WebSocketDisconnect

from ._answers import Answerer, Answerers, ask_of
from ._contract import FrameChecker, FrameContractError
from ._envelope import ASK, Message, RequestId, event_error
from .cli import find_event_app
from .codecs import Codec, JSONCodec, MessagePackCodec
from .exceptions import Reject

__all__ = ["EventTestClient", "EventTestSession", "FrameContractError", "Message"]

DEFAULT_TIMEOUT = 5.0


class EventTestClient:
    """An in-process client for an ASGI app that serves wsevents channels.

    Use it as a context manager to run the app's lifespan. ``http`` is the
    underlying Starlette ``TestClient``, for plain HTTP requests.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        base_url: str = "http://testserver",
        root_path: str = "",
        raise_server_exceptions: bool = True,
        check_frames: bool = False,
    ) -> None:
        """Wrap ``app``.

        Args:
            check_frames: check every frame sent and received against the
                app's AsyncAPI document; a frame it does not describe raises
                ``FrameContractError`` (an ``AssertionError``).
        """
        self.app = app
        self.check_frames = check_frames
        self.http = TestClient(
            app,
            base_url=base_url,
            root_path=root_path,
            raise_server_exceptions=raise_server_exceptions,
        )

    def __enter__(self) -> EventTestClient:
        self.http.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.http.__exit__(exc_type, exc, traceback)

    def connect(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EventTestSession:
        """Open a WebSocket to ``path``; use the result in a ``with`` block.

        Entering raises :class:`Reject` (with the HTTP status) when the
        handshake is refused.
        """
        session = self.http.websocket_connect(
            path, subprotocols=subprotocols, headers=dict(headers or {})
        )
        checker = None
        if self.check_frames:
            events, mount = find_event_app(self.app)
            checker = FrameChecker(events, mount, urlsplit(path).path)
        return EventTestSession(session, checker)


class EventTestSession:
    """One open test connection: send events, make requests, read frames."""

    def __init__(self, session: WebSocketTestSession, checker: FrameChecker | None = None) -> None:
        self._session = session
        self._checker = checker
        self._ids = itertools.count(1)
        self._pending: deque[Message] = deque()
        self._json = JSONCodec()
        self._msgpack = MessagePackCodec()
        self.codec: Codec = self._json
        self.subprotocol: str | None = None
        self._answerers = Answerers()

    def __enter__(self) -> EventTestSession:
        try:
            self._session.__enter__()
        except WebSocketDenialResponse as denial:
            raise Reject(denial.status_code, denial.text) from None
        except WebSocketDisconnect as closed:
            raise Reject(403, closed.reason or "") from None
        self.subprotocol = self._session.accepted_subprotocol
        if self.subprotocol == self._msgpack.subprotocol:
            self.codec = self._msgpack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._session.__exit__(exc_type, exc, traceback)

    def send(self, event: str, data: Any = None, *, id: RequestId = None) -> None:
        """Send ``event`` with ``data`` (a model, a dict, anything JSON can carry).

        With ``check_frames=True``, a frame the AsyncAPI document does not
        describe fails here with ``FrameContractError``; :meth:`send_raw`
        sends anything, for a test of what the server does with bad frames.
        """
        envelope: dict[str, Any] = {"event": event}
        if data is not None:
            envelope["data"] = to_jsonable_python(data)
        if id is not None:
            envelope["id"] = id
        self._send_checked(envelope)

    def answer(self, event: str, answerer: Answerer | None = None) -> Any:
        """Answer the server's requests of ``event`` with ``answerer(data)``; usable as a decorator.

        As in the real clients: its return value (it may be async) is the
        answer's data; raising ``EventError`` answers with that error, anything
        else with ``internal_error``. Requests are answered while this session
        reads (:meth:`receive`, :meth:`request`).
        """

        def add(func: Answerer) -> Answerer:
            self._answerers.add(event, func)
            return func

        return add if answerer is None else add(answerer)

    def send_answer(self, ask: str, event: str, data: Any = None) -> None:
        """Answer the server request ``ask`` (a received ``Message.ask``) with ``data``."""
        self._send_checked({"event": event, "data": to_jsonable_python(data), ASK: ask})

    def send_raw(self, payload: str | bytes) -> None:
        """Send one frame as it is: text for ``str``, binary for ``bytes``; never checked.

        For the frames a negative test sends (bad JSON, an unknown event, data
        that does not match), also with ``check_frames=True``.
        """
        if isinstance(payload, str):
            self._session.send_text(payload)
        else:
            self._session.send_bytes(payload)

    def request(self, event: str, data: Any = None, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send ``event`` with a fresh id and return the reply's data.

        Frames that arrive before the reply are kept for :meth:`receive`.

        Raises:
            EventError: the server answered with an error frame.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        request_id = f"t{next(self._ids)}"
        self.send(event, data, id=request_id)
        skipped: list[Message] = []
        try:
            while True:
                message = self._read(timeout)
                if message.id == request_id:
                    break
                skipped.append(message)
        finally:
            self._pending.extend(skipped)
        if message.event == "error":
            raise event_error(message.data)
        return message.data

    def receive(self, *, event: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """Return the next frame as ``Message(event, data, id)``; with ``event``, the next of it.

        ``receive(event="notice")`` passes over the frames of other events
        (a history topic's ``wsevents.subscribed``, a presence topic's
        ``wsevents.presence``) and keeps them, in order, for the next
        ``receive()``.

        Raises:
            WebSocketDisconnect: the server closed the connection (``code``, ``reason``).
            TimeoutError: nothing (nothing of ``event``) arrived within ``timeout`` seconds.
        """
        if event is None:
            if self._pending:
                return self._pending.popleft()
            return self._read(timeout)
        for index, message in enumerate(self._pending):
            if message.event == event:
                del self._pending[index]
                return message
        deadline = time.monotonic() + timeout
        skipped: list[Message] = []
        try:
            while True:
                message = self._read(max(deadline - time.monotonic(), 0.0))
                if message.event == event:
                    return message
                skipped.append(message)
        finally:
            self._pending.extend(skipped)

    def receive_raw(self, *, timeout: float = DEFAULT_TIMEOUT) -> str | bytes:
        """Return the next frame's payload undecoded."""
        message = self._receive_asgi(timeout)
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason", ""))
        payload: str | bytes | None = message.get("text")
        return message["bytes"] if payload is None else payload

    def _send_checked(self, frame: dict[str, Any]) -> None:
        if self._checker is not None:
            self._checker.check_sent(frame)
        self.send_raw(self.codec.encode(frame))

    def close(self, code: int = 1000) -> None:
        """Close the connection from the client side."""
        self._session.close(code)

    def _read(self, timeout: float) -> Message:
        while True:
            payload = self.receive_raw(timeout=timeout)
            codec = self._json if isinstance(payload, str) else self._msgpack
            frame = codec.decode(payload)
            if self._checker is not None:
                self._checker.check_received(frame)
            ask = ask_of(frame)
            if ask is None:
                return Message(frame["event"], frame.get("data"), frame.get("id"))
            if not self._answerers.answers(frame["event"]):
                return Message(frame["event"], frame.get("data"), None, ask)
            answer = self._session.portal.call(
                self._answerers.answer, frame["event"], frame.get("data"), ask
            )
            self._send_checked(answer)

    def _receive_asgi(self, timeout: float) -> ASGIMessage:
        stream = getattr(self._session, "_send_rx", None)
        if stream is None:  # pragma: no cover - a Starlette without the stream: no timeout
            return self._session.receive()

        async def receive() -> ASGIMessage:
            with anyio.fail_after(timeout):
                message: ASGIMessage = await stream.receive()
                return message

        return self._session.portal.call(receive)
