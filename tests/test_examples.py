"""Every example runs: in-process, over a real uvicorn, and the README's `make run`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from websockets.asyncio.client import connect

from examples.chat.app import app as chat_app
from examples.fastapi_app import app as fastapi_app
from wsevents import Reject
from wsevents.testing import EventTestClient, EventTestSession, Message

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent


def subscribed(ws: EventTestSession, offset: int | None) -> None:
    """The room's position comes first: the chat's rooms keep history."""
    message = ws.receive()
    assert message.event == "wsevents.subscribed"
    if offset is not None:
        assert message.data["offset"] == offset
    assert message.data["recovered"] is None  # no position named


def present(ws: EventTestSession) -> tuple[list[str], list[str]]:
    """The next frame, a room's presence: who joined and who left, by user name."""
    message = ws.receive()
    assert message.event == "wsevents.presence", message
    joined, left = message.data["joined"], message.data["left"]
    return sorted(info["user"] for info in joined.values()), sorted(
        info["user"] for info in left.values()
    )


def test_chat_room_members_hear_each_other_and_no_one_else() -> None:
    with EventTestClient(chat_app) as client, client.connect("/ws/chat/members?user=ann") as ann:
        subscribed(ann, 0)
        assert present(ann) == (["ann"], [])  # who is there, itself included
        with (
            client.connect("/ws/chat/members?user=bob") as bob,
            client.connect("/ws/chat/members-garden?user=cy") as cy,
        ):
            subscribed(bob, 0)
            subscribed(cy, 0)
            assert present(ann) == (["bob"], [])
            assert present(bob) == (["ann", "bob"], [])
            assert present(cy) == (["cy"], [])
            ann.send("say", {"text": "hello"})
            assert bob.receive() == Message("said", {"user": "ann", "text": "hello"})
            assert ann.receive() == Message("said", {"user": "ann", "text": "hello"})
            assert cy.request("ping", {"n": 5}) == {"n": 5}  # cy heard nothing before this
            bob.close()
        assert present(ann) == ([], ["bob"])


def test_a_chat_client_that_comes_back_gets_what_was_said_meanwhile() -> None:
    with EventTestClient(chat_app) as client:
        with client.connect("/ws/chat/back?user=ann") as ann:
            first = json.loads(ann.receive_raw())["data"]
            assert present(ann) == (["ann"], [])
            ann.send("say", {"text": "before"})
            assert ann.receive() == Message("said", {"user": "ann", "text": "before"})
        with client.connect("/ws/chat/back?user=bob") as bob:
            subscribed(bob, 1)
            assert present(bob) == (["bob"], [])
            bob.send("say", {"text": "while ann was away"})
            assert bob.receive() == Message("said", {"user": "bob", "text": "while ann was away"})
        held = json.dumps({"rooms/back": [first["epoch"], 1]})
        with client.connect(f"/ws/chat/back?user=ann&wsevents-resume={held}") as ann:
            missed = ann.receive()
            back = ann.receive()
            assert present(ann) == (["ann"], [])  # bob left before
    assert missed == Message("said", {"user": "bob", "text": "while ann was away"})
    assert back.event == "wsevents.subscribed"
    assert back.data["recovered"] is True


def test_chat_requires_a_user_name_and_validates_what_is_said() -> None:
    with EventTestClient(chat_app) as client:
        with pytest.raises(Reject) as caught, client.connect("/ws/chat/lobby"):
            pass
        assert (caught.value.status, caught.value.reason) == (
            403,
            "a user name is required: add ?user=NAME",
        )
        with pytest.raises(Reject), client.connect(f"/ws/chat/lobby?user={'x' * 33}"):
            pass
        with client.connect("/ws/chat/validation?user=ann") as ann:
            subscribed(ann, 0)
            ann.receive()
            ann.send("say", {"text": ""}, id="s")
            message = ann.receive()
            assert (message.event, message.data["code"], message.id) == (
                "error",
                "validation_error",
                "s",
            )


def test_chat_page_is_served_and_talks_to_the_channel() -> None:
    with EventTestClient(chat_app) as client:
        page = client.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/ws/chat/" in page.text
    assert 'import { Client } from "/ws/wsevents.js"' in page.text  # the served client
    assert "http://" not in page.text  # nothing from a CDN: it works offline
    assert "https://" not in page.text


