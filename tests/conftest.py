from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
