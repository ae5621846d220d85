"""The chat on hypercorn, with a shutdown that closes every WebSocket with 1001 first.

hypercorn's own shutdown leaves open WebSockets alone: on Python 3.10 and
3.11 it waits its ``graceful_timeout`` and then cancels them (wsevents sends
1001 then); on Python 3.12.1 and later it waits for them to end, however
long that takes (hypercorn issue 308). Here the shutdown trigger first
closes every connection with 1001 (``EventApp.shutdown()``), so a SIGTERM
ends the server at once on every Python::

    pip install hypercorn
    python -m examples.hypercorn_serve --bind 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from examples.chat.app import app, events


async def main(bind: str) -> None:
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = 5.0  # for what is left once the WebSockets are closed
    config.websocket_max_message_size = events.limits.max_message_bytes
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        await events.shutdown()  # 1001 to every client, then the backplane stops

    await serve(app, config, shutdown_trigger=shutdown_trigger)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000")
    asyncio.run(main(parser.parse_args().bind))