def test_fastapi_example_serves_http_and_the_mounted_event_app() -> None:
    with EventTestClient(fastapi_app) as client:
        assert client.http.get("/health").json() == {"connections": 0}
        with client.connect("/ws/notifications") as ws:
            assert ws.request("echo", {"text": "hi"}) == {"text": "hi"}
            assert client.http.get("/health").json() == {"connections": 1}
            response = client.http.post("/announce", json={"text": "tea time"})
            assert response.status_code == 202
            assert ws.receive() == Message("notice", {"text": "tea time"})
            assert client.http.post("/announce", json={"text": ""}).status_code == 422


@pytest.mark.anyio
async def test_fastapi_example_over_uvicorn() -> None:
    with serve(fastapi_app) as address:
        async with connect(f"ws://{address}/ws/notifications") as ws:
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                response = await http.post("/announce", json={"text": "over the wire"})
            assert response.status_code == 202
            assert json.loads(await ws.recv()) == {
                "event": "notice",
                "data": {"text": "over the wire"},
            }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Start the README's `make run` on a free port; yield the port and its output file."""
    port = _free_port()
    output = tmp_path / "make-run.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}"],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 120  # a first `make run` may still install
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, output.read_text()
                assert time.monotonic() < deadline, "make run did not start serving"
                time.sleep(0.1)
        yield port, output
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)


@pytest.mark.anyio
async def test_make_run_serves_the_chat_to_two_clients(make_run: tuple[int, Path]) -> None:
    port, output = make_run
    assert f"http://127.0.0.1:{port}/" in output.read_text()
    base = f"ws://127.0.0.1:{port}/ws/chat/tea"
    async with connect(f"{base}?user=ann") as ann:
        assert json.loads(await ann.recv())["event"] == "wsevents.subscribed"
        alone = json.loads(await ann.recv())
        assert alone["event"] == "wsevents.presence"
        assert list(alone["data"]["joined"].values()) == [{"user": "ann"}]
        async with connect(f"{base}?user=bob") as bob:
            joined = json.loads(await ann.recv())
            assert list(joined["data"]["joined"].values()) == [{"user": "bob"}]
            await ann.send(json.dumps({"event": "say", "data": {"text": "hi bob"}}))
            frames = [json.loads(await bob.recv()) for _ in range(3)]
    assert frames[0]["event"] == "wsevents.subscribed"
    epoch = frames[0]["data"]["epoch"]
    assert frames[1]["event"] == "wsevents.presence"
    assert sorted(info["user"] for info in frames[1]["data"]["joined"].values()) == ["ann", "bob"]
    assert frames[2] == {
        "event": "said",
        "data": {"user": "ann", "text": "hi bob"},
        "topic": "rooms/tea",
        "epoch": epoch,
        "offset": 1,
    }


