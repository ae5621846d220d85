"""Bearer tokens at the handshake, their AsyncAPI security schemes, and redacted logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsevents import Channel, Connection, EventApp, Reject
from wsevents.auth import BearerAuth, RedactingFilter, bearer_token, redact
from wsevents.testing import EventTestClient

from .asyncapi_rules import problems
from .conftest import uvicorn_process

USERS = {"s3cret-token": "ann"}


async def verify(token: str) -> str | None:
    return USERS.get(token)


def build(**options: Any) -> EventApp:
    channel = Channel("/me")

    @channel.on("whoami", reply=str)
    async def whoami(conn: Connection) -> str:
        identity: str = conn.state.identity
        return identity

    app = EventApp([channel], title="Auth", version="1")
    app.on_connect(BearerAuth(verify, **options))
    return app


@pytest.mark.parametrize(
    ("path", "headers", "subprotocols"),
    [
        ("/me", {"authorization": "Bearer s3cret-token"}, None),
        ("/me", {}, ["wsevents.json", "bearer.s3cret-token"]),
        ("/me?token=s3cret-token", {}, None),
    ],
)
def test_a_token_from_any_source_lets_the_client_in(
    path: str, headers: dict[str, str], subprotocols: list[str] | None
) -> None:
    with (
        EventTestClient(build()) as client,
        client.connect(path, headers=headers, subprotocols=subprotocols) as ws,
    ):
        assert ws.request("whoami") == "ann"
        assert ws.subprotocol == ("wsevents.json" if subprotocols else None)


def test_no_token_is_401_and_a_wrong_token_is_403() -> None:
    with EventTestClient(build()) as client:
        with pytest.raises(Reject) as missing, client.connect("/me"):
            pass
        with pytest.raises(Reject) as wrong, client.connect("/me?token=nope"):
            pass
        with pytest.raises(Reject), client.connect("/me", headers={"authorization": "Basic x"}):
            pass
    assert (missing.value.status, missing.value.reason) == (401, "a bearer token is required")
    assert (wrong.value.status, wrong.value.reason) == (403, "the token was not accepted")


def test_sources_can_be_turned_off() -> None:
    with EventTestClient(build(query_param=None, subprotocol_prefix=None)) as client:
        with pytest.raises(Reject) as caught, client.connect("/me?token=s3cret-token"):
            pass
        assert caught.value.status == 401
        with client.connect("/me", headers={"authorization": "bearer s3cret-token"}) as ws:
            assert ws.request("whoami") == "ann"


def test_a_sync_verify_and_a_verify_that_rejects_itself() -> None:
    def strict(token: str) -> str:
        if token == "banned":
            raise Reject(403, "banned")
        return f"user:{token}"

    channel = Channel("/c")
    app = EventApp([channel], title="t", version="1")
    channel.on_connect(BearerAuth(strict, state_attribute="user"))

    @channel.on("me", reply=str)
    async def me(conn: Connection) -> str:
        user: str = conn.state.user
        return user

    with EventTestClient(app) as client:
        with client.connect("/c?token=abc") as ws:
            assert ws.request("me") == "user:abc"
        with pytest.raises(Reject) as caught, client.connect("/c?token=banned"):
            pass
    assert caught.value.reason == "banned"


def test_bearer_token_reads_the_first_source_that_has_one() -> None:
    class Fake:
        def __init__(self) -> None:
            self.headers = {"authorization": "Bearer from-header"}
            self.scope = {"subprotocols": ["bearer.from-protocol"]}
            self.query_params = {"token": "from-query"}

    conn: Any = Fake()
    assert bearer_token(conn) == "from-header"
    assert bearer_token(conn, header=False) == "from-protocol"
    assert bearer_token(conn, header=False, subprotocol_prefix=None) == "from-query"
    assert bearer_token(conn, header=False, subprotocol_prefix=None, query_param=None) is None


def test_the_asyncapi_document_describes_the_security_schemes() -> None:
    document = build(subprotocol_prefix=None).asyncapi()
    assert document["components"]["securitySchemes"] == {
        "bearerHeader": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer TOKEN` on the handshake.",
        },
        "bearerQuery": {
            "type": "httpApiKey",
            "name": "token",
            "in": "query",
            "description": "`?token=TOKEN` on the handshake URL.",
        },
    }
    assert document["operations"]["me_receive_whoami"]["security"] == [
        {"$ref": "#/components/securitySchemes/bearerHeader"},
        {"$ref": "#/components/securitySchemes/bearerQuery"},
    ]
    assert problems(document) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('1.2.3.4 - "WebSocket /me?token=abc&x=1" 403', '1.2.3.4 - "WebSocket /me?[redacted]" 403'),
        ("Authorization: Bearer eyJhbGc.x.y", "Authorization: Bearer [redacted]"),
        ("offered bearer.tok123, wsevents.json", "offered bearer.[redacted], wsevents.json"),
        ("login with password=hunter2 done", "login with password=[redacted] done"),
        ("what? nothing", "what? nothing"),
        # Frames as websockets logs them: a refresh answer, cut in the middle, and in hex.
        ("""TEXT '{"event":"wsevents.refresh","data":{"token":"e...2"},"ask":"q1"}' [91 bytes]""",
         "TEXT [redacted] [91 bytes]"),
        ("BINARY 83 a5 65 76 65 6e 74 b0 77 73 65 76 65 6e 74 73 ... 6d a3 61 73 6b [80 bytes]",
         "BINARY [redacted] [80 bytes]"),
        ("""TEXT '{"event":"said","data":{"text":"hi"}}' [37 bytes]""",
         """TEXT '{"event":"said","data":{"text":"hi"}}' [37 bytes]"""),
    ],
)  # fmt: skip
def test_redact_removes_query_strings_and_tokens(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_redacts_message_and_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s"',
        ("1.2.3.4", "/a?t=1"),
        None,
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == '1.2.3.4 - "WebSocket /a?[redacted]"'
    keyed = logging.LogRecord("x", logging.INFO, __file__, 1, "%(u)s", ({"u": "/b?token=z"},), None)
    RedactingFilter().filter(keyed)
    assert keyed.getMessage() == "/b?[redacted]"


@pytest.mark.anyio
async def test_uvicorns_own_log_lines_never_show_a_token(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    args = ("--log-level", "debug")
    with uvicorn_process("tests.test_auth:served", log, args=args) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/me?token=s3cret-token"):
            pass
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{port}/me?token=wrong-s3cret"):
                pass
        headers = {"Authorization": "Bearer s3cret-token"}
        async with connect(f"ws://127.0.0.1:{port}/me", additional_headers=headers):
            pass
    text = log.read_text()
    assert "WebSocket /me?[redacted]" in text  # the lines are there, without their secrets
    assert "s3cret" not in text


served = build()


def test_the_proxy_logger_redacts_tokens_too(caplog: pytest.LogCaptureFixture) -> None:
    EventApp([Channel("/c")], title="t", version="1")  # installs the redaction
    logging.getLogger("wsevents.proxy").warning("upstream %s failed", "ws://u/c?token=s3cr3t")
    assert "s3cr3t" not in caplog.text
    assert "?[redacted]" in caplog.text


@pytest.mark.anyio
async def test_no_token_reaches_the_log_at_uvicorn_trace_level(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    env = {"HOOK_LOG": str(tmp_path / "hooks.log")}
    args = ("--log-level", "trace")
    with uvicorn_process("tests.apps.shutdown:app", log, env=env, args=args) as (port, _):
        url = f"ws://127.0.0.1:{port}/c?token=q-s3cr3t"
        async with connect(url, subprotocols=["bearer.p-s3cr3t"]) as ws:  # type: ignore[list-item]
            await ws.send('{"event":"nope"}')
            await ws.recv()
    text = log.read_text()
    assert "ASGI [" in text  # the trace level was on: scopes and messages were logged
    assert "s3cr3t" not in text
