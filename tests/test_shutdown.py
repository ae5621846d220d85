"""Server exit: every on_disconnect hook runs once, no task is left behind, within 5 s."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from .conftest import uvicorn_process

pytestmark = pytest.mark.anyio


async def test_sigterm_with_open_connections_and_a_busy_handler(tmp_path: Path) -> None:
    hooks, log = tmp_path / "hooks.log", tmp_path / "server.log"
    env = {"HOOK_LOG": str(hooks), "PYTHONASYNCIODEBUG": "1"}
    args = ("--timeout-graceful-shutdown", "2")
    with uvicorn_process("tests.apps.shutdown:app", log, env=env, args=args) as (port, process):
        clients = [await connect(f"ws://127.0.0.1:{port}/c") for _ in range(20)]
        await clients[0].send(json.dumps({"event": "slow", "id": 1}))
        await asyncio.sleep(0.3)  # the slow handler is running
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
        elapsed = time.monotonic() - stopped
        for client in clients:
            await client.close()
    text = log.read_text()
    lines = hooks.read_text().splitlines()
    assert elapsed < 5, f"the server took {elapsed:.1f}s to exit"
    assert process.returncode in (0, -signal.SIGTERM), text  # uvicorn re-raises the signal
    assert len(lines) == 20, lines
    assert len({line.split()[0] for line in lines}) == 20  # each hook ran once
    assert "Task was destroyed" not in text
    assert "was never awaited" not in text
    # The one traceback is uvicorn's report that it cancelled the busy handler at its
    # graceful timeout: the app tears down, then lets the cancellation go on (a host's
    # cancellation is never swallowed).
    assert text.count("Traceback") == text.count("Exception in ASGI application") == 1, text
    assert "asyncio.exceptions.CancelledError" in text
