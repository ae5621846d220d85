"""EventApp as a plain ASGI callable: hand-made messages in, sent messages out."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from starlette._utils import get_route_path as route_path

from wsevents import Channel, Connection, EventApp, EventError

pytestmark = pytest.mark.anyio


class ASGIPeer:
    """Feeds an app scripted messages and records what it sends."""

    def __init__(self, *messages: dict[str, Any], fail_send_after: int | None = None) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.sent: list[dict[str, Any]] = []
        self.fail_send_after = fail_send_after

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail_send_after is not None and len(self.sent) >= self.fail_send_after:
            raise OSError("client went away")  # what uvicorn's ClientDisconnected is
        self.sent.append(message)

    def frames(self) -> list[Any]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


def scope(path: str = "/c", **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "subprotocols": [],
        **extra,
    }


def event(frame: Any) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": json.dumps(frame)}


DISCONNECT = {"type": "websocket.disconnect", "code": 1000}


def make_app() -> tuple[EventApp, list[Any]]:
    channel = Channel("/c")
    seen: list[Any] = []

    @channel.on("tasks", reply=int)
    async def tasks() -> int:
        return len(asyncio.all_tasks())

    @channel.on("say")
    async def say(conn: Connection, data: Any) -> None:
        await conn.send("said", data)
        seen.append(("after send", data))

    @channel.on_disconnect
    async def broken_hook(code: int) -> None:
        seen.append(("disconnect", code))
        raise RuntimeError("hook bug")

    app = EventApp([channel], title="t", version="1")
    return app, seen


async def test_handshake_without_the_denial_extension_is_refused_by_closing() -> None:
    app, _ = make_app()
    peer = ASGIPeer({"type": "websocket.connect"})
    await app(scope("/nowhere"), peer.receive, peer.send)
    assert peer.sent == [
        {"type": "websocket.close", "code": 1008, "reason": "no channel at this path"}
    ]


async def test_handshake_with_the_denial_extension_gets_an_http_response() -> None:
    app, _ = make_app()
    peer = ASGIPeer({"type": "websocket.connect"})
    extensions = {"websocket.http.response": {}}
    await app(scope("/nowhere", extensions=extensions), peer.receive, peer.send)
    assert peer.sent == [
        {
            "type": "websocket.http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"23"),
            ],
        },
        {"type": "websocket.http.response.body", "body": b"no channel at this path"},
    ]


async def test_a_first_message_other_than_connect_is_a_server_error() -> None:
    app, _ = make_app()
    peer = ASGIPeer(event({"event": "x"}))
    with pytest.raises(RuntimeError, match=r'Expected ASGI message "websocket\.connect"'):
        await app(scope(), peer.receive, peer.send)


async def test_an_unexpected_message_closes_with_1011_and_hooks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seen = make_app()
    peer = ASGIPeer({"type": "websocket.connect"}, {"type": "websocket.bogus"})
    await app(scope(), peer.receive, peer.send)
    assert peer.sent[0] == {"type": "websocket.accept", "subprotocol": None}
    assert peer.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "internal error"}
    assert seen == [("disconnect", 1011)]
    assert "but got 'websocket.bogus'" in caplog.text
    assert "on_disconnect hook failed" in caplog.text
    assert app.connections == {}


async def test_no_task_is_created_per_frame() -> None:
    app, _ = make_app()
    frames = [event({"event": "tasks", "id": n}) for n in range(50)]
    peer = ASGIPeer({"type": "websocket.connect"}, *frames, DISCONNECT)
    await app(scope(), peer.receive, peer.send)
    counts = [frame["data"] for frame in peer.frames()]
    assert len(counts) == 50
    assert len(set(counts)) == 1


async def test_a_client_gone_mid_send_stops_handling_without_raising() -> None:
    app, seen = make_app()
    peer = ASGIPeer(
        {"type": "websocket.connect"},
        event({"event": "say", "data": 1}),
        event({"event": "say", "data": 2}),
        DISCONNECT,
        fail_send_after=1,  # the accept goes out, then every send fails
    )
    with caplog_disabled():
        await app(scope(), peer.receive, peer.send)
    # The failed send marks the connection closing: the next frame is not handled.
    assert seen == [("after send", 1), ("disconnect", 1000)]
    assert [m["type"] for m in peer.sent] == ["websocket.accept"]


class caplog_disabled:
    def __enter__(self) -> None:
        logging.disable(logging.CRITICAL)

    def __exit__(self, *args: Any) -> None:
        logging.disable(logging.NOTSET)


async def test_lifespan_messages_are_answered() -> None:
    app, _ = make_app()
    peer = ASGIPeer({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    await app({"type": "lifespan"}, peer.receive, peer.send)
    assert peer.sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


async def test_exception_handler_may_raise_the_event_error() -> None:
    channel = Channel("/c")

    @channel.on("lookup")
    async def lookup() -> None:
        raise KeyError("k")

    app = EventApp([channel], title="t", version="1")

    @app.exception_handler(KeyError)
    def missing(conn: Connection, exc: KeyError) -> EventError:
        raise EventError("not_found", "no such key")

    peer = ASGIPeer({"type": "websocket.connect"}, event({"event": "lookup", "id": 1}), DISCONNECT)
    await app(scope(), peer.receive, peer.send)
    assert peer.frames() == [
        {
            "event": "error",
            "data": {"code": "not_found", "message": "no such key", "details": None},
            "id": 1,
        }
    ]


async def test_error_details_that_cannot_be_encoded_become_internal_error() -> None:
    channel = Channel("/c")

    @channel.on("odd")
    async def odd() -> None:
        raise EventError("odd", "details are not JSON", {"n": float("nan")})

    app = EventApp([channel], title="t", version="1")
    peer = ASGIPeer({"type": "websocket.connect"}, event({"event": "odd", "id": 2}), DISCONNECT)
    with caplog_disabled():
        await app(scope(), peer.receive, peer.send)
    assert peer.frames()[0]["data"]["code"] == "internal_error"


async def test_connection_repr_names_id_address_and_state() -> None:
    channel = Channel("/c")
    reprs: list[str] = []

    @channel.on("me")
    async def me(conn: Connection) -> None:
        reprs.append(repr(conn))

    app = EventApp([channel], title="t", version="1")
    peer = ASGIPeer({"type": "websocket.connect"}, event({"event": "me"}), DISCONNECT)
    await app(scope(), peer.receive, peer.send)
    assert reprs[0].startswith("<Connection ")
    assert reprs[0].endswith(" '/c' open>")


@pytest.mark.parametrize(
    ("path", "root_path", "route"),
    [
        ("/ws/c", "/ws", "/c"),
        ("/ws", "/ws", ""),
        ("/wsx/c", "/ws", "/wsx/c"),
        ("/c", "/ws", "/c"),
        ("/c", "", "/c"),
    ],
)
def test_route_path_strips_the_mount_prefix(path: str, root_path: str, route: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == route
