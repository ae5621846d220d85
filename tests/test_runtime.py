"""The connection's lifecycle under faults: limits during the handshake, failing sends,
shutdown with a stalled client, cancellation by the host, context variables."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsevents import Channel, Connection, EventApp, Limits
from wsevents._tasks import EAGER

from .conftest import serve
from .test_limits import never_reading_client

pytestmark = pytest.mark.anyio

USER: contextvars.ContextVar[str] = contextvars.ContextVar("USER", default="nobody")
ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("ROLE", default="none")


class Peer:
    """An ASGI server's side of one WebSocket, in memory.

    ``stall`` makes every ``websocket.send`` after the accept wait forever (a
    client that stopped reading); ``fail`` makes it raise that exception.
    A close frame sent to it is answered with ``websocket.disconnect``.
    """

    def __init__(
        self, *frames: Any, stall: bool = False, fail: BaseException | None = None
    ) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        for frame in frames:
            self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(frame)})
        self.sent: list[dict[str, Any]] = []
        self.closed_at: float | None = None
        self.stall = stall
        self.fail = fail

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            if self.stall:
                await asyncio.Event().wait()
            if self.fail is not None:
                raise self.fail
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed_at = time.monotonic()
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})

    def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

    def frames(self) -> list[Any]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


def scope(path: str = "/c") -> dict[str, Any]:
    return {"type": "websocket", "path": path, "root_path": "", "headers": [], "query_string": b""}


def make_app(limits: Limits | None = None) -> tuple[EventApp, list[Any]]:
    channel = Channel("/c")
    seen: list[Any] = []

    @channel.on("echo", reply=Any)
    async def echo(data: Any) -> Any:
        return data

    @channel.on("push")
    async def push(conn: Connection, data: Any) -> None:
        await conn.send("pushed", data)

    @channel.on_disconnect
    async def left(code: int) -> None:
        seen.append(("disconnect", code))

    return EventApp([channel], title="t", version="1", limits=limits), seen


async def test_max_connections_counts_handshakes_still_in_their_hooks() -> None:
    channel = Channel("/c")

    @channel.on_connect
    async def slow(conn: Connection) -> None:
        await asyncio.sleep(0.3)

    app = EventApp([channel], title="t", version="1", limits=Limits(max_connections=2))
    with serve(app) as address:

        async def attempt() -> int:
            try:
                async with connect(f"ws://{address}/c", open_timeout=5):
                    await asyncio.sleep(0.5)  # stay while the others try
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        statuses = await asyncio.gather(*(attempt() for _ in range(10)))
    assert sorted(statuses) == [101, 101] + [503] * 8


async def test_a_queue_that_overflows_during_on_connect_closes_with_1013_once_accepted() -> None:
    channel = Channel("/c")

    @channel.on_connect
    async def chatty(conn: Connection) -> None:
        for n in range(5):
            await conn.send("hello", n)

    app = EventApp([channel], title="t", version="1", limits=Limits(send_queue=2))
    peer = Peer({"event": "x"})
    await asyncio.wait_for(app(scope(), peer.receive, peer.send), 5)
    assert [m["type"] for m in peer.sent] == ["websocket.accept", "websocket.close"]
    assert peer.sent[-1]["code"] == 1013
    assert app.stats()["slow_consumers_dropped"] == 1


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_send_that_raises_is_logged_and_closes_with_1011(
    concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    app, seen = make_app(Limits(concurrency=concurrency))
    peer = Peer({"event": "echo", "data": 1, "id": 1}, fail=ValueError("transport bug"))
    with caplog.at_level(logging.INFO, logger="wsevents"):
        await asyncio.wait_for(app(scope(), peer.receive, peer.send), 5)
    assert seen == [("disconnect", 1011)]
    assert "sending to connection" in caplog.text
    assert "ValueError: transport bug" in caplog.text
    assert "never retrieved" not in caplog.text
    assert app.stats()["closed_by_server"] == {1011: 1}


async def test_a_push_whose_send_raises_is_logged_and_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seen = make_app()
    peer = Peer(fail=RuntimeError("transport bug"))
    task = asyncio.create_task(app(scope(), peer.receive, peer.send))
    while not app.connections:  # noqa: ASYNC110 - the app offers no event to wait on
        await asyncio.sleep(0.01)
    (conn_id,) = app.connections
    await app.send_to(conn_id, "news", 1)  # through the writer, not the receive loop
    await asyncio.wait_for(task, 5)
    assert seen == [("disconnect", 1011)]
    assert "RuntimeError: transport bug" in caplog.text


class GoneAtAcceptPeer(Peer):
    """A client that went away while the server sent its accept."""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            raise OSError("connection reset by peer")
        await super().send(message)


async def test_a_client_gone_at_the_accept_ends_with_1006_and_its_hooks_run_once() -> None:
    app, seen = make_app()
    peer = GoneAtAcceptPeer()
    await asyncio.wait_for(app(scope(), peer.receive, peer.send), 5)
    assert seen == [("disconnect", 1006)]
    assert peer.sent == []  # no close frame to a transport that refused the accept
    assert len(app.connections) == 0


async def test_shutdown_closes_healthy_clients_at_once_though_one_never_reads() -> None:
    app, seen = make_app(Limits(send_timeout=0.5))
    await app.startup()
    stuck = Peer(stall=True)
    healthy = [Peer() for _ in range(3)]
    tasks = [asyncio.create_task(app(scope(), p.receive, p.send)) for p in [stuck, *healthy]]
    while len(app.connections) < 4:  # noqa: ASYNC110 - the app offers no event to wait on
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await asyncio.wait_for(app.shutdown(), 10)
    took = time.monotonic() - started
    for peer in healthy:
        assert peer.sent[-1] == {
            "type": "websocket.close",
            "code": 1001,
            "reason": "server shutting down",
        }
        assert peer.closed_at is not None
        assert peer.closed_at - started < 1.0  # not after the stalled one's grace
    assert took < 8
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    # The stalled client's send ran out of send_timeout: 1013; the others closed with 1001.
    assert sorted(seen) == [("disconnect", 1001)] * 3 + [("disconnect", 1013)]
    assert app.connections == {}


async def test_subscribe_after_the_client_left_keeps_no_subscription() -> None:
    channel = Channel("/c")
    held: list[Connection] = []

    @channel.on_connect
    async def keep(conn: Connection) -> None:
        held.append(conn)

    app = EventApp([channel], title="t", version="1")
    peer = Peer()
    peer.disconnect()
    await app(scope(), peer.receive, peer.send)
    (conn,) = held
    await conn.subscribe("rooms/late")
    assert conn.topics == frozenset()
    assert conn.close_code == 1000


async def test_context_variables_set_in_on_connect_reach_the_handlers() -> None:
    channel = Channel("/c")

    @channel.on_connect
    async def who(conn: Connection) -> None:
        USER.set("ann")

    @channel.on_connect
    def role(conn: Connection) -> None:  # a sync hook: it runs in a thread
        ROLE.set("admin")

    @channel.on("whoami", reply=list[str])
    async def whoami() -> list[str]:
        return [USER.get(), ROLE.get()]

    app = EventApp([channel], title="t", version="1")
    peer = Peer({"event": "whoami", "id": 1})
    peer.disconnect()
    await asyncio.wait_for(app(scope(), peer.receive, peer.send), 5)
    assert peer.frames() == [{"event": "whoami", "data": ["ann", "admin"], "id": 1}]


async def test_a_timeout_around_the_app_raises_after_the_teardown() -> None:
    app, seen = make_app()
    peer = Peer({"event": "echo", "data": 1, "id": 1})
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(app(scope(), peer.receive, peer.send), 0.3)
    assert seen == [("disconnect", 1001)]  # the hooks ran before the cancellation went on
    assert app.connections == {}


async def test_a_connection_the_host_cancels_is_closed_with_1001_before_its_hooks_run() -> None:
    # What a server does at the end of its graceful timeout (hypercorn, uvicorn):
    # without a close frame of the app's, hypercorn sends 1011 "internal error".
    app, seen = make_app()
    peer, accepted = Peer(), asyncio.Event()
    sent_when_the_hooks_ran: list[str] = []

    @app.on_disconnect
    def sent_so_far(code: int) -> None:
        sent_when_the_hooks_ran.extend(m["type"] for m in peer.sent)

    async def send(message: dict[str, Any]) -> None:
        await peer.send(message)
        if message["type"] == "websocket.accept":
            accepted.set()

    task = asyncio.create_task(app(scope(), peer.receive, send))
    await asyncio.wait_for(accepted.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # the host's cancellation goes on
        await task
    closes = [m for m in peer.sent if m["type"] == "websocket.close"]
    assert closes == [{"type": "websocket.close", "code": 1001, "reason": "server shutting down"}]
    assert seen == [("disconnect", 1001)]
    assert sent_when_the_hooks_ran == ["websocket.accept", "websocket.close"]


def test_only_asyncio_s_traceback_for_a_cancelled_stream_connection_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_app()  # an app installs the filter
    noise = "Exception in callback StreamReaderProtocol.connection_made.<locals>.callback(<Task>)"
    asyncio_logger = logging.getLogger("asyncio")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for message, exc in [
            (noise, asyncio.CancelledError()),  # CPython gh-113538: dropped
            (noise, RuntimeError("a real failure")),
            ("Exception in callback something_else()", asyncio.CancelledError()),
        ]:
            asyncio_logger.error(message, exc_info=(type(exc), exc, None))
    kept = [
        (r.getMessage()[:40], type(r.exc_info[1]).__name__) for r in caplog.records if r.exc_info
    ]
    assert kept == [
        (noise[:40], "RuntimeError"),
        ("Exception in callback something_else()", "CancelledError"),
    ]


async def test_an_aborted_client_that_reads_again_in_send_timeout_gets_1013() -> None:
    channel = Channel("/c")

    @channel.on_connect
    async def join(conn: Connection) -> None:
        await conn.subscribe("feed")

    @channel.on("flood")
    async def flood(conn: Connection) -> None:
        for n in range(400):
            await conn.app.publish("feed", "big", {"n": n, "pad": "x" * 40_000})
            await asyncio.sleep(0.001)

    limits = Limits(rate=None, send_queue=8, send_timeout=10)
    app = EventApp([channel], title="t", version="1", limits=limits)
    with serve(app) as address, never_reading_client(address, "/c") as sock:
        async with connect(f"ws://{address}/c", max_queue=None) as publisher:
            await publisher.send(json.dumps({"event": "flood"}))
            deadline = time.monotonic() + 10
            while app.stats()["slow_consumers_dropped"] == 0:
                assert time.monotonic() < deadline, "the client was not found slow"
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)  # longer than a fixed grace, well within send_timeout
            assert len(app.connections) == 2  # counted while its close frame waits
            # Reading again: what was sent, then the close frame.
            reason = b"send queue full"
            close_frame = bytes([0x88, 2 + len(reason)]) + (1013).to_bytes(2, "big") + reason
            received = b""
            sock.settimeout(5)
            while not received.endswith(close_frame):
                chunk = await asyncio.to_thread(sock.recv, 1 << 20)
                assert chunk, "the connection ended without the close frame"
                received += chunk


class GatedPeer(Peer):
    """A peer whose sends after the accept wait until ``gate`` is set (a paused transport)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            await self.gate.wait()
        await super().send(message)