@pytest.mark.anyio
async def test_notifications_by_pattern_by_user_and_by_connection() -> None:
    """The notifications example over uvicorn, with the Python client and HTTP."""
    from examples.notifications.app import app as notifications_app
    from wsevents import EventError
    from wsevents.client import connect as client_connect

    async def next_push(client: Any) -> Any:
        async for message in client:
            return message
        raise AssertionError("no push")

    with serve(notifications_app) as address:
        base = f"ws://{address}/ws/inbox"
        async with (
            client_connect(f"{base}?user=ann") as ann,
            client_connect(f"{base}?user=ann") as ann_phone,
            client_connect(f"{base}?user=bob") as bob,
            httpx.AsyncClient(base_url=f"http://{address}") as http,
        ):
            await ann.request("follow", {"pattern": "alerts/#"})
            await bob.request("follow", {"pattern": "news/+"})
            with pytest.raises(EventError) as caught:
                await bob.request("follow", {"pattern": "+/ann"})  # the whole tree's second level
            assert caught.value.code == "bad_topic"
            with pytest.raises(EventError) as caught:
                await bob.request("follow", {"pattern": "news/#/x"})
            assert caught.value.code == "bad_topic"

            async def post(path: str, body: dict[str, Any]) -> int:
                return (await http.post(path, json=body)).status_code

            # Wildcards: alerts/# matches any depth, news/+ one level only.
            assert await post("/publish", {"topic": "news/sport/late", "title": "nobody"}) == 202
            assert await post("/publish", {"topic": "alerts/fire/floor-2", "title": "fire"}) == 202
            assert await post("/publish", {"topic": "news/sport", "title": "goal"}) == 202
            ann_push = await asyncio.wait_for(next_push(ann), 5)
            assert ann_push.event == "notification"
            assert ann_push.data == {"topic": "alerts/fire/floor-2", "title": "fire", "body": ""}
            bob_push = await asyncio.wait_for(next_push(bob), 5)
            assert bob_push.data["title"] == "goal"  # not "nobody": + is one level
            # One user, on every connection of theirs; nobody else.
            assert await post("/users/ann/messages", {"text": "lunch?"}) == 202
            for client in (ann, ann_phone):
                push = await asyncio.wait_for(next_push(client), 5)
                assert (push.event, push.data) == ("direct", {"text": "lunch?"})
            # One connection, by id (send_to).
            me = await ann_phone.request("whoami")
            assert me["user"] == "ann"
            assert (
                await post(f"/connections/{me['connection_id']}/messages", {"text": "psst"}) == 202
            )
            push = await asyncio.wait_for(next_push(ann_phone), 5)
            assert push.data == {"text": "psst"}
            # Bad requests are 422s; a user's messages are not a topic anyone can publish to.
            assert await post("/publish", {"topic": "alerts/x", "title": ""}) == 422
            assert await post("/publish", {"topic": "alerts/+", "title": "x"}) == 422
            assert await post("/publish", {"topic": "$user/ann", "title": "spoof"}) == 422
            # Nothing else arrived anywhere.
            await ann.request("whoami")
            await bob.request("whoami")
            assert [m async for m in _drain(ann)] == []
            assert [m async for m in _drain(bob)] == []


async def _drain(client: Any) -> Any:
    """The pushes already waiting, without waiting for more."""
    while client._inbox:
        yield client._inbox.popleft()


@pytest.mark.anyio
async def test_accounts_refresh_message_a_user_and_sign_out_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The accounts example over uvicorn: PyJWT tokens, refreshed, then revoked."""
    from examples.accounts import app as accounts
    from wsevents.client import ConnectionLost
    from wsevents.client import connect as client_connect

    monkeypatch.setattr(accounts, "LIFETIME", 2.0)  # short-lived tokens, refreshed 1 s ahead
    monkeypatch.setattr(accounts.auth, "refresh_before", 1.0)
    with serve(accounts.app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:

            async def login() -> str:
                answer = await http.post("/login", json={"user": "ann"})
                token: str = answer.json()["token"]
                return token

            closes: list[tuple[int | None, str]] = []
            url = f"ws://{address}/ws/inbox"
            async with (
                client_connect(url, token=login, on_disconnect=lambda *c: closes.append(c)) as ann,
                client_connect(url, token=login) as ann_phone,
            ):
                first = await ann.request("whoami")
                assert first["user"] == "ann"
                await asyncio.sleep(first["expires_at"] - time.time() + 1.2)  # past its expiry
                again = await ann.request("whoami")
                assert again["expires_at"] > first["expires_at"]  # refreshed in band
                assert (closes, ann.reconnects) == ([], 0)
                sent = await http.post("/users/ann/messages", json={"text": "lunch?"})
                assert sent.status_code == 202
                for client in (ann, ann_phone):
                    pushed = await asyncio.wait_for(anext(aiter(client)), 5)
                    assert (pushed.event, pushed.data) == ("message", {"text": "lunch?"})
                old = await login()
                assert (await http.post("/users/ann/logout")).status_code == 200
                for client in (ann, ann_phone):
                    with pytest.raises(ConnectionLost) as lost:
                        await asyncio.wait_for(client.request("whoami"), 5)
                    assert (lost.value.code, lost.value.reason) == (4403, "signed out")
                assert closes == [(4403, "signed out")]  # told before the requests failed
                assert (ann.reconnects, ann_phone.reconnects) == (0, 0)
            # A token from before the logout is refused; a new login gets in.
            with pytest.raises(Reject) as refused:
                async with client_connect(url, token=old):
                    pass
            assert refused.value.status == 403
            async with client_connect(url, token=login) as back:
                assert (await back.request("whoami"))["user"] == "ann"
        garbage = await asyncio.to_thread(
            httpx.post, f"http://{address}/login", json={"user": "Ann Smith"}
        )
        assert garbage.status_code == 422
