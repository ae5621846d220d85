"""The backplane contract, which every implementation passes, and Redis's resilience."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from wsevents import Position
from wsevents.backplane import Backplane, MemoryBackplane, create_backplane
from wsevents.backplane.redis import RedisBackplane, redis_glob

from .conftest import RedisServer
from .redis_sets import ClusterSet, SentinelSet

pytestmark = pytest.mark.anyio

_hub_names = itertools.count()


class Inbox:
    """What one backplane delivered, with a way to wait for it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.positions: list[Position | None] = []  # each message's, in the same order
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, position: Position | None = None) -> None:
        self.messages.append((topic, payload))
        self.positions.append(position)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count} messages, got {self.messages}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.messages


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels, shared by the module's contract tests."""
    found = SentinelSet(tmp_path_factory.mktemp("sentinel"), down_after=30_000)
    found.start()
    yield found
    found.stop()


@pytest.fixture(params=["memory", "redis", "sentinel", "cluster"])
def make_backplane(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Backplane]]:
    """A factory of backplanes that hear each other: one memory hub, one real Redis, a
    master behind three sentinels, or a Redis Cluster (each test on keys of its own
    prefix)."""
    if request.param == "memory":
        url = f"memory://contract-{next(_hub_names)}"
        yield lambda: create_backplane(url)
        return
    if request.param in ("sentinel", "cluster"):
        found: SentinelSet | ClusterSet = request.getfixturevalue(
            "sentinels" if request.param == "sentinel" else "redis_cluster"
        )
        url = f"{found.url}?prefix=t{next(_hub_names)}:"
        yield lambda: create_backplane(url)
        return
    server = RedisServer(tmp_path)
    server.start()
    yield lambda: create_backplane(server.url)
    server.kill()


@pytest.fixture
async def pair(
    make_backplane: Callable[[], Backplane],
) -> AsyncIterator[tuple[Backplane, Inbox, Backplane, Inbox]]:
    a, b = make_backplane(), make_backplane()
    inbox_a, inbox_b = Inbox(), Inbox()
    await a.start(inbox_a)
    await b.start(inbox_b)
    assert await a.wait_ready(5)
    assert await b.wait_ready(5)
    yield a, inbox_a, b, inbox_b
    await a.stop()
    await b.stop()