def feed_app(limits: Limits | None = None) -> tuple[EventApp, list[Any]]:
    """Every connection to /c subscribes to "feed"."""
    app, seen = make_app(limits)

    @app.channels[0].on_connect
    async def join(conn: Connection) -> None:
        await conn.subscribe("feed")

    return app, seen


async def connected(app: EventApp, peers: list[Peer]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(app(scope(), p.receive, p.send)) for p in peers]
    while len(app.connections) < len(peers):  # noqa: ASYNC110 - the app offers no event to wait on
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the subscriptions of on_connect
    return tasks


async def writers_ran() -> None:
    """Let the tasks that send run a few loop turns (none needed on Python 3.12+).

    On 3.10 and 3.11 a publication's task starts in the loop's next turn, and
    where one send waits the rest go on from another task a turn later.
    """
    if not EAGER:
        for _ in range(5):
            await asyncio.sleep(0)


def ticks(peer: Peer) -> list[Any]:
    return [frame["data"] for frame in peer.frames() if frame["event"] == "tick"]


async def test_a_publication_reaches_every_subscriber_before_publish_returns() -> None:
    # Python 3.12+: in the publisher's own step, through an eager task; 3.10 and
    # 3.11 have none, so its task sends it in the loop's next turn.
    app, _ = feed_app()
    peers = [Peer() for _ in range(3)]
    tasks = await connected(app, peers)
    for n in range(3):
        await app.publish("feed", "tick", n)
        if not EAGER:
            assert [ticks(peer) for peer in peers] == [list(range(n))] * 3
            await asyncio.sleep(0)
        assert [ticks(peer) for peer in peers] == [list(range(n + 1))] * 3
    for peer in peers:
        peer.disconnect()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_a_subscriber_whose_send_waits_delays_nobody_and_then_gets_every_frame_in_order() -> (
    None
):
    app, seen = feed_app()
    slow, fast = GatedPeer(), Peer()
    tasks = await connected(app, [slow, fast])
    for n in range(5):
        await app.publish("feed", "tick", n)
    await writers_ran()
    assert ticks(fast) == [0, 1, 2, 3, 4]
    assert ticks(slow) == []  # its first send waits; the rest are queued behind it
    slow.gate.set()
    deadline = time.monotonic() + 5
    while len(ticks(slow)) < 5:
        assert time.monotonic() < deadline, ticks(slow)
        await asyncio.sleep(0.01)
    assert ticks(slow) == [0, 1, 2, 3, 4]
    await app.publish("feed", "tick", 5)  # nothing ahead of it again: sent at once
    await writers_ran()
    assert ticks(slow)[-1] == 5
    for peer in (slow, fast):
        peer.disconnect()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert seen == [("disconnect", 1000)] * 2


