"""wsevents.client against a real uvicorn: requests, errors, pushes, reconnects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from wsevents import Channel, Connection, EventApp, EventError, Limits, Reject
from wsevents.client import Client, ConnectionLost, Message, connect

from .conftest import serve

pytestmark = pytest.mark.anyio


class Echo(BaseModel):
    text: str
    n: int


class Topic(BaseModel):
    topic: str


class Shout(BaseModel):
    topic: str
    text: str


def build() -> EventApp:
    room = Channel("/room")

    @room.on_connect
    async def check(conn: Connection) -> None:
        if conn.query_params.get("deny"):
            raise Reject(403, "go away")

    @room.on("echo", model=Echo, reply=Echo)
    async def echo(data: Echo) -> Echo:
        return data

    @room.on("join", model=Topic)
    async def join(conn: Connection, data: Topic) -> None:
        await conn.subscribe(data.topic)

    @room.on("shout", model=Shout)
    async def shout(conn: Connection, data: Shout) -> None:
        await conn.publish(data.topic, "heard", {"text": data.text})

    @room.on("fail")
    async def fail() -> None:
        raise EventError("not_found", "no such thing", {"id": 7})

    @room.on("slow")
    async def slow() -> None:
        await asyncio.sleep(2)

    @room.on("late")
    async def late() -> str:
        await asyncio.sleep(0.3)
        return "too late"

    return EventApp([room], title="t", version="1", limits=Limits(rate=None))


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_request_reply_and_errors(codec: Any) -> None:
    with serve(build()) as address:
        async with connect(f"ws://{address}/room", codec=codec) as client:
            assert client.codec.subprotocol == f"wsevents.{codec}"
            assert await client.request("echo", {"text": "hi", "n": 2}) == {"text": "hi", "n": 2}
            assert await client.request("echo", Echo(text="m", n=1)) == {"text": "m", "n": 1}
            with pytest.raises(EventError) as caught:
                await client.request("fail")
            assert (caught.value.code, caught.value.message) == ("not_found", "no such thing")
            assert caught.value.details == {"id": 7}
            with pytest.raises(EventError) as caught:
                await client.request("echo", {"text": "hi"})
            assert caught.value.code == "validation_error"
            assert caught.value.details[0]["loc"] == ["n"]
            with pytest.raises(TimeoutError, match=r"no answer to 'late' within 0\.1 s"):
                await client.request("late", timeout=0.1)
            # Its answer comes later, and goes nowhere: not to async for.
            await asyncio.sleep(0.4)
            # asyncio.wait_for raises asyncio.TimeoutError: TimeoutError from 3.11 only.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(anext(aiter(client)), 0.2)
            # Many requests at once, each answered by its own reply.
            replies = await asyncio.gather(
                *(client.request("echo", {"text": str(n), "n": n}) for n in range(50))
            )
            assert [reply["n"] for reply in replies] == list(range(50))


async def test_pushes_reach_listeners_and_async_for() -> None:
    with serve(build()) as address:
        url = f"ws://{address}/room"
        async with connect(url) as listener, connect(url) as other:
            heard: list[Any] = []
            await listener.request("echo", {"text": "", "n": 0})  # connected
            await listener.send("join", {"topic": "a"})
            await listener.send("join", {"topic": "b"})
            await listener.request("echo", {"text": "", "n": 0})  # the joins are done
            got = asyncio.Event()

            @listener.on("heard")
            async def on_heard(data: Any) -> None:
                heard.append(data["text"])
                got.set()

            await other.send("shout", {"topic": "a", "text": "one"})
            await asyncio.wait_for(got.wait(), 5)
            assert heard == ["one"]
            listener.off("heard", on_heard)
            await other.send("shout", {"topic": "b", "text": "two"})
            # Without a listener the push goes to async for.
            async for message in listener:
                assert message == Message("heard", {"text": "two"}, None)
                break
            # Uncorrelated error frames are pushes too.
            await listener.send("nope")
            async for message in listener:
                assert message.event == "error"
                assert message.data["code"] == "unknown_event"
                break
            assert heard == ["one"]


async def test_a_refused_handshake_raises_reject() -> None:
    with serve(build()) as address:
        with pytest.raises(Reject) as caught:
            async with connect(f"ws://{address}/room?deny=1"):
                pass
        assert (caught.value.status, caught.value.reason) == (403, "go away")


async def test_a_server_restart_is_survived_with_topics_rejoined() -> None:
    app = build()
    rejoined: list[int] = []

    async def rejoin(client: Client) -> None:
        await client.send("join", {"topic": "news"})
        rejoined.append(client.reconnects)

    with serve(app) as address:
        port = int(address.rsplit(":", 1)[1])
        client = connect(f"ws://{address}/room", on_connect=rejoin, backoff=(0.05, 0.5))
        await client.open()
        try:
            assert await client.request("echo", {"text": "a", "n": 1}) == {"text": "a", "n": 1}
        except BaseException:
            await client.close()
            raise
    # The server is gone: the client notices and tries again, with backoff.
    try:
        await asyncio.sleep(0.3)
        assert not client.connected
        with serve(build(), port=port) as address:
            assert await client.request("echo", {"text": "b", "n": 2}, timeout=10) == {
                "text": "b",
                "n": 2,
            }
            assert client.reconnects == 1
            assert rejoined == [0, 1]
            async with connect(f"ws://{address}/room") as other:
                await other.send("shout", {"topic": "news", "text": "after"})
                async for message in client:
                    assert message == Message("heard", {"text": "after"}, None)
                    break
    finally:
        await client.close()


async def test_without_reconnect_a_lost_connection_ends_iteration_and_requests() -> None:
    with serve(build()) as address:
        client = connect(f"ws://{address}/room", reconnect=False)
        await client.open()
        pending = asyncio.ensure_future(client.request("slow", timeout=10))
        await asyncio.sleep(0.2)
    try:
        with pytest.raises(ConnectionLost):
            await pending
        with pytest.raises(ConnectionLost):
            async for _ in client:
                pass
        with pytest.raises(ConnectionLost):
            await client.send("echo", {"text": "x", "n": 1})
    finally:
        await client.close()


async def test_gives_up_after_max_attempts() -> None:
    with serve(build()) as address:
        client = connect(f"ws://{address}/room", backoff=(0.01, 0.02), max_attempts=3)
        await client.open()
    try:
        with pytest.raises(ConnectionLost, match="no connection after 3 attempts"):
            async for _ in client:
                pass
    finally:
        await client.close()


def test_codec_must_be_known() -> None:
    with pytest.raises(ValueError, match="codec must be 'json' or 'msgpack'"):
        connect("ws://x", codec="xml")  # type: ignore[arg-type]


async def odd_server(scope: Any, receive: Any, send: Any) -> None:
    """A raw ASGI server that answers every frame with frames a client must survive."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if b"deny=503" in scope["query_string"]:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 503, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"busy"})
        return
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "wsevents.json"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        request = json.loads(message["text"])
        for text in (
            "not json",
            '["not", "an", "envelope"]',
            *(json.dumps({"event": "tick", "data": n}) for n in range(5)),
            json.dumps({"event": "error", "data": {"message": "no code"}, "id": request["id"]}),
        ):
            await send({"type": "websocket.send", "text": text})


