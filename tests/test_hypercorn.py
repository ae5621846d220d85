"""The core scenarios on a second ASGI server: hypercorn, run as users run it (its CLI).

Handshakes on both subprotocols, refusals with their own status and reason,
replies, the protocol's error frames and a handler's own, pushes to the other
clients of a room; and shutdown: the close code clients get, a log without
tracebacks, every on_disconnect hook run once.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import ROOT, free_port, server_process
from .test_docs import blocks

pytestmark = pytest.mark.anyio

GRACEFUL_TIMEOUT = 1  # hypercorn takes whole seconds
MAX_FRAME = 1_048_576  # Limits.max_message_bytes, as the config file sets it
# hypercorn 0.18 waits in asyncio's Server.wait_closed() before its graceful
# timeout, which from Python 3.12.1 on waits for every open connection
# (hypercorn issue 308): the timeout is never reached while a client stays.
WAITS_FOR_CLIENTS = sys.version_info >= (3, 12, 1)


@contextmanager
def hypercorn(
    tmp_path: Path, command: tuple[str, ...] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve tests.apps.portable on hypercorn; yield its ws:// base URL and the process."""
    port = free_port()
    bind = f"127.0.0.1:{port}"
    if command is None:
        # The config file docs/deployment.md gives, with a shorter graceful timeout.
        (config,) = blocks(ROOT / "docs" / "deployment.md", "toml")
        assert f"websocket_max_message_size = {MAX_FRAME}" in config
        config = re.sub(r"graceful_timeout = \d+", f"graceful_timeout = {GRACEFUL_TIMEOUT}", config)
        (tmp_path / "hypercorn.toml").write_text(config)
        command = (
            "hypercorn",
            "tests.apps.portable:app",
            "--config",
            str(tmp_path / "hypercorn.toml"),
        )
    command = (*command, "--bind", bind)
    env = {"HOOK_LOG": str(tmp_path / "hooks.log")}
    with server_process(list(command), tmp_path / "server.log", "Running on", env=env) as process:
        yield f"ws://{bind}", process


class Peer:
    """A raw WebSocket client speaking one subprotocol, frames decoded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.binary = ws.subprotocol == "wsevents.msgpack"

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(frame) if self.binary else json.dumps(frame))

    async def receive(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), 5)
        frame: dict[str, Any] = msgpack.unpackb(raw) if self.binary else json.loads(raw)
        return frame

    async def answer(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its answer, passing over pushes."""
        await self.send(frame)
        while True:
            received = await self.receive()
            if received.get("id") == frame["id"]:
                return received


@asynccontextmanager
async def peer(url: str, subprotocol: str = "wsevents.json") -> AsyncIterator[Peer]:
    async with connect(url, subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
        yield Peer(ws)


async def refusal(url: str) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=["wsevents.json"]):  # type: ignore[list-item]
            pass
    return refused.value.response.status_code, bytes(refused.value.response.body or b"")


async def test_refused_handshakes_keep_their_status_and_reason_on_hypercorn(
    tmp_path: Path,
) -> None:
    with hypercorn(tmp_path) as (base, _):
        assert await refusal(f"{base}/room/a") == (401, b"a token is required: add ?token=good")
        assert await refusal(f"{base}/room/a?token=bad") == (403, b"this token is not allowed")
        assert await refusal(f"{base}/nowhere") == (404, b"no channel at this path")
        async with (
            peer(f"{base}/room/a?token=good"),
            peer(f"{base}/room/b?token=good"),
            peer(f"{base}/room/c?token=good"),
            peer(f"{base}/room/d?token=good"),
        ):
            assert await refusal(f"{base}/room/e?token=good") == (503, b"too many connections")
        async with peer(f"{base}/room/e?token=good") as again:  # the four are gone
            assert again.ws.subprotocol == "wsevents.json"


@pytest.mark.parametrize("subprotocol", ["wsevents.json", "wsevents.msgpack"])
async def test_replies_errors_and_pushes_on_hypercorn(tmp_path: Path, subprotocol: str) -> None:
    with hypercorn(tmp_path) as (base, _):
        url = f"{base}/room/lobby?token=good"
        async with peer(url, subprotocol) as alice, peer(url, subprotocol) as bob:
            assert alice.ws.subprotocol == bob.ws.subprotocol == subprotocol

            order = {"event": "order", "data": {"item": "tea", "count": 2}, "id": 1}
            assert await alice.answer(order) == {"event": "order", "data": "2 x tea", "id": 1}

            gold = {"event": "order", "data": {"item": "gold", "count": 1}, "id": "g"}
            sold_out = await alice.answer(gold)
            assert sold_out["event"] == "error"
            assert sold_out["data"]["code"] == "sold_out"
            assert sold_out["data"]["message"] == "no gold left"

            invalid = await alice.answer({"event": "order", "data": {"item": "tea"}, "id": 2})
            assert invalid["data"]["code"] == "validation_error"
            assert invalid["data"]["details"][0]["loc"] == ["count"]
            unknown = await alice.answer({"event": "dance", "id": 3})
            assert unknown["data"] == {
                "code": "unknown_event",
                "message": "no handler for event 'dance'",
                "details": None,
            }

            await alice.send({"event": "shout", "data": {"text": "hello"}})
            assert await bob.receive() == {"event": "shouted", "data": {"text": "hello"}}
            # The socket stays open after every error: the next request is answered.
            assert (await alice.answer(order))["data"] == "2 x tea"


