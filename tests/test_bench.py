"""The benchmark's parts work: every baseline server answers correctly under the load generator.

The figures themselves come from `make bench`; here only that every server
and scenario runs and that the load generator's checks would catch a wrong reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import servers

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent
SIO = "/socket.io/?EIO=4&transport=websocket"


def load(*args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), *args],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("app", "path", "command", "extra"),
    [
        ("raw_json", "/", "echo", ()),
        ("raw_pydantic", "/", "echo", ()),
        ("starlette_pydantic", "/", "echo", ()),
        ("python_socketio", SIO, "socketio", ()),
        ("wsevents_app", "/", "echo", ()),
        ("raw_msgpack", "/", "echo", ("--msgpack",)),
        ("raw_msgpack_pydantic", "/", "echo", ("--msgpack",)),
        ("wsevents_app", "/", "echo", ("--msgpack",)),
    ],
)
def test_every_echo_server_answers_every_request_correctly(
    app: str, path: str, command: str, extra: tuple[str, ...]
) -> None:
    with serve(getattr(servers, app)) as address:
        result = load(
            command, f"ws://{address}{path}", "--connections", "3", "--window", "4",
            "--seconds", "0.3", *extra,
        )  # fmt: skip
    assert result["bad_replies"] == 0
    assert result["messages_per_second"] > 0
    assert result["p50_ms"] <= result["p99_ms"]


@pytest.mark.parametrize(
    ("app", "path", "extra"),
    [
        ("raw_fanout", "/", ()),
        ("python_socketio", SIO, ("--socketio",)),
        ("wsevents_app", "/?sub=1", ()),
    ],
)
def test_every_fanout_server_delivers_everything(
    app: str, path: str, extra: tuple[str, ...]
) -> None:
    with serve(getattr(servers, app)) as address:
        result = load(
            "fanout", f"ws://{address}{path}", "--connections", "20", "--count", "5", *extra
        )
    assert result["delivered"] == result["expected"] == 100


def test_the_load_generator_catches_a_wrong_reply() -> None:
    async def liar(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await servers._lifespan(receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            frame = json.loads(message["text"])
            frame["data"]["n"] += 1  # a wrong answer with the right id
            await send({"type": "websocket.send", "text": json.dumps(frame)})

    with serve(liar) as address:
        result = load("echo", f"ws://{address}/", "--seconds", "0.2")
    assert result["bad_replies"] > 0
    assert result["messages_per_second"] == 0
