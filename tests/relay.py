"""A TCP relay between a client and a server that a test can cut: every connection at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class Relay:
    """Forwards 127.0.0.1:``port`` to ``upstream``; :meth:`cut` drops every connection.

    Use it as an async context manager, in the test's event loop.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every connection through the relay, both ways, with no close frame."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.transport.abort()


class ThreadedRelay:
    """A :class:`Relay` on an event loop of its own thread, for synchronous tests."""

    def __init__(self, upstream: int) -> None:
        self._relay = Relay(upstream)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._relay.port

    @property
    def connections(self) -> int:
        return self._relay.connections

    def cut(self) -> None:
        """Drop every connection through the relay (from any thread)."""
        self._loop.call_soon_threadsafe(self._relay.cut)

    def __enter__(self) -> ThreadedRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._relay.__aenter__(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        done = asyncio.run_coroutine_threadsafe(self._relay.__aexit__(None, None, None), self._loop)
        done.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