async def test_a_publication_goes_on_to_every_other_subscriber_while_one_send_waits() -> None:
    app, seen = feed_app()
    peers = [Peer(), GatedPeer(), Peer(), GatedPeer(), Peer()]
    tasks = await connected(app, peers)
    for n in range(3):
        await app.publish("feed", "tick", n)
    await writers_ran()
    readers, stalled = peers[::2], peers[1::2]
    assert [ticks(peer) for peer in readers] == [[0, 1, 2]] * 3  # none waited for the others
    assert [ticks(peer) for peer in stalled] == [[], []]
    for peer in stalled:
        assert isinstance(peer, GatedPeer)
        peer.gate.set()
    deadline = time.monotonic() + 5
    while any(len(ticks(peer)) < 3 for peer in stalled):
        assert time.monotonic() < deadline, [ticks(peer) for peer in stalled]
        await asyncio.sleep(0.01)
    assert [ticks(peer) for peer in stalled] == [[0, 1, 2]] * 2  # in order, once each
    for peer in peers:
        peer.disconnect()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert seen == [("disconnect", 1000)] * 5


async def test_a_send_left_waiting_is_cancelled_cleanly_when_the_connection_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seen = feed_app(Limits(send_timeout=0.3))
    await app.startup()  # the watchdog
    stuck, healthy = Peer(stall=True), Peer()
    tasks = await connected(app, [stuck, healthy])
    await app.publish("feed", "tick", 0)
    await asyncio.wait_for(asyncio.gather(tasks[0]), 5)
    assert seen == [("disconnect", 1013)]
    assert ticks(healthy) == [0]
    assert "Traceback" not in caplog.text
    assert "never retrieved" not in caplog.text
    healthy.disconnect()
    await asyncio.wait_for(tasks[1], 5)
    await app.shutdown()


