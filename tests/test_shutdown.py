"""Server exit: every on_disconnect hook runs once, no task is left behind, within 5 s."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import uvicorn_process
from .test_limits import never_reading_client

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


async def test_wsevents_run_exits_on_sigterm_though_a_client_stopped_reading(
    tmp_path: Path,
) -> None:
    hooks, log = tmp_path / "hooks.log", tmp_path / "server.log"
    runner = ("wsevents", "run")
    with (
        uvicorn_process(
            "tests.apps.shutdown:app", log, env={"HOOK_LOG": str(hooks)}, runner=runner
        ) as (port, process),
        never_reading_client(f"127.0.0.1:{port}", "/c"),
    ):
        async with connect(f"ws://127.0.0.1:{port}/c", max_queue=None) as publisher:
            await publisher.send(json.dumps({"event": "flood"}))
            await asyncio.sleep(1.0)  # megabytes wait for the client that does not read
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 15)
            elapsed = time.monotonic() - stopped
    assert elapsed < 5, f"the server took {elapsed:.1f}s to exit:\n{log.read_text()}"


async def test_wsevents_run_refuses_a_frame_over_max_message_bytes_before_reading_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    runner = ("wsevents", "run")
    env = {"HOOK_LOG": str(tmp_path / "hooks.log")}
    with uvicorn_process("tests.apps.shutdown:app", log, env=env, runner=runner) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/c", max_size=None) as ws:
            await ws.send(json.dumps({"event": "flood", "data": "x" * 1_100_000}))
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(ws.recv(), 5)
    assert caught.value.rcvd is not None
    # uvicorn's own refusal (its ws_max_size), not the app's after decoding the frame
    assert caught.value.rcvd.code == 1009
    assert caught.value.rcvd.reason != "message too big"


def test_a_host_cancel_scope_that_ends_a_connection_while_a_handler_waits_absorbs_it() -> None:
    """The host's cancellation goes back up as it came, so that its cancel scope knows it.

    Starlette's test client cancels its scope as the block ends; the
    connection's handler still waits. A fresh CancelledError instead of the
    host's own escapes anyio's scope and fails the block.
    """
    import threading

    from wsevents import Channel, EventApp
    from wsevents.testing import EventTestClient

    channel = Channel("/c")
    started, ended = threading.Event(), []

    @channel.on("wait")
    async def wait() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            ended.append("cancelled")

    app = EventApp([channel])
    with EventTestClient(app) as client:
        with client.connect("/c") as ws:
            ws.send("wait")
            assert started.wait(5)
        assert ended == ["cancelled"]
