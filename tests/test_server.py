"""The wire protocol over a real uvicorn on 127.0.0.1, with a real client (websockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsevents import Channel, Connection, EventApp, EventError, Limits, Reject

from .conftest import serve

pytestmark = pytest.mark.anyio


class Echo(BaseModel):
    text: str
    n: int


def build() -> Starlette:
    echo = Channel("/echo")
    rooms = Channel("/rooms/{room:int}/users/{user}")

    @echo.on_connect
    async def auth(conn: Connection) -> None:
        if conn.query_params.get("token") == "expired":
            raise Reject(401, "token expired")

    @echo.on("echo", model=Echo, reply=Echo)
    async def do_echo(data: Echo) -> Echo:
        return data

    @echo.on("boom")
    async def boom() -> None:
        raise RuntimeError("do not leak this")

    @echo.on("refuse")
    async def refuse() -> None:
        raise EventError("nope", "not today", ["a"])

    @rooms.on("where", reply=dict[str, Any])
    async def where(room: int, user: str) -> dict[str, Any]:
        return {"room": room, "room_type": type(room).__name__, "user": user}

    # 1,000 pipelined requests are a flood by the default rate limit: turn it off here.
    events = EventApp([echo, rooms], title="Server test", version="1", limits=Limits(rate=None))
    return Starlette(routes=[Mount("/ws", app=events)], lifespan=events.lifespan)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with serve(build()) as address:
        yield address


async def test_reply_carries_the_request_id(address: str) -> None:
    async with connect(f"ws://{address}/ws/echo") as ws:
        await ws.send(json.dumps({"event": "echo", "data": {"text": "hi", "n": 1}, "id": "k1"}))
        assert json.loads(await ws.recv()) == {
            "event": "echo",
            "data": {"text": "hi", "n": 1},
            "id": "k1",
        }


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        ("{not json", "bad_frame", None),
        ("[1, 2, 3]", "bad_envelope", None),
        ('{"data": {}, "id": 4}', "bad_envelope", 4),
        ('{"event": "nope", "id": "u1"}', "unknown_event", "u1"),
        ('{"event": "echo", "data": {"text": 1}, "id": "v1"}', "validation_error", "v1"),
        ('{"event": "boom", "id": "b1"}', "internal_error", "b1"),
        ('{"event": "refuse", "id": "r1"}', "nope", "r1"),
    ],
)
async def test_error_frames_over_the_wire(
    address: str, frame: str, code: str, request_id: Any
) -> None:
    async with connect(f"ws://{address}/ws/echo") as ws:
        await ws.send(frame)
        answer = json.loads(await ws.recv())
        assert (answer["event"], answer["data"]["code"], answer["id"]) == (
            "error",
            code,
            request_id,
        )
        assert "do not leak" not in json.dumps(answer)
        # The connection is still up and answering.
        await ws.send(json.dumps({"event": "echo", "data": {"text": "ok", "n": 2}, "id": 9}))
        assert json.loads(await ws.recv())["id"] == 9


async def test_validation_error_details_over_the_wire(address: str) -> None:
    async with connect(f"ws://{address}/ws/echo") as ws:
        await ws.send(json.dumps({"event": "echo", "data": {"text": "x"}, "id": 1}))
        answer = json.loads(await ws.recv())
    assert answer["data"]["details"] == [{"loc": ["n"], "msg": "Field required", "type": "missing"}]


async def test_msgpack_replies_when_negotiated(address: str) -> None:
    async with connect(f"ws://{address}/ws/echo", subprotocols=["wsevents.msgpack"]) as ws:
        assert ws.subprotocol == "wsevents.msgpack"
        await ws.send(msgpack.packb({"event": "echo", "data": {"text": "é", "n": 3}, "id": 1}))
        answer = await ws.recv()
        assert isinstance(answer, bytes)
        assert msgpack.unpackb(answer) == {"event": "echo", "data": {"text": "é", "n": 3}, "id": 1}


async def test_json_subprotocol_is_echoed(address: str) -> None:
    async with connect(f"ws://{address}/ws/echo", subprotocols=["wsevents.json"]) as ws:
        assert ws.subprotocol == "wsevents.json"


async def test_reject_with_401_is_seen_as_http_401(address: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"ws://{address}/ws/echo?token=expired"):
            pass
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"token expired"


async def test_unknown_path_is_http_404(address: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"ws://{address}/ws/missing"):
            pass
    assert caught.value.response.status_code == 404


async def test_path_parameters_are_converted(address: str) -> None:
    async with connect(f"ws://{address}/ws/rooms/12/users/ann") as ws:
        await ws.send(json.dumps({"event": "where", "id": 1}))
        assert json.loads(await ws.recv())["data"] == {
            "room": 12,
            "room_type": "int",
            "user": "ann",
        }


async def test_a_thousand_pipelined_requests_are_answered_in_order(address: str) -> None:
    async with connect(f"ws://{address}/ws/echo") as ws:
        for n in range(1000):
            await ws.send(json.dumps({"event": "echo", "data": {"text": "t", "n": n}, "id": n}))
        answers = [json.loads(await ws.recv()) for _ in range(1000)]
    assert [answer["id"] for answer in answers] == list(range(1000))
    assert [answer["data"]["n"] for answer in answers] == list(range(1000))


async def test_server_shutdown_closes_open_connections() -> None:
    with serve(build()) as address:
        ws = await connect(f"ws://{address}/ws/echo")
        await ws.send(json.dumps({"event": "echo", "data": {"text": "t", "n": 1}, "id": 1}))
        assert json.loads(await ws.recv())["id"] == 1
    with pytest.raises(ConnectionClosed) as caught:
        await ws.recv()
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code in (1001, 1012)


def test_a_refused_handshake_is_not_logged_as_an_error_by_uvicorn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    from examples.chat.app import app as chat_app

    async def refused(address: str) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"ws://{address}/ws/chat/lobby"):  # no ?user=: 403
                pass
        return caught.value.response.status_code

    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    with serve(chat_app) as address:  # uvicorn sets its loggers up as it starts: then listen
        uvicorn_log.addHandler(caplog.handler)
        try:
            statuses = [asyncio.run(refused(address)) for _ in range(3)]
        finally:
            uvicorn_log.removeHandler(caplog.handler)
    assert statuses == [403, 403, 403]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    # The filter drops only that line, only after a refusal of ours.
    from wsevents._handshake import _REFUSAL_FILTER

    other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "%s", ("x",), None)
    complaint = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1,
        "ASGI callable returned without completing handshake.", (), None,
    )  # fmt: skip
    assert _REFUSAL_FILTER.filter(other)
    assert _REFUSAL_FILTER.filter(complaint)  # not in a task that refused: kept