class FuturePeer(Peer):
    """A server whose ``send`` is a plain function returning a future, not a coroutine."""

    def send(self, message: dict[str, Any]) -> asyncio.Future[None]:  # type: ignore[override]
        done = asyncio.get_running_loop().create_future()
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})
        done.set_result(None)
        return done


async def test_a_send_that_returns_another_awaitable_still_delivers_every_frame_in_order() -> None:
    app, seen = feed_app()
    peer = FuturePeer()
    tasks = await connected(app, [peer])
    for n in range(4):
        await app.publish("feed", "tick", n)
    await asyncio.sleep(0.05)  # each awaited in a task of its own, one after the other
    assert ticks(peer) == [0, 1, 2, 3]
    peer.disconnect()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert seen == [("disconnect", 1000)]


async def test_a_burst_to_many_local_subscribers_reaches_redis_while_it_is_published(
    redis_server: Any,
) -> None:
    app, _ = feed_app()
    app = EventApp(app.channels, title="t", version="1", backplane=redis_server.url)
    await app.startup()
    peers = [Peer() for _ in range(64)]
    tasks = await connected(app, peers)
    sent_during = 0
    for n in range(200):  # one handler's loop: it never waits on anything itself
        await app.publish("feed", "tick", n)
        sent_during = app.backplane.stats["published"]
    # The backplane's sender ran between the publications, not only after the loop.
    assert sent_during > 0
    assert [ticks(peer) for peer in peers] == [list(range(200))] * 64
    for peer in peers:
        peer.disconnect()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await app.shutdown()
