"""wsevents.proxy: a gateway in front of the chat, both real uvicorns."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from examples.chat.app import app as chat_app
from wsevents import Reject
from wsevents.client import Message, connect
from wsevents.proxy import WebSocketProxy

from .conftest import serve

pytestmark = pytest.mark.anyio


def gateway(upstream: str) -> Starlette:
    return Starlette(routes=[Mount("/ws", WebSocketProxy(upstream))])


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_frames_go_both_ways_through_the_gateway(codec: Any) -> None:
    with serve(chat_app) as backend, serve(gateway(f"ws://{backend}/ws")) as front:
        async with (
            connect(f"ws://{front}/ws/chat/lobby?user=ann", codec=codec) as ann,
            connect(f"ws://{backend}/ws/chat/lobby?user=bob") as bob,
        ):
            assert ann.codec.subprotocol == f"wsevents.{codec}"
            assert await ann.request("ping", {"n": 41}) == {"n": 41}
            await ann.request("say", {"text": "through the gateway"})
            async for message in bob:
                if message.event == "said":
                    assert message == Message(
                        "said", {"user": "ann", "text": "through the gateway"}, None
                    )
                    break
            await bob.request("say", {"text": "back"})
            async for message in ann:
                if message.event == "said" and message.data["user"] == "bob":
                    assert message.data == {"user": "bob", "text": "back"}
                    break
            # The subprotocol the upstream chose is the one the client got.
            raw = await ws_connect(
                f"ws://{front}/ws/chat/lobby?user=cy", subprotocols=["x.nope", "wsevents.json"]
            )
            assert raw.subprotocol == "wsevents.json"
            await raw.close()


async def test_a_refusal_upstream_is_the_clients_refusal() -> None:
    with serve(chat_app) as backend, serve(gateway(f"ws://{backend}/ws")) as front:
        with pytest.raises(Reject) as caught:
            async with connect(f"ws://{front}/ws/chat/lobby"):
                pass
        assert caught.value.status == 403
        assert "user name is required" in caught.value.reason
        with pytest.raises(Reject) as caught:
            async with connect(f"ws://{front}/ws/nowhere"):
                pass
        assert caught.value.status == 404


async def test_an_upstream_that_is_down_is_a_502() -> None:
    with serve(chat_app) as backend:
        pass  # started and stopped: nobody listens there now
    with serve(gateway(f"ws://{backend}/ws")) as front:
        with pytest.raises(Reject) as caught:
            async with connect(f"ws://{front}/ws/chat/lobby?user=ann", reconnect=False):
                pass
        assert caught.value.status == 502
        with pytest.raises(urllib.error.HTTPError) as http:
            await asyncio.to_thread(urllib.request.urlopen, f"http://{front}/ws/chat/lobby")
        assert http.value.code == 404
        # The error holds the response and its socket: closed here, not left to
        # the garbage collector, which would warn during whichever test runs then.
        http.value.close()


async def test_closing_either_end_closes_the_other() -> None:
    with serve(chat_app) as backend, serve(gateway(f"ws://{backend}/ws")) as front:
        async with connect(f"ws://{backend}/ws/chat/lobby?user=bob") as bob:

            async def heard(change: str) -> None:  # ann in the room's presence diffs
                async for message in bob:
                    if message.event == "wsevents.presence" and {"user": "ann"} in list(
                        message.data[change].values()
                    ):
                        return

            ann = await ws_connect(f"ws://{front}/ws/chat/lobby?user=ann")
            await asyncio.wait_for(heard("joined"), 5)
            # The client leaves: the upstream connection closes, the room hears it.
            await ann.close(1000)
            await asyncio.wait_for(heard("left"), 5)
        # The upstream goes away: the client is closed with the upstream's code.
        cy = await ws_connect(f"ws://{front}/ws/chat/lobby?user=cy")
    # serve() has stopped both servers; the backend closed with 1012 (restart) or 1001.
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(read_until_closed(cy), 5)  # the room's frames may come first
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code in (1001, 1012)


async def read_until_closed(ws: Any) -> None:
    while True:
        await ws.recv()


async def test_an_upstream_function_routes_and_the_proxy_runs_on_its_own() -> None:
    with serve(chat_app) as backend:
        seen: list[str] = []

        def route(scope: Any) -> str:
            seen.append(scope["path"])
            return f"ws://{backend}/ws/chat/fixed?user=zed"

        # Served directly (no Starlette around it): it answers the lifespan itself.
        with serve(WebSocketProxy(route)) as front:
            async with connect(f"ws://{front}/anything/at/all") as client:
                assert await client.request("ping", {"n": 3}) == {"n": 3}
                pushes = []
                async for message in client:
                    pushes.append(message)
                    if len(pushes) == 2:
                        break
                assert pushes[0].event == "wsevents.subscribed"  # the room keeps history
                assert pushes[1].event == "wsevents.presence"  # and has members
                assert list(pushes[1].data["joined"].values()) == [{"user": "zed"}]
    assert seen == ["/anything/at/all"]
