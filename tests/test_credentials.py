"""Credentials that expire, users, and ending a user's connections anywhere (DESIGN.md section 15).

Real uvicorn (in a thread, or processes on one Redis where it crosses), the
real Python client; the app is ``tests/apps/credentials.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps.credentials import app as credentials_app
from tests.conftest import RedisServer, serve, uvicorn_process
from wsevents import Channel, EventApp, EventError
from wsevents.auth import Grant
from wsevents.client import Client, ConnectionLost, connect

pytestmark = pytest.mark.anyio


def token(user: str, lifetime: float | None = None, secret: str | None = None) -> str:
    expires = "-" if lifetime is None else f"{time.time() + lifetime:.3f}"
    return f"{user}|{expires}|{secret or uuid.uuid4().hex}"


class Closes:
    """What an ``on_disconnect`` callback saw: each close code, and when it came."""

    def __init__(self) -> None:
        self.seen: list[tuple[int | None, str, float]] = []
        self.event = asyncio.Event()

    def __call__(self, code: int | None, reason: str) -> None:
        self.seen.append((code, reason, time.time()))
        self.event.set()

    async def next(self, timeout: float = 10.0) -> tuple[int | None, str, float]:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        return self.seen[-1]


@pytest.fixture(scope="module")
def address() -> Any:
    with serve(credentials_app) as found:
        yield found


# -- users and expiry, set at the handshake ------------------------------------------------


async def test_a_grant_sets_user_and_expiry_and_a_plain_identity_keeps_its_meaning(
    address: str,
) -> None:
    granted = token("ann", 60, "g1")
    async with connect(f"ws://{address}/me", token=granted) as ann:
        me = await ann.request("whoami")
    assert me["user"] == "ann"
    assert time.time() + 55 < me["expires_at"] < time.time() + 61
    assert me["identity"] == {"user": "ann", "secret": "g1"}  # the grant's identity
    async with connect(f"ws://{address}/me", token=token("plain", None, "p1")) as plain:
        me = await plain.request("whoami")
    assert (me["user"], me["expires_at"], me["identity"]) == (None, None, {"plain": "p1"})
    async with connect(f"ws://{address}/me", token=token("cat", None)) as cat:
        me = await cat.request("whoami")
    assert (me["user"], me["expires_at"]) == ("cat", None)  # a grant without an expiry


async def test_a_grant_that_expired_already_is_refused_with_401(address: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets_connect(
            f"ws://{address}/me", additional_headers={"Authorization": f"Bearer {token('ann', -1)}"}
        ):
            pass
    assert refused.value.response.status_code == 401


async def test_conn_user_cannot_change_after_the_handshake(address: str) -> None:
    async with connect(f"ws://{address}/hooked?user=ann") as ann:
        with pytest.raises(EventError) as caught:
            await ann.request("set_user", "bob")
        assert caught.value.code == "internal_error"
        assert (await ann.request("whoami"))["user"] == "ann"


def test_grant_checks_its_fields() -> None:
    with pytest.raises(TypeError):
        Grant("x", user="")
    with pytest.raises(TypeError):
        Grant("x", expires_at="soon")  # type: ignore[arg-type]
    assert Grant("x", expires_at=5).expires_at == 5.0
    assert Grant("x", expires_at=1).expired()
    assert not Grant("x", expires_at=time.time() + 60).expired()


# -- expiry: 4401 at expires_at, not before ------------------------------------------------


async def test_an_expiry_set_by_a_hook_closes_with_4401_at_that_time_and_is_never_asked(
    address: str,
) -> None:
    closes = Closes()
    asked: list[Any] = []
    started = time.time()
    client = Client(
        f"ws://{address}/hooked?user=ann&ttl=1.5", on_disconnect=closes, reconnect=False
    )
    client.answer("wsevents.refresh", asked.append)
    async with client:
        expires_at = (await client.request("whoami"))["expires_at"]
        assert started + 1.4 < expires_at < time.time() + 1.6
        code, reason, when = await closes.next()
    assert (code, reason) == (4401, "credentials expired")
    assert expires_at <= when < expires_at + 2.0  # at its expiry, never before
    assert asked == []  # no BearerAuth, no refresh


async def test_a_handler_may_move_the_expiry(address: str) -> None:
    closes = Closes()
    async with connect(
        f"ws://{address}/hooked?user=ann&ttl=0.8", on_disconnect=closes, reconnect=False
    ) as ann:
        await ann.request("expire_in", {"seconds": None})
        await asyncio.sleep(1.3)  # past the first expiry: still open
        assert (await ann.request("whoami"))["expires_at"] is None
        asked = time.time()
        await ann.request("expire_in", {"seconds": 0.5})
        code, _, when = await closes.next()
    assert code == 4401
    assert asked + 0.5 <= when < asked + 2.5  # at the moved expiry, never before


async def test_the_python_client_stays_connected_across_two_refreshes_with_a_token_function(
    address: str,
) -> None:
    issued: list[str] = []

    async def fresh() -> str:
        issued.append(token("ann", 2.5, f"r{len(issued)}"))
        return issued[-1]

    closes = Closes()
    async with connect(f"ws://{address}/me", token=fresh, on_disconnect=closes) as ann:
        first = await ann.request("whoami")
        # Past two expiries: the first, and the one the first refresh (1 s ahead) moved it to.
        await asyncio.sleep(first["expires_at"] - time.time() + 1.7)
        now = await ann.request("whoami")
        assert closes.seen == []
        assert ann.reconnects == 0
    assert len(issued) >= 3  # the handshake's and two refreshes
    assert now["id"] == first["id"]  # the same connection
    assert now["user"] == "ann"
    assert now["expires_at"] > first["expires_at"] + 1.0  # moved on twice
    assert now["identity"]["secret"] == f"r{len(issued) - 1}"  # replaced by the last refresh


def refused_answers() -> list[Any]:
    return [
        pytest.param(None, id="no-answer"),  # a client without a token answers unknown_event
        pytest.param(lambda: token("bob", 60), id="another-user"),
        pytest.param(lambda: token("refuse"), id="refused"),
        pytest.param(lambda: token("raise"), id="verify-raises"),
        pytest.param(lambda: token("plain"), id="plain-identity"),
        pytest.param(lambda: token("ann", -5), id="expired-grant"),
        pytest.param(lambda: token("ann", 60, "slow"), id="verify-slower-than-the-time-left"),
    ]


@pytest.mark.parametrize("refreshed", refused_answers())
async def test_a_refresh_refused_closes_with_4401_at_expiry_not_before(
    address: str, refreshed: Any
) -> None:
    closes = Closes()
    first = token("ann", 1.5)
    headers = {"Authorization": f"Bearer {first}"}
    client = Client(f"ws://{address}/me", headers=headers, on_disconnect=closes, reconnect=False)
    if refreshed is not None:
        client.answer("wsevents.refresh", lambda data: {"token": refreshed()})
    async with client:
        expires_at = (await client.request("whoami"))["expires_at"]
        code, reason, when = await closes.next()
    assert (code, reason) == (4401, "credentials expired")
    assert expires_at <= when < expires_at + 2.0


async def test_after_4401_a_client_with_a_token_function_reconnects_with_a_fresh_token(
    address: str,
) -> None:
    calls: list[str] = []

    def fresh() -> str:
        # The handshake's, then refused at the refresh (another user's), then good again.
        calls.append(["ann", "bob", "ann"][min(len(calls), 2)])
        return token(calls[-1], 1.5 if len(calls) == 1 else 60)

    closes = Closes()
    async with connect(
        f"ws://{address}/me", token=fresh, on_disconnect=closes, backoff=(0.05, 0.1)
    ) as ann:
        first = await ann.request("whoami")
        code, _, _ = await closes.next()
        assert code == 4401
        again = await ann.request("whoami", timeout=5)
    assert ann.reconnects == 1
    assert again["id"] != first["id"]
    assert again["user"] == "ann"
    assert calls == ["ann", "bob", "ann"]


async def test_after_4401_a_client_with_a_string_token_stops(address: str) -> None:
    closes = Closes()
    async with connect(f"ws://{address}/hooked?user=ann&ttl=0.5", on_disconnect=closes) as ann:
        await closes.next()
        with pytest.raises(ConnectionLost) as lost:
            await ann.request("whoami")
        assert lost.value.__cause__ is not None
        await asyncio.sleep(0.5)
        assert ann.reconnects == 0
        assert ann.close_code == 4401


# -- send_to_user and disconnect, in one process -------------------------------------------


async def test_send_to_user_reaches_every_connection_of_that_user_only(address: str) -> None:
    async with (
        connect(f"ws://{address}/hooked?user=ann") as ann,
        connect(f"ws://{address}/me", token=token("ann", 60)) as ann_phone,
        connect(f"ws://{address}/hooked?user=bob") as bob,
    ):
        await bob.request("tell", {"user": "ann", "text": "hi"})
        for client in (ann, ann_phone):
            pushed = await asyncio.wait_for(anext(aiter(client)), 5)
            assert (pushed.event, pushed.data) == ("told", {"user": "ann", "text": "hi"})
        await ann.request("tell", {"user": "nobody", "text": "lost"})  # dropped silently
        await bob.request("whoami")
        assert bob.dropped == 0
        assert "told" not in [m.event async for m in drained(bob)]
        assert (await ann.request("whoami"))["topics"] == []  # not the user's own topic


async def drained(client: Client) -> Any:
    """The pushes waiting already, without waiting for more."""
    while True:
        try:
            yield await asyncio.wait_for(anext(aiter(client)), 0.2)
        except asyncio.TimeoutError:
            return


async def test_disconnect_by_user_or_id_closes_with_4403_and_the_client_stops(
    address: str,
) -> None:
    ann_closes, phone_closes, bob_closes = Closes(), Closes(), Closes()
    async with (
        connect(f"ws://{address}/hooked?user=ann", on_disconnect=ann_closes) as ann,
        connect(f"ws://{address}/hooked?user=ann", on_disconnect=phone_closes) as ann_phone,
        connect(f"ws://{address}/hooked?user=bob", on_disconnect=bob_closes) as bob,
        connect(f"ws://{address}/hooked?user=cat") as cat,
    ):
        bob_id = (await bob.request("whoami"))["id"]
        # By id and another user: not that user's connection, nothing happens.
        await ann.request("end", {"id": bob_id, "user": "ann"})
        await bob.request("end", {"user": "ann", "reason": "signed out"})
        for closes in (ann_closes, phone_closes):
            code, reason, _ = await closes.next()
            assert (code, reason) == (4403, "signed out")
        await asyncio.sleep(0.3)
        assert (ann.reconnects, ann_phone.reconnects) == (0, 0)  # 4403: never again
        with pytest.raises(ConnectionLost) as lost:
            await ann.request("whoami")
        assert lost.value.code == 4403
        assert bob_closes.seen == []
        await cat.request("end", {"id": bob_id, "reason": "bye"})
        code, reason, _ = await bob_closes.next()
        assert (code, reason) == (4403, "bye")


async def test_disconnect_checks_its_arguments() -> None:
    app = EventApp([Channel("/c")], title="t", version="1")
    async with app.lifespan(app):
        with pytest.raises(ValueError, match="connection_id, a user, or both"):
            await app.disconnect()
        with pytest.raises(ValueError, match="3000 to 4999"):
            await app.disconnect(user="ann", code=1011)
        with pytest.raises(ValueError, match="123 bytes"):
            await app.disconnect(user="ann", reason="x" * 124)
        with pytest.raises(TypeError):
            await app.send_to_user(None, "e")  # type: ignore[arg-type]
        await app.disconnect("nobody-1", user="ann")  # an id nobody holds: nothing


# -- across processes, on one Redis --------------------------------------------------------


async def test_send_to_user_and_disconnect_reach_connections_in_another_process(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with (
        uvicorn_process("tests.apps.credentials:app", tmp_path / "1.log", env=env) as (p1, _),
        uvicorn_process("tests.apps.credentials:app", tmp_path / "2.log", env=env) as (p2, _),
    ):
        one, two = f"ws://127.0.0.1:{p1}", f"ws://127.0.0.1:{p2}"
        closes = {name: Closes() for name in ("ann1", "ann2", "bob2", "cat2")}
        async with (
            connect(f"{one}/hooked?user=ann", on_disconnect=closes["ann1"]) as ann1,
            connect(f"{two}/me", token=token("ann", 60), on_disconnect=closes["ann2"]) as ann2,
            connect(f"{two}/hooked?user=bob", on_disconnect=closes["bob2"]) as bob2,
            connect(f"{two}/hooked?user=cat", on_disconnect=closes["cat2"]) as cat2,
        ):
            ids = {name: (await c.request("whoami"))["id"] for name, c in
                   (("ann1", ann1), ("bob2", bob2), ("cat2", cat2))}  # fmt: skip
            # send_to_user from process 1 reaches ann in both processes.
            await ann1.request("tell", {"user": "ann", "text": "both"})
            for client in (ann1, ann2):
                pushed = await asyncio.wait_for(anext(aiter(client)), 5)
                assert pushed.data == {"user": "ann", "text": "both"}
            # disconnect by id from process 1, of bob in process 2.
            await ann1.request("end", {"id": ids["bob2"], "reason": "by id"})
            code, reason, _ = await closes["bob2"].next()
            assert (code, reason) == (4403, "by id")
            # By id with another user: cat stays.
            await ann1.request("end", {"id": ids["cat2"], "user": "ann"})
            # disconnect by user from process 2: ann's connections in both processes.
            await cat2.request("end", {"user": "ann", "reason": "signed out everywhere"})
            for name in ("ann1", "ann2"):
                code, reason, _ = await closes[name].next()
                assert (code, reason) == (4403, "signed out everywhere")
            assert (await cat2.request("whoami"))["user"] == "cat"
            assert closes["cat2"].seen == []
            await asyncio.sleep(0.3)
            assert (ann1.reconnects, ann2.reconnects, bob2.reconnects) == (0, 0, 0)


async def test_no_token_reaches_the_log_at_trace_level_during_refreshes(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    secrets: list[str] = []

    def secret() -> str:
        # Letters no id, hex dump or timestamp of the log is made of.
        secrets.append("".join(random.choices("ghjkmnpqrstuvwxyz", k=16)))
        return secrets[-1]

    with uvicorn_process("tests.apps.credentials:app", log, args=("--log-level", "trace")) as (
        port,
        _,
    ):
        base = f"ws://127.0.0.1:{port}/me"
        closes = Closes()
        calls = itertools.count()
        async with (
            connect(base, token=lambda: token("ann", 1.3, secret())) as ann,
            connect(base, token=lambda: token("ann", 1.3, secret()), codec="msgpack") as packed,
            connect(
                base,
                token=lambda: token("raise" if next(calls) else "ann", 1.3, secret()),
                on_disconnect=closes,
                reconnect=False,
            ) as raising,
        ):
            first = await ann.request("whoami")
            await closes.next()  # the refresh whose check raised, then 4401 at expiry
            await asyncio.sleep(max(0.0, first["expires_at"] - time.time()) + 0.8)
            assert (await ann.request("whoami"))["id"] == first["id"]  # refreshed
            assert (await packed.request("whoami"))["identity"]["secret"] in secrets
        assert raising.close_code == 4401
        # A refused refresh (another user's token), from a client that spaces its JSON.
        async with websockets_connect(f"{base}?token={token('ann', 1.0, secret())}") as raw:
            frame = json.loads(await asyncio.wait_for(raw.recv(), 5))
            assert frame["event"] == "wsevents.refresh"
            answer = {"token": token("bob", 60, secret())}
            await raw.send(json.dumps({**frame, "data": answer}, indent=1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(raw.recv(), 5)
        assert raw.close_code == 4401
    text = log.read_text()
    assert "ASGI [" in text  # the trace level was on
    # The frames with a token were logged, without it: JSON and MessagePack.
    assert "TEXT [redacted]" in text
    assert "BINARY [redacted]" in text
    assert "the check raised RuntimeError" in text  # that refusal was logged, once
    assert text.count("the check raised") == 1
    for kept in secrets:  # not even the part of a token a log line shows of a long frame
        assert not [kept[i : i + 6] for i in range(len(kept) - 5) if kept[i : i + 6] in text]


def test_the_document_describes_wsevents_refresh_where_bearer_auth_guards_and_the_close_codes() -> (
    None
):
    document = credentials_app.asyncapi()
    operation = document["operations"]["me_send_wsevents_refresh_request"]
    assert operation["action"] == "send"
    channel = document["channels"]["me"]
    asked = channel["messages"]["wsevents_refresh_request"]["$ref"].rsplit("/", 1)[1]
    answer = channel["messages"]["wsevents_refresh_answer"]["$ref"].rsplit("/", 1)[1]
    messages = document["components"]["messages"]
    assert messages[asked]["payload"]["properties"]["event"]["const"] == "wsevents.refresh"
    assert messages[asked]["payload"]["properties"]["data"] == {
        "$ref": "#/components/schemas/wsevents.Refresh"
    }
    assert messages[answer]["payload"]["properties"]["data"] == {
        "$ref": "#/components/schemas/wsevents.RefreshAnswer"
    }
    assert messages[asked]["correlationId"] == {"$ref": "#/components/correlationIds/ask"}
    assert [m["$ref"] for m in operation["reply"]["messages"]] == [
        "#/channels/me/messages/wsevents_refresh_answer",
        "#/channels/me/messages/error_answer",
    ]
    assert "4401" in operation["description"]
    schemas = document["components"]["schemas"]
    assert schemas["wsevents.RefreshAnswer"]["required"] == ["token"]
    # The channel without BearerAuth is never asked.
    assert not [key for key in document["operations"] if key.startswith("hooked_send_wsevents")]
    codes = document["info"]["x-wsevents-close-codes"]
    assert codes["4401"].startswith("the credentials expired")
    assert codes["4403"].endswith("do not reconnect")


def test_typed_clients_leave_wsevents_refresh_to_the_clients_token() -> None:
    from wsevents.asyncapi import generate_client

    python = generate_client(credentials_app, "python")
    typescript = generate_client(credentials_app, "typescript")
    assert "def whoami" in python  # the app's own events are there
    assert "whoami" in typescript
    assert "refresh" not in python
    assert "wsevents.refresh" not in typescript


def test_a_users_own_topic_does_not_take_one_of_its_subscriptions() -> None:
    from wsevents import Connection, Limits, TopicError
    from wsevents.testing import EventTestClient

    channel = Channel("/c")

    @channel.on_connect
    async def sign_in(conn: Connection) -> None:
        conn.user = "ann"

    @channel.on("join", model=str, reply=list[str])
    async def join(conn: Connection, data: str) -> list[str]:
        try:
            await conn.subscribe(data)
        except TopicError as exc:
            raise EventError("too_many", str(exc)) from None
        return sorted(conn.topics)

    app = EventApp([channel], title="t", version="1", limits=Limits(max_subscriptions=2))
    with EventTestClient(app) as client, client.connect("/c") as ws:
        assert ws.request("join", "a") == ["a"]
        assert ws.request("join", "b") == ["a", "b"]  # both: the user's topic takes none
        with pytest.raises(EventError) as caught:
            ws.request("join", "c")
        assert caught.value.code == "too_many"
