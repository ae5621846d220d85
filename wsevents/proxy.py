"""A WebSocket proxy: an API gateway forwards a client's connection to an upstream server.

::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from wsevents.proxy import WebSocketProxy

    # ws://gateway/ws/chat/lobby?user=ann  ->  ws://backend:8000/ws/chat/lobby?user=ann
    gateway = Starlette(routes=[Mount("/ws", WebSocketProxy("ws://backend:8000/ws"))])

For each client it opens one upstream connection with the same path (below
the mount point), query string, subprotocols and the headers it forwards;
the upstream's answer is the client's: a refused handshake is refused with
the upstream's status, an accepted one is accepted with the subprotocol the
upstream chose. Then frames go both ways as they are (text stays text, binary
stays binary), and when either end closes, the other is closed with the same
code. HTTP requests get 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextlib import suppress

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from ._handshake import deny_handshake
from ._runtime import route_path
from .exceptions import CloseCode

__all__ = ["WebSocketProxy"]

logger = logging.getLogger("wsevents.proxy")

FORWARDED_HEADERS = ("authorization", "cookie", "origin", "user-agent", "accept-language")
# Codes a peer cannot send in a close frame; forwarded as what they mean.
_UNSENDABLE = {1005: CloseCode.NORMAL_CLOSURE, 1006: CloseCode.GOING_AWAY, 1015: 1011}


class WebSocketProxy:
    """An ASGI app that forwards WebSocket connections to ``upstream``.

    Args:
        upstream: the base ``ws://`` or ``wss://`` URL the path below the mount
            point is appended to; or a function of the ASGI scope returning the
            whole URL, to route by path, header or anything else.
        forward_headers: request headers passed on (lower case). ``X-Forwarded-For``
            is always set to the client's address.
        open_timeout: seconds to wait for the upstream handshake; past it the
            client is refused with 504.
    """

    def __init__(
        self,
        upstream: str | Callable[[Scope], str],
        *,
        forward_headers: Iterable[str] = FORWARDED_HEADERS,
        open_timeout: float = 10.0,
    ) -> None:
        self.upstream = upstream
        self.forward_headers = frozenset(name.lower() for name in forward_headers)
        self.open_timeout = open_timeout

    def url_for(self, scope: Scope) -> str:
        """The upstream URL for a client's connection."""
        if callable(self.upstream):
            return self.upstream(scope)
        url = self.upstream.rstrip("/") + route_path(scope)
        query = scope.get("query_string", b"")
        return f"{url}?{query.decode('latin-1')}" if query else url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        if scope["type"] != "websocket":
            await _http_404(send)
            return
        await receive()  # websocket.connect
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope.get("headers", [])
            if name.decode("latin-1").lower() in self.forward_headers
        ]
        client = scope.get("client")
        if client:
            headers.append(("X-Forwarded-For", str(client[0])))
        subprotocols = [Subprotocol(name) for name in scope.get("subprotocols") or ()]
        try:
            upstream = await connect(
                self.url_for(scope),
                subprotocols=subprotocols or None,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                max_size=None,
                compression=None,
                user_agent_header=None,
            )
        except InvalidStatus as exc:
            body = bytes(exc.response.body or b"")
            await deny_handshake(scope, send, exc.response.status_code, body)
            return
        except (OSError, asyncio.TimeoutError) as exc:
            logger.warning("upstream %s is not reachable: %s", self.url_for(scope), exc)
            status = 504 if isinstance(exc, asyncio.TimeoutError) else 502
            await deny_handshake(scope, send, status, b"upstream not reachable")
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await self._relay(upstream, receive, send)

    async def _relay(self, upstream: ClientConnection, receive: Receive, send: Send) -> None:
        to_upstream = asyncio.ensure_future(_client_to_upstream(receive, upstream))
        to_client = asyncio.ensure_future(_upstream_to_client(upstream, send))
        try:
            done, _ = await asyncio.wait(
                (to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        if to_client in done and not to_client.cancelled() and to_client.exception() is None:
            code, reason = to_client.result()  # the upstream closed: close the client alike
            with suppress(Exception):
                await send({"type": "websocket.close", "code": code, "reason": reason})
        else:  # the client left (or a side failed): close the upstream alike
            code = (
                to_upstream.result()
                if to_upstream in done and not to_upstream.exception()
                else 1011
            )
            with suppress(Exception):
                await upstream.close(code)


async def _client_to_upstream(receive: Receive, upstream: ClientConnection) -> int:
    """Forward the client's frames; return the close code it left with."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code = int(message.get("code") or 1005)
            return int(_UNSENDABLE.get(code, code))
        text = message.get("text")
        try:
            await upstream.send(text if text is not None else message.get("bytes") or b"")
        except ConnectionClosed:
            await asyncio.Future()  # the other task reports the upstream's close


async def _upstream_to_client(upstream: ClientConnection, send: Send) -> tuple[int, str]:
    """Forward the upstream's frames; return the close code and reason it closed with."""
    try:
        async for payload in upstream:
            key = "text" if isinstance(payload, str) else "bytes"
            await send({"type": "websocket.send", key: payload})
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1006
    return int(_UNSENDABLE.get(code, code)), upstream.close_reason or ""


async def _http_404(send: Send) -> None:
    body = b"Not Found"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