async def test_hypercorn_closes_a_frame_over_the_configured_size_with_1009(tmp_path: Path) -> None:
    with hypercorn(tmp_path) as (base, _):
        async with connect(
            f"{base}/room/a?token=good",
            subprotocols=["wsevents.json"],  # type: ignore[list-item]
            max_size=None,
        ) as ws:
            text = "x" * MAX_FRAME
            await ws.send(json.dumps({"event": "shout", "data": {"text": text}}))
            assert await closed_with(ws, 5) == (1009, "")  # hypercorn's, before the app reads it
        async with peer(f"{base}/room/a?token=good") as after:  # the server goes on
            reply = await after.answer(
                {"event": "order", "data": {"item": "a", "count": 1}, "id": 1}
            )
            assert reply["data"] == "1 x a"


async def closed_with(ws: ClientConnection, within: float) -> tuple[int | None, str]:
    """The close frame the server sent, waiting at most ``within`` seconds."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            return None, ""
        return closed.rcvd.code, closed.rcvd.reason


async def terminate(
    process: subprocess.Popen[bytes], *peers: Peer
) -> tuple[list[tuple[int | None, str]], float]:
    """SIGTERM the server: the close frame each peer got, and the seconds they took."""
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    closes = [await closed_with(each.ws, 10) for each in peers]
    return closes, time.monotonic() - stopped


async def exited_cleanly(process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """The server exits with 0 and without a traceback in its log."""
    await asyncio.to_thread(process.wait, 15)
    log = (tmp_path / "server.log").read_text()
    assert process.returncode == 0, log
    assert "Traceback" not in log, log


def hook_codes(tmp_path: Path) -> list[str]:
    return sorted(line.split()[1] for line in (tmp_path / "hooks.log").read_text().splitlines())


@pytest.mark.skipif(WAITS_FOR_CLIENTS, reason="hypercorn 0.18 waits for clients on 3.12.1+")
async def test_hypercorn_graceful_timeout_closes_with_1001_and_logs_no_traceback(
    tmp_path: Path,
) -> None:
    with hypercorn(tmp_path) as (base, process):
        url = f"{base}/room/lobby?token=good"
        async with peer(url) as alice, peer(url, "wsevents.msgpack") as bob:
            closes, elapsed = await terminate(process, alice, bob)
        await exited_cleanly(process, tmp_path)
    assert closes == [(1001, "server shutting down")] * 2
    assert GRACEFUL_TIMEOUT <= elapsed < GRACEFUL_TIMEOUT + 3  # hypercorn's wait, then ours
    assert hook_codes(tmp_path) == ["1001", "1001"]


@pytest.mark.skipif(not WAITS_FOR_CLIENTS, reason="hypercorn 0.18 waits only on 3.12.1+")
async def test_hypercorn_on_python_3_12_waits_for_clients_and_logs_no_traceback(
    tmp_path: Path,
) -> None:
    with hypercorn(tmp_path) as (base, process):
        async with peer(f"{base}/room/lobby?token=good") as alice:
            process.send_signal(signal.SIGTERM)
            # What docs/deployment.md tells: no close within the graceful timeout...
            with pytest.raises(asyncio.TimeoutError):
                await closed_with(alice.ws, GRACEFUL_TIMEOUT + 2)
            assert process.poll() is None
        # ...and a clean exit once the client leaves.
        await exited_cleanly(process, tmp_path)
    assert len(hook_codes(tmp_path)) == 1  # the hook ran once (hypercorn reports 1006)


async def test_hypercorn_with_the_app_shutdown_trigger_closes_with_1001_at_once(
    tmp_path: Path,
) -> None:
    """The recipe in docs/deployment.md (examples/hypercorn_serve.py), on every Python."""
    example = (ROOT / "examples" / "hypercorn_serve.py").read_text()
    python = blocks(ROOT / "docs" / "deployment.md", "python")
    (recipe,) = [block for block in python if "shutdown_trigger" in block]
    assert recipe in example
    with hypercorn(tmp_path, ("examples.hypercorn_serve",)) as (base, process):
        url = f"{base}/ws/chat/lobby?user=ann"
        async with peer(url) as ann, peer(url.replace("ann", "bo"), "wsevents.msgpack") as bo:
            assert (await ann.answer({"event": "ping", "data": {"n": 7}, "id": 1}))["data"] == {
                "n": 7
            }
            closes, elapsed = await terminate(process, ann, bo)
        await exited_cleanly(process, tmp_path)
    assert closes == [(1001, "server shutting down")] * 2
    # Well before the recipe's graceful_timeout (5 s), which hypercorn alone would wait out.
    assert elapsed < 4, f"the clients waited {elapsed:.1f}s for their close"