async def test_a_publish_reaches_the_subscriber_as_the_same_bytes(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, inbox_a, b, _ = pair
    await a.subscribe("rooms/lobby")
    payload = bytes(range(256))
    await b.publish("rooms/lobby", payload)
    assert await inbox_a.wait_for(1) == [("rooms/lobby", payload)]


# Not on a memory hub: its peers share the publisher's loop, and run only when it yields.
@pytest.mark.parametrize("make_backplane", ["redis", "sentinel", "cluster"], indirect=True)
async def test_a_burst_published_from_one_task_reaches_the_others_while_it_goes_on(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    """A handler publishing a burst yields only inside publish, each publication costing it
    time here (its delivery to this process's subscribers): the other processes hear the
    first ones before the burst is over, not all of them at its end (the sender ran only
    once the handler yielded: a burst through Redis arrived ten times later than one
    in a process)."""
    a, _, b, inbox_b = pair
    await b.subscribe("burst")
    for n in range(50):
        await a.publish("burst", str(n).encode())
        busy = time.perf_counter() + 0.002  # the local delivery's work, no await in it
        while time.perf_counter() < busy:
            pass
    heard_meanwhile = len(inbox_b.messages)
    await inbox_b.wait_for(50)
    assert heard_meanwhile >= 10
    assert [payload for _, payload in inbox_b.messages] == [str(n).encode() for n in range(50)]


async def test_wildcards_deliver_what_they_match(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, inbox_a, b, _ = pair
    await a.subscribe("rooms/+/say")
    await a.subscribe("alerts/#")
    await b.publish("other/x", b"0")
    for topic in ("rooms/lobby/say", "alerts", "alerts/fire/east"):
        await b.publish(topic, topic.encode())
    received = await inbox_a.wait_for(3)
    assert sorted(received) == [
        ("alerts", b"alerts"),
        ("alerts/fire/east", b"alerts/fire/east"),
        ("rooms/lobby/say", b"rooms/lobby/say"),
    ]


async def test_a_publication_counts_the_processes_holding_its_topic_and_no_others(
    make_backplane: Callable[[], Backplane],
) -> None:
    publisher, *others = [make_backplane() for _ in range(4)]
    inboxes = [Inbox() for _ in others]
    await publisher.start(Inbox())
    for other, inbox in zip(others, inboxes, strict=True):
        await other.start(inbox)
        assert await other.wait_ready(5)
    assert await publisher.wait_ready(5)
    for other in others[:2]:  # two of the three hold the topic
        await other.subscribe("rooms/lobby")
    await others[2].subscribe("rooms/other")
    for n in range(3):
        await publisher.publish("rooms/lobby", b"%d" % n)
    for inbox in inboxes[:2]:
        await inbox.wait_for(3)
    await publisher.publish("rooms/other", b"marker")  # after the three, in order
    await inboxes[2].wait_for(1)
    deadline = time.monotonic() + 5
    while publisher.stats["published"] < 4:  # Redis' replies may come after its messages
        assert time.monotonic() < deadline, publisher.stats
        await asyncio.sleep(0.01)
    assert publisher.stats["published"] == 4
    assert publisher.stats["publish_receivers"] == 3 * 2 + 1  # Redis' own count
    assert [other.stats["received"] for other in others] == [3, 3, 1]
    for backplane in (publisher, *others):
        await backplane.stop()


async def test_a_send_says_how_many_heard_it_and_reaches_its_holder(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    """What a server request to a connection in another process rests on (on a cluster,
    an SPUBLISH on the shard of the holder's topic)."""
    a, inbox_a, b, _ = pair
    await a.subscribe("direct/a")
    assert await b.send("direct/a", b"for a") == 1
    assert await inbox_a.wait_for(1) == [("direct/a", b"for a")]
    assert await b.send("direct/nobody", b"lost") == 0  # the holder is gone: said at once
    # It says as many as arrive, a pattern's delivery too: what request_all waits for
    # (Redis delivers once per matching subscription, the memory hub once per process).
    await a.subscribe("direct/+")
    for topic, least in (("direct/a", 1), ("direct/other", 1)):
        before = len(inbox_a.messages)
        count = await b.send(topic, b"counted")
        assert count >= least
        await inbox_a.wait_for(before + count)
        await asyncio.sleep(0.2)  # and no more than it said
        assert len(inbox_a.messages) == before + count, (topic, count, inbox_a.messages)


async def test_the_publisher_hears_its_own_subscriptions(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, inbox_a, _, _ = pair
    await a.subscribe("echo")
    await a.publish("echo", b"me")
    assert await inbox_a.wait_for(1) == [("echo", b"me")]


async def test_unsubscribe_stops_delivery(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, inbox_a, b, _ = pair
    await a.subscribe("t")
    await a.subscribe("marker")
    await a.unsubscribe("t")
    await a.unsubscribe("never-subscribed")
    await b.publish("t", b"lost")
    await b.publish("marker", b"seen")  # delivered in order after "t", had it come
    assert await inbox_a.wait_for(1) == [("marker", b"seen")]


async def test_subscriptions_made_before_start_are_heard(
    make_backplane: Callable[[], Backplane],
) -> None:
    """Several, as a process that reconnects holds many (on a cluster, in several slots:
    one SSUBSCRIBE cannot take channels of two slots)."""
    a, b = make_backplane(), make_backplane()
    inbox = Inbox()
    topics = [f"early/{n}" for n in range(20)]
    for topic in ("early", *topics):
        await a.subscribe(topic)
    try:
        await a.start(inbox)
        await b.start(Inbox())
        assert await a.wait_ready(5)
        # b too: a publish made before b reaches its Redis fails fast, by design (and
        # Sentinel's first connection asks the sentinels first).
        assert await b.wait_ready(5)
        for topic in ("early", *topics):
            await b.publish(topic, topic.encode())
        received = await inbox.wait_for(21)
        assert sorted(received) == sorted((t, t.encode()) for t in ("early", *topics))
    finally:
        await a.stop()
        await b.stop()


# -- history: every backplane keeps it the same way (DESIGN.md section 10) -----------------


async def test_a_topic_gets_an_epoch_when_first_read_and_offsets_from_one(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, inbox_a, b, _ = pair
    first = await a.read("news", after=None, limit=10, ttl=60)
    assert first.position.offset == 0
    assert first.entries == []
    assert first.position.epoch  # fixed by the read, kept by the publications
    await a.subscribe("news")
    positions = [
        await b.append("news", f"p{n}".encode(), key=f"k{n}", size=10, ttl=60) for n in (1, 2, 3)
    ]
    assert positions == [Position(first.position.epoch, n) for n in (1, 2, 3)]
    # Heard live with their positions, in offset order, by the other backplane.
    assert await inbox_a.wait_for(3) == [("news", b"p1"), ("news", b"p2"), ("news", b"p3")]
    assert inbox_a.positions == positions
    after_one = await a.read("news", after=1, limit=10, ttl=60)
    assert after_one.position == positions[-1]
    assert after_one.entries == [(2, b"p2"), (3, b"p3")]
    assert (await a.read("news", after=1, limit=1, ttl=60)).entries == [(2, b"p2")]
    assert (await a.read("news", after=None, limit=0, ttl=60)).entries == []


async def test_a_retried_append_is_kept_once(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, b, _ = pair
    one = await a.append("t", b"x", key="same", size=10, ttl=60)
    again = await b.append("t", b"x", key="same", size=10, ttl=60)
    assert again == one
    assert (await a.read("t", after=None, limit=10, ttl=60)).entries == [(1, b"x")]


async def test_a_retry_key_is_forgotten_after_retry_for(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, _, _ = pair
    first = await a.append("t", b"x", key="once", size=10, ttl=60, retry_for=0.2)
    await asyncio.sleep(0.4)
    again = await a.append("t", b"x", key="once", size=10, ttl=60, retry_for=0.2)
    assert again.offset == first.offset + 1  # not a retry any more: a new publication


async def test_history_keeps_the_last_size_publications(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, _, _ = pair
    for n in range(1, 8):
        await a.append("t", str(n).encode(), key=f"k{n}", size=3, ttl=60)
    found = await a.read("t", after=None, limit=10, ttl=60)
    assert found.position.offset == 7
    assert found.entries == [(5, b"5"), (6, b"6"), (7, b"7")]


async def test_history_forgets_publications_older_than_ttl(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, _, _ = pair
    await a.append("t", b"old", key="k1", size=10, ttl=0.2)
    await asyncio.sleep(0.4)
    await a.append("t", b"new", key="k2", size=10, ttl=0.2)
    found = await a.read("t", after=None, limit=10, ttl=0.2)
    assert found.position.offset == 2  # the offset goes on: the epoch outlives the entries
    assert found.entries == [(2, b"new")]


async def test_a_topic_found_behind_what_was_delivered_starts_a_new_epoch(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, _, _ = pair
    at = await a.append("t", b"x", key="k1", size=10, ttl=60)
    assert await a.new_epoch_if_behind("t", at) == at  # not behind: unchanged
    renewed = await a.new_epoch_if_behind("t", Position(at.epoch, at.offset + 5))
    assert renewed.epoch != at.epoch
    assert renewed.offset == 0
    assert (await a.read("t", after=None, limit=10, ttl=60)).entries == []
    again = await a.append("t", b"y", key="k2", size=10, ttl=60)
    assert again == Position(renewed.epoch, 1)


async def test_private_memory_backplanes_do_not_hear_each_other() -> None:
    a, b = MemoryBackplane(), MemoryBackplane()
    inbox = Inbox()
    await a.start(inbox)
    await b.start(Inbox())
    await a.subscribe("t")
    await b.publish("t", b"x")
    await a.publish("t", b"own")
    assert await inbox.wait_for(1) == [("t", b"own")]
    assert (a.shared, b.shared) == (False, False)
    await a.stop()
    await b.stop()


def test_unknown_backplane_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown backplane url 'kafka://x'"):
        create_backplane("kafka://x")
    assert isinstance(create_backplane("redis://127.0.0.1:1/0"), RedisBackplane)


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("rooms/+", "rooms/*"),
        ("rooms/+/say", "rooms/*/say"),
        ("alerts/#", "alerts*"),
        ("#", "*"),
        ("+/x/#", "*/x*"),
        ("a*b/[c]?/+", "a\\*b/\\[c\\]\\?/*"),
    ],
)
def test_mqtt_patterns_become_redis_globs(pattern: str, glob: str) -> None:
    assert redis_glob(pattern) == glob


async def test_redis_options_come_from_the_url_query() -> None:
    backplane = RedisBackplane(
        "redis://:secret@127.0.0.1:1/0?prefix=app1:&connect_timeout=0.2&command_timeout=0.3"
    )
    assert (backplane.prefix, backplane.connect_timeout, backplane.command_timeout) == (
        "app1:",
        0.2,
        0.3,
    )
    assert "secret" not in repr(backplane)
    await backplane.stop()


async def test_redis_going_away_is_counted_not_raised_and_then_survived(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = RedisBackplane(redis_server.url), RedisBackplane(redis_server.url)
    inbox = Inbox()
    await a.start(inbox)
    await b.start(Inbox())
    await a.subscribe("t")
    await a.subscribe("p/#")
    assert await a.wait_ready(5)
    redis_server.kill()
    await asyncio.sleep(0.2)
    for _ in range(3):
        await b.publish("t", b"during")  # never raises
    assert not a.ready
    assert b.stats["publish_failures"] >= 3
    assert a.stats["reconnects"] >= 1
    redis_server.start()
    assert await a.wait_ready(5)
    assert await b.wait_ready(5)
    await b.publish("t", b"after")
    await b.publish("p/q", b"pattern after")
    assert await inbox.wait_for(2) == [("t", b"after"), ("p/q", b"pattern after")]
    await a.stop()
    await b.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "wsevents.backplane"]
    assert any("unreachable" in line for line in warnings)
    assert any("reconnected" in line for line in warnings)
    assert not [r for r in caplog.records if r.exc_info]  # no traceback in the log


async def test_redis_backplane_starts_with_redis_down_and_joins_later(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # its port is chosen but nothing listens yet
    backplane = RedisBackplane(server.url)
    inbox = Inbox()
    await backplane.start(inbox)
    await backplane.subscribe("late")
    assert not await backplane.wait_ready(0.3)
    server.start()
    try:
        assert await backplane.wait_ready(5)
        publisher = RedisBackplane(server.url)
        await publisher.start(Inbox())
        assert await publisher.wait_ready(5)
        await publisher.publish("late", b"hello")
        assert await inbox.wait_for(1) == [("late", b"hello")]
        await publisher.stop()
    finally:
        await backplane.stop()
        server.kill()


async def test_stop_with_redis_down_is_quick(redis_server: RedisServer) -> None:
    backplane = RedisBackplane(redis_server.url)
    await backplane.start(Inbox())
    await backplane.subscribe("t")
    assert await backplane.wait_ready(5)
    redis_server.kill()
    await backplane.publish("t", b"x")
    started = time.monotonic()
    await backplane.stop()
    assert time.monotonic() - started < 5


async def test_a_redis_call_cut_short_by_its_deadline_never_outlives_the_task_that_made_it() -> (
    None
):
    """A backplane's Redis calls are bounded in the caller's task. redis-py may take a
    cancel mid-connect as its own timeout and go on connecting; under ``asyncio.wait_for``
    (3.10, 3.11) a caller cancelled then (the backplane stopping) left that connect running
    alone, and its connection outlived the client closed after it (CI, 3.10)."""
    from wsevents._tasks import within

    went_on: list[str] = []

    async def stubborn() -> None:  # takes the first cancel for its own timeout, as redis-py can
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)
            went_on.append("connected")

    async def caller() -> None:
        await within(stubborn(), 0.05)

    task = asyncio.get_running_loop().create_task(caller())
    await asyncio.sleep(0.15)  # its deadline passed; stubborn is on its way back
    task.cancel()  # the backplane stops
    with contextlib.suppress(asyncio.CancelledError, TimeoutError, asyncio.TimeoutError):
        await task
    await asyncio.sleep(0.4)
    assert went_on == []  # nothing of it ran after its caller ended


async def test_a_listener_that_meets_garbage_keeps_listening(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(topic: str, payload: bytes, position: Position | None) -> None:
        if payload == b"boom":
            raise RuntimeError("receiver bug")
        inbox(topic, payload)

    inbox = Inbox()
    a, b = RedisBackplane(redis_server.url), RedisBackplane(redis_server.url)
    await a.start(explode)
    await b.start(Inbox())
    await a.subscribe("t")
    assert await a.wait_ready(5)
    assert await b.wait_ready(5)
    with caplog.at_level(logging.WARNING):
        await b.publish("t", b"boom")
        await b.publish("t", b"fine")
        assert await inbox.wait_for(1, timeout=10) == [("t", b"fine")]
    await a.stop()
    await b.stop()


def test_an_app_with_redis_down_starts_again_in_a_new_event_loop() -> None:
    from wsevents import Channel, EventApp
    from wsevents.testing import EventTestClient

    from .conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.2"  # nothing listens there
    app = EventApp([Channel("/c")], title="t", version="1", backplane=url)
    outcomes: list[object] = []

    def twice() -> None:
        try:
            for _ in range(2):  # each client block runs the lifespan in a loop of its own
                with EventTestClient(app) as client, client.connect("/c"):
                    outcomes.append(app.ready)
        except BaseException as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=twice, daemon=True)  # bounded: it hung before the fix
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the second lifespan hung"
    assert outcomes == [False, False]  # both started, serving this process only


async def test_a_subscription_made_while_the_listener_resubscribes_reaches_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio.client import PubSub

    server = RedisServer(tmp_path)  # nothing listens yet
    backplane = RedisBackplane(server.url)
    inbox = Inbox()
    await backplane.start(inbox)
    await backplane.subscribe("early")
    # Hold the listener inside its resubscription, as a slow Redis would.
    inside, release = asyncio.Event(), asyncio.Event()
    subscribe = PubSub.subscribe

    async def slow_subscribe(self: PubSub, *args: object, **kwargs: object) -> None:
        inside.set()
        await release.wait()
        await subscribe(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PubSub, "subscribe", slow_subscribe)
    server.start()
    try:
        await asyncio.wait_for(inside.wait(), 5)
        await backplane.subscribe("meanwhile")
        release.set()
        assert await backplane.wait_ready(5)
        publisher = RedisBackplane(server.url)
        await publisher.start(Inbox())
        assert await publisher.wait_ready(5)
        await publisher.publish("meanwhile", b"heard")
        await publisher.publish("early", b"also")
        assert sorted(await inbox.wait_for(2)) == [("early", b"also"), ("meanwhile", b"heard")]
        await publisher.stop()
    finally:
        await backplane.stop()
        server.kill()


async def test_a_frozen_redis_never_holds_up_a_publish(redis_server: RedisServer) -> None:
    backplane = RedisBackplane(redis_server.url + "?publish_buffer=3&command_timeout=1")
    await backplane.start(Inbox())
    assert await backplane.wait_ready(5)
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await backplane.publish("t", b"first")  # taken by the sender, which now waits
        await asyncio.sleep(0.1)
        for n in range(10):  # three wait in the buffer, seven find it full
            await backplane.publish("t", b"%d" % n)
        elapsed = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert backplane.stats["publish_overflows"] == 7
    assert elapsed < 0.9  # not one command timeout (1 s), let alone eleven
    await backplane.stop()


async def test_a_publish_whose_connection_broke_is_sent_again_and_heard(
    redis_server: RedisServer,
) -> None:
    import redis as redis_py

    a, b = RedisBackplane(redis_server.url), RedisBackplane(redis_server.url)
    inbox = Inbox()
    await a.start(inbox)
    await b.start(Inbox())
    assert await a.wait_ready(5)
    assert await b.wait_ready(5)
    await a.subscribe("t")
    await b.publish("t", b"before")  # b's publishing connection is open now
    await inbox.wait_for(1)
    admin = redis_py.Redis.from_url(redis_server.url)
    try:  # every connection but the listeners' (type pubsub) and this one
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        admin.close()
    await b.publish("t", b"after")  # the pipeline finds its connection closed
    assert await inbox.wait_for(2) == [("t", b"before"), ("t", b"after")]
    assert b.stats["publish_failures"] == 0
    assert b.stats["publish_retries"] == 1
    await a.stop()
    await b.stop()


async def test_local_delivery_does_not_wait_on_a_frozen_redis(redis_server: RedisServer) -> None:
    from websockets.asyncio.client import connect

    from wsevents import Channel, Connection, EventApp

    from .conftest import serve

    channel = Channel("/c")

    @channel.on_connect
    async def join(conn: Connection) -> None:
        await conn.subscribe("news")

    @channel.on("burst")
    async def burst(conn: Connection) -> None:
        for n in range(5):
            await conn.publish("news", "item", n)

    app = EventApp([channel], title="t", version="1", backplane=redis_server.url)
    with serve(app) as address:
        async with connect(f"ws://{address}/c") as ws:
            assert redis_server.process is not None
            redis_server.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                await ws.send('{"event": "burst"}')
                items = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(5)]
                elapsed = time.monotonic() - started
            finally:
                redis_server.process.send_signal(signal.SIGCONT)
    assert [item["data"] for item in items] == [0, 1, 2, 3, 4]
    assert elapsed < 2.5  # before: one command timeout (1 s) per publish, 5 s in all


async def counted_connections(
    redis_server: RedisServer,
) -> tuple[RedisBackplane, Callable[[], int]]:
    """A started Redis backplane, and how many connections Redis has taken so far."""
    import redis

    watcher = redis.Redis.from_url(redis_server.url)
    backplane = RedisBackplane(redis_server.url)
    await backplane.start(Inbox())
    assert await backplane.wait_ready(5)

    def connections() -> int:
        return int(watcher.info("stats")["total_connections_received"])

    return backplane, connections


async def test_concurrent_appends_share_one_connection_and_get_consecutive_offsets(
    redis_server: RedisServer,
) -> None:
    backplane, connections = await counted_connections(redis_server)
    await backplane.append("t", b"warm", key="warm", size=1000, ttl=60)  # the pool's first
    opened = connections()
    positions = await asyncio.gather(
        *(backplane.append("t", b"%d" % n, key=f"k{n}", size=1000, ttl=60) for n in range(200))
    )
    # One round trip carries what was made meanwhile: no connection per publication.
    assert connections() - opened <= 1
    assert sorted(position.offset for position in positions) == list(range(2, 202))
    kept = await backplane.read("t", after=1, limit=1000, ttl=60)
    assert sorted(payload for _, payload in kept.entries) == sorted(b"%d" % n for n in range(200))
    await backplane.stop()


def busy(seconds: float) -> None:
    """Work ``seconds`` without yielding."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_an_idle_pipelines_caller_sends_from_its_task_the_others_queue_behind() -> None:
    from wsevents.backplane._pipeline import Pipeline

    sent: list[tuple[asyncio.Task[object] | None, list[str]]] = []

    async def send(batch: list[str]) -> None:
        sent.append((asyncio.current_task(), batch))

    pipeline: Pipeline[str] = Pipeline(send, most=10)
    pipeline.start()
    release = asyncio.Event()

    async def own() -> str:
        sent.append((asyncio.current_task(), ["own"]))
        await release.wait()  # its round trip
        return "answered"

    assert pipeline.idle
    caller = asyncio.ensure_future(pipeline.alone(own()))
    await asyncio.sleep(0)
    assert sent == [(caller, ["own"])]  # the caller's own task: no hop through the sender
    assert not pipeline.idle  # one is out: the next caller queues
    pipeline.put("a")
    pipeline.put("b")
    await asyncio.sleep(0.01)
    assert [batch for _, batch in sent] == [["own"]]  # behind it, in the order queued
    release.set()
    assert await caller == "answered"
    await asyncio.sleep(0)
    assert [batch for _, batch in sent] == [["own"], ["a", "b"]]  # together, right after
    assert sent[1][0] is not caller
    assert pipeline.idle
    await pipeline.stop(1)


async def test_a_caller_whose_queue_waited_waits_until_the_sender_took_it() -> None:
    from wsevents.backplane._pipeline import HOLD, Pipeline

    batches: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        batches.append(batch)
        for _ in range(3):  # a round trip: some turns of the loop before its reply is read
            await asyncio.sleep(0)

    pipeline: Pipeline[int] = Pipeline(send, most=100)
    pipeline.start()
    pipeline.put(0)
    await asyncio.sleep(0)  # the sender took 0, and waits for its reply
    for n in range(1, 4):
        pipeline.put(n)
        busy(HOLD * 2)  # a delivery that does not yield, as a publish to many does
        await pipeline.turn()
        assert len(pipeline) == 0  # taken: the sender sends it while the caller goes on
    assert batches == [[0], [1], [2], [3]]
    await pipeline.stop(1)


async def test_a_sender_that_hangs_holds_a_caller_up_once_not_at_each_turn() -> None:
    from wsevents.backplane._pipeline import HOLD, Pipeline

    hang = asyncio.Event()

    async def send(batch: list[int]) -> None:
        await hang.wait()  # Redis does not answer

    pipeline: Pipeline[int] = Pipeline(send, most=100)
    pipeline.start()
    pipeline.put(0)
    await asyncio.sleep(0)
    pipeline.put(1)
    busy(HOLD * 2)
    await pipeline.turn()  # waits for the sender, in vain, WAIT at most
    assert len(pipeline) == 1
    loop = asyncio.get_running_loop()
    turns = [0]  # of the loop, while the caller goes on

    def spin() -> None:  # one a turn: thousands in a turn() that waits WAIT
        turns[0] += 1
        if not hang.is_set():
            loop.call_soon(spin)

    loop.call_soon(spin)
    for n in range(2, 12):
        pipeline.put(n)
        await pipeline.turn()
    assert turns[0] <= 30  # each turn gave the sender its turn, and waited for nothing
    hang.set()
    await pipeline.stop(1)


async def test_a_caller_that_stopped_waiting_still_gives_the_sender_its_turn() -> None:
    from wsevents.backplane._pipeline import HOLD, WAIT, Pipeline

    batches: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            await asyncio.sleep(WAIT * 2)  # a slow round trip: the caller stops waiting

    pipeline: Pipeline[int] = Pipeline(send, most=100)
    pipeline.start()
    pipeline.put(0)
    await asyncio.sleep(0)
    for n in range(1, 16):  # a burst that yields only in turn(), 2 ms a publication
        pipeline.put(n)
        busy(HOLD * 2)
        await pipeline.turn()
    assert len(batches) >= 3  # sent while the burst went on, not all at its end
    await pipeline.stop(1)


async def test_an_append_to_a_frozen_redis_fails_at_its_command_timeout_and_the_next_lands(
    redis_server: RedisServer,
) -> None:
    backplane = RedisBackplane(redis_server.url + "?command_timeout=0.5")
    await backplane.start(Inbox())
    assert await backplane.wait_ready(5)
    await backplane.append("t", b"0", key="k0", size=10, ttl=60)
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(backplane.append("t", b"1", key="k1", size=10, ttl=60), 10)
        waited = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert waited >= 0.5  # its command timeout, and no other bound before it
    assert (await backplane.append("t", b"2", key="k2", size=10, ttl=60)).offset >= 2
    await backplane.stop()


async def test_a_burst_of_reads_and_presence_changes_shares_one_connection(
    redis_server: RedisServer,
) -> None:
    """1,000 subscribers connecting or leaving at once: no call fails for want of a connection."""
    backplane, connections = await counted_connections(redis_server)
    await backplane.presence_count("warm")  # the pool's first connection
    opened = connections()
    members = [f"n-{n}" for n in range(300)]
    await asyncio.gather(
        *(backplane.presence_set("room", {member: b"{}"}, 30) for member in members),
        *(backplane.read(f"t{n}", after=None, limit=10, ttl=60) for n in range(300)),
    )
    assert await backplane.presence_count("room") == 300
    await asyncio.gather(*(backplane.presence_remove("room", [member]) for member in members))
    assert (await backplane.presence_members("room"))[1] == {}
    assert connections() - opened <= 1
    await backplane.stop()


async def test_an_append_lands_once_after_redis_forgot_its_scripts(
    redis_server: RedisServer,
) -> None:
    import redis

    backplane = RedisBackplane(redis_server.url)
    await backplane.start(Inbox())
    assert await backplane.wait_ready(5)
    first = await backplane.append("t", b"1", key="k1", size=10, ttl=60)
    redis.Redis.from_url(redis_server.url).script_flush()  # as a restart without data does
    later = await asyncio.gather(
        *(backplane.append("t", b"%d" % n, key=f"k{n}", size=10, ttl=60) for n in (2, 3, 4))
    )
    assert [first.offset, *sorted(p.offset for p in later)] == [1, 2, 3, 4]
    assert len((await backplane.read("t", after=None, limit=10, ttl=60)).entries) == 4
    await backplane.stop()


async def test_stop_answers_an_append_waiting_on_a_frozen_redis(
    redis_server: RedisServer,
) -> None:
    backplane = RedisBackplane(redis_server.url + "?command_timeout=5")
    await backplane.start(Inbox())
    assert await backplane.wait_ready(5)
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        waiting = asyncio.ensure_future(backplane.append("t", b"x", key="k", size=10, ttl=60))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        await backplane.stop()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 1)
        assert time.monotonic() - started < 4  # answered by stop, not by the command timeout
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    with pytest.raises(ConnectionError, match="not running"):
        await backplane.append("t", b"x", key="k2", size=10, ttl=60)


# -- presence: the contract -------------------------------------------------------------


async def test_presence_members_and_count_are_shared_and_changes_are_logged_in_order(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, b, _ = pair
    assert await b.presence_members("room") == (0, {})  # no member: nothing to read
    first = await a.presence_set("room", {"n1-a": b'{"u":"ann"}', "n1-b": b"{}"}, 30)
    start = first - 2  # the number before these two joins
    await b.presence_set("room", {"n2-c": b'{"u":"cy"}'}, 30)
    # A refresh: no change, the same number.
    assert await a.presence_set("room", {"n1-a": b'{"u":"ann"}'}, 30) == start + 3
    await a.presence_set("room", {"n1-b": b'{"u":"bo"}'}, 30)  # new info: joined again
    await b.presence_remove("room", ["n1-a", "nobody"])
    seq, members = await b.presence_members("room")
    assert members == {"n1-b": b'{"u":"bo"}', "n2-c": b'{"u":"cy"}'}
    assert await a.presence_count("room") == 2
    assert seq - start == 5
    after, changes = await a.presence_changes("room", start)
    assert after == seq
    assert changes == [
        ("j", "n1-a", b'{"u":"ann"}'),
        ("j", "n1-b", b"{}"),
        ("j", "n2-c", b'{"u":"cy"}'),
        ("j", "n1-b", b'{"u":"bo"}'),
        ("l", "n1-a", b'{"u":"ann"}'),
    ]
    assert await a.presence_changes("room", seq) == (seq, [])
    assert (await a.presence_changes("room", seq + 5))[1] is None  # ahead: read the members
    # Everyone gone: a reader behind reads the members (none), whatever the store kept.
    await a.presence_remove("room", ["n1-b", "n2-c"])
    assert await b.presence_count("room") == 0
    after, changes = await b.presence_changes("room", seq)
    assert changes is None or changes == [
        ("l", "n1-b", b'{"u":"bo"}'),
        ("l", "n2-c", b'{"u":"cy"}'),
    ]
    assert (await b.presence_members("room"))[1] == {}
    assert await a.presence_count("elsewhere") == 0


async def test_a_member_not_refreshed_expires_and_is_logged_as_left_with_its_info(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, b, _ = pair
    await a.presence_set("room", {"dead-1": b'{"u":"d"}'}, 0.3)
    await a.presence_set("room", {"live-1": b"{}"}, 30)
    seq, _ = await b.presence_members("room")
    await asyncio.sleep(0.5)
    assert await b.presence_count("room") == 1
    after, changes = await b.presence_changes("room", seq)
    assert changes == [("l", "dead-1", b'{"u":"d"}')]
    assert (await a.presence_members("room"))[1] == {"live-1": b"{}"}
    assert (await a.presence_changes("room", after))[1] == []  # expired once, logged once


async def test_a_refresh_keeps_a_member_s_info_and_registers_one_the_store_lost(
    pair: tuple[Backplane, Inbox, Backplane, Inbox],
) -> None:
    a, _, b, _ = pair
    first = await a.presence_set("room", {"n-1": b'{"v":2}'}, 30)
    # A refresh that left before the member subscribed again with new info: kept as is.
    assert await b.presence_set("room", {"n-1": b'{"v":1}', "n-2": b"{}"}, 30, refresh=True) == (
        first + 1  # n-2, gone from the store, registered again: one change
    )
    assert (await a.presence_members("room"))[1] == {"n-1": b'{"v":2}', "n-2": b"{}"}
    assert (await a.presence_changes("room", first))[1] == [("j", "n-2", b"{}")]


async def test_a_redis_that_forgot_the_scripts_still_keeps_history_and_presence(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as redis_py

    backplane = RedisBackplane(redis_server.url)
    await backplane.start(Inbox())
    admin = redis_py.Redis.from_url(redis_server.url)
    try:
        first = await backplane.append("t", b"one", key="k1", size=10, ttl=60)
        await admin.script_flush()  # what a restarted Redis knows of them
        second, third = await asyncio.gather(  # in one pipeline, both refused with NOSCRIPT
            backplane.append("t", b"two", key="k2", size=10, ttl=60),
            backplane.append("t", b"three", key="k3", size=10, ttl=60),
        )
        assert [first.offset, second.offset, third.offset] == [1, 2, 3]
        found = await backplane.read("t", after=None, limit=10, ttl=60)
        assert found.entries == [(1, b"one"), (2, b"two"), (3, b"three")]
        await admin.script_flush()
        await backplane.presence_set("room", {"c1": b"{}"}, 30)
        assert await backplane.presence_count("room") == 1
    finally:
        await admin.aclose()
        await backplane.stop()


async def test_the_memory_backplane_drops_once_answers_whose_window_passed() -> None:
    """Answers nobody asks for again still go once their window passed: the store stays bounded."""
    backplane = MemoryBackplane()
    for n in range(2100):  # each kept for no time at all: lapsed as soon as kept
        assert await backplane.once_claim(f"k{n}", "a", 15.0) == ("run", None)
        await backplane.once_keep(f"k{n}", "a", b"answer", 0.0)
    # Swept as the store reached 1,024 entries: twice, all but the last 52.
    assert backplane.stats["once_lapsed"] == 2048
    # an answer within its window is kept, and a claim within its lease holds
    await backplane.once_keep("kept", "a", b"kept", 60.0)
    assert await backplane.once_claim("kept", "b", 15.0) == ("done", b"kept")
    assert await backplane.once_claim("held", "a", 15.0) == ("run", None)
    assert await backplane.once_claim("held", "b", 15.0) == ("running", None)


async def test_a_sentinel_failover_is_followed_and_a_history_written_before_gets_a_new_epoch(
    tmp_path: Path,
) -> None:
    """The master SIGKILLed under a steady publish: publications go on through the replica
    the sentinels promote, and a history that may have lost writes starts a new epoch."""
    found = SentinelSet(tmp_path)
    found.start()
    a, b = create_backplane(found.url), create_backplane(found.url)
    inbox = Inbox()
    try:
        await a.start(inbox)
        await b.start(Inbox())
        assert await a.wait_ready(5)
        assert await b.wait_ready(5)
        await a.subscribe("rooms/lobby")
        before = await b.append("kept/x", b"one", key="k1", size=10, ttl=60)
        sent = 0

        async def publish_until(count: int, within: float) -> None:
            nonlocal sent
            deadline = time.monotonic() + within
            while len(inbox.messages) < count and time.monotonic() < deadline:
                sent += 1
                await b.publish("rooms/lobby", str(sent).encode())  # never raises
                await asyncio.sleep(0.02)

        await publish_until(5, 5)
        assert len(inbox.messages) >= 5
        old = found.kill_master()
        killed = time.monotonic()
        found.wait_failover(old)
        heard = len(inbox.messages)
        await publish_until(heard + 5, 15)
        assert len(inbox.messages) >= heard + 5  # publications go on
        assert time.monotonic() - killed < 20
        after = None
        for _ in range(100):  # scripts too, once the backplane follows the master
            with contextlib.suppress(Exception):
                after = await b.append("kept/x", b"two", key="k2", size=10, ttl=60)
                break
            await asyncio.sleep(0.1)
        assert after is not None
        # The replica may not have had every append: a new epoch, never a silent gap.
        assert after.epoch != before.epoch
        assert after.offset == 1
    finally:
        await a.stop()
        await b.stop()
        found.stop()


def sentinel_process(directory: Path, port: int, config: str) -> subprocess.Popen[bytes]:
    """A sentinel on ``port`` with ``config``'s lines (none: it watches no master)."""
    from .conftest import redis_server_binary

    path = directory / f"sentinel-{port}.conf"
    path.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n{config}\n")
    return subprocess.Popen(
        [redis_server_binary(), str(path), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def listening(port: int, within: float = 10.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def test_sentinels_asked_at_once_are_all_asked_again_and_all_closed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The listener, a publish and the watch ask the sentinels at once. redis-py moves the
    one that answered to the head of its list; two doing so together once left it there
    twice and the first one out (never asked again, its connections never closed: the
    unraisable ResourceWarnings of CI on 3.10, in the failover tests)."""
    import psutil

    from wsevents.backplane._sentinel import Sentinels

    from .conftest import free_port

    # The first sentinel watches nothing (as one that lost the master would not name it);
    # the second names redis_server.
    lone, knowing = free_port(), free_port()
    processes = [
        sentinel_process(tmp_path, lone, ""),
        sentinel_process(
            tmp_path, knowing, f"sentinel monitor svc 127.0.0.1 {redis_server.port} 1"
        ),
    ]
    sentinels = Sentinels(
        urlsplit(f"redis+sentinel://127.0.0.1:{lone},127.0.0.1:{knowing}/svc"),
        {},
        {"socket_connect_timeout": 2.0},
        1.0,
    )
    try:
        for port in (lone, knowing):
            await listening(port)
        await asyncio.gather(*(sentinels.moved() for _ in range(4)))
        assert sentinels.master == ("127.0.0.1", redis_server.port)
        await sentinels.close()
        gc.collect()
        mine = psutil.Process().net_connections(kind="tcp")
        assert [c.raddr for c in mine if c.raddr and c.raddr[1] in (lone, knowing)] == []
    finally:
        await sentinels.close()
        for process in processes:
            process.kill()
            process.wait(timeout=10)


async def test_a_master_cut_off_but_alive_is_left_for_the_one_the_sentinels_promoted(
    tmp_path: Path,
) -> None:
    """The sentinels lose the master, which still serves the connections it has: the
    backplane follows the sentinels, not its old connections (a split brain otherwise)."""
    found = SentinelSet(tmp_path)
    found.start()
    a = create_backplane(found.url)
    inbox = Inbox()
    late = create_backplane(found.url)
    try:
        await a.start(inbox)
        assert await a.wait_ready(5)
        await a.subscribe("rooms/lobby")
        old = found.cut_off_master()
        found.wait_failover(old)
        # A process that connects now finds the promoted replica; a must hear it there.
        await late.start(Inbox())
        assert await late.wait_ready(10)
        deadline = time.monotonic() + 10
        while not inbox.messages and time.monotonic() < deadline:
            await late.publish("rooms/lobby", b"after")
            await asyncio.sleep(0.1)
        assert inbox.messages[:1] == [("rooms/lobby", b"after")]
    finally:
        await a.stop()
        await late.stop()
        found.stop()