async def test_frames_that_are_not_envelopes_are_skipped_and_a_full_queue_drops_the_oldest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(odd_server) as address:
        async with connect(f"ws://{address}/", max_queue=3) as client:
            failing: list[Any] = []

            def broken(data: Any) -> None:
                failing.append(data)
                raise RuntimeError("listener bug")

            client.on("tick", broken)
            client.off("tick", broken)
            client.off("tick", broken)  # twice: nothing happens
            client.on("other", broken)
            with pytest.raises(EventError) as caught:
                await client.request("anything")
            # An error frame without a code is still an error, said to be malformed.
            assert caught.value.code == "bad_frame"
            assert caught.value.details == {"message": "no code"}
            ticks = [message.data async for message in _take(client, 3)]
            assert ticks == [2, 3, 4]  # 0 and 1 were dropped, and counted
            assert client.dropped == 2
    assert "not an envelope" in caplog.text
    assert failing == []


async def _take(client: Client, count: int) -> Any:
    seen = 0
    async for message in client:
        yield message
        seen += 1
        if seen == count:
            return


async def test_a_listener_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(build()) as address:
        url = f"ws://{address}/room"
        async with connect(url) as listener, connect(url) as other:
            await listener.request("join", {"topic": "t"})
            heard: list[Any] = []

            def broken(data: Any) -> None:
                raise RuntimeError("listener bug")

            async def broken_async(data: Any) -> None:
                raise RuntimeError("async listener bug")

            listener.on("heard", broken)
            listener.on("heard", broken_async)
            listener.on("heard", heard.append)
            await other.request("shout", {"topic": "t", "text": "x"})
            await listener.request("echo", {"text": "", "n": 0})  # the push came before
            await asyncio.sleep(0.05)  # the async listener's task ran
    assert heard == [{"text": "x"}]
    assert "listener bug" in caplog.text
    assert "async listener bug" in caplog.text


async def test_a_reconnect_refused_for_good_ends_the_client() -> None:
    with serve(build()) as address, pytest.raises(Reject):  # a first refusal raises at once
        await connect(f"ws://{address}/room?deny=1").open()
    with serve(build()) as address:
        port = int(address.rsplit(":", 1)[1])
        client = connect(f"ws://{address}/room", backoff=(0.05, 0.1))
        await client.open()
    try:
        # The server comes back refusing this client: 403 is final, no more attempts.
        denying = build()

        @denying.channels[0].on_connect
        async def deny_all() -> None:
            raise Reject(403, "banned")

        with serve(denying, port=port), pytest.raises(ConnectionLost, match="banned"):
            async for _ in client:
                pass
    finally:
        await client.close()


async def test_a_reconnect_refused_with_503_is_tried_again() -> None:
    with serve(odd_server) as address:
        with pytest.raises(Reject) as caught:
            await connect(f"ws://{address}/?deny=503").open()
        assert (caught.value.status, caught.value.reason) == (503, "busy")
        client = connect(f"ws://{address}/", backoff=(0.05, 0.1), max_attempts=2)
        await client.open()
    try:
        with pytest.raises(ConnectionLost, match="no connection after 2 attempts"):
            async for _ in client:
                pass
        with pytest.raises(ConnectionLost, match="the connection was lost"):
            await client.send("x")
    finally:
        await client.close()
