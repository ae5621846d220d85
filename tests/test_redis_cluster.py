"""Redis Cluster: a topic's publications cost its own shard, and the cluster's changes are
followed (DESIGN.md section 14). The contract suite (test_backplane) runs on a cluster too;
these check what is the cluster's own: where commands go, slots that move, a shard that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from wsevents.backplane import Backplane, create_backplane
from wsevents.backplane.cluster import tagged, untagged

from .redis_sets import ClusterSet, _client
from .test_backplane import Inbox

pytestmark = pytest.mark.anyio

_prefixes = itertools.count()


@pytest.fixture
def cluster(redis_cluster: ClusterSet) -> ClusterSet:
    """The module's cluster (tests/conftest.py)."""
    return redis_cluster


def calls(cluster: ClusterSet, command: str) -> dict[int, int]:
    """How many times each primary ran ``command`` since its statistics were reset."""
    found = {}
    for port in cluster.primaries():
        stats = _client(port).info("commandstats")
        found[port] = int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return found


@contextlib.asynccontextmanager
async def two(
    url: str, resumed: Callable[[], None] | None = None
) -> AsyncIterator[tuple[Backplane, Inbox, Backplane]]:
    """Two backplanes on ``url``, started and ready: ``a`` (with its inbox) and ``b``."""
    a, b = create_backplane(url), create_backplane(url)
    inbox = Inbox()
    try:
        await a.start(inbox, resumed)
        await b.start(Inbox())
        assert await a.wait_ready(5)
        assert await b.wait_ready(5)
        yield a, inbox, b
    finally:
        await a.stop()
        await b.stop()


def reset_stats(cluster: ClusterSet) -> None:
    for port in cluster.primaries():
        _client(port).config_resetstat()


def test_a_topic_is_tagged_so_its_keys_and_channel_share_one_slot() -> None:
    for topic in ("rooms/lobby", "a{b}c", "}", "{", "x/{}/y"):
        name = tagged(topic)
        assert untagged(name) == topic
        tag = name[1 : name.index("}")]
        assert tag  # a non-empty tag: Redis hashes it, not the whole key
        assert "{" not in tag
    assert tagged("a{b}c") != tagged("a{b}d")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis+cluster://", "expected redis+cluster://"),
        ("redis+cluster://127.0.0.1:7000/0", "expected redis+cluster://"),
        ("redis+cluster://127.0.0.1", "expected host:port"),
        ("redis+cluster://127.0.0.1:7000?prefix=a{b}:", "prefix cannot hold"),
        ("redis+cluster://127.0.0.1:7000?sentinel_check=1", "unknown option"),
    ],
)
def test_a_bad_cluster_url_is_refused_with_what_was_expected(url: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        create_backplane(url)


async def test_a_publication_costs_only_the_shard_that_owns_its_topic(
    cluster: ClusterSet,
) -> None:
    prefix = f"cost{next(_prefixes)}:"
    async with two(f"{cluster.url}?prefix={prefix}") as (a, inbox, b):
        topics = [f"rooms/{n}" for n in range(30)]
        for topic in topics:
            await a.subscribe(topic)
        reset_stats(cluster)
        for topic in topics:
            await b.publish(topic, topic.encode())
        await inbox.wait_for(30)
        expected = dict.fromkeys(cluster.primaries(), 0)
        for topic in topics:
            expected[cluster.owner(prefix + tagged(topic))] += 1
        assert calls(cluster, "spublish") == expected
        assert sum(1 for count in expected.values() if count) == 3  # spread over the shards
        assert sum(calls(cluster, "publish").values()) == 0  # never cluster-wide


async def test_only_a_topic_a_pattern_matches_goes_out_cluster_wide_too(
    cluster: ClusterSet,
) -> None:
    prefix = f"wild{next(_prefixes)}:"
    async with two(f"{cluster.url}?prefix={prefix}") as (a, inbox, b):
        await a.subscribe("rooms/+/say")
        await a.subscribe("news/today")
        reset_stats(cluster)
        await b.publish("rooms/1/say", b"matched")
        await b.publish("news/today", b"exact")
        await b.publish("other/x", b"nobody")
        assert sorted(await inbox.wait_for(2)) == [
            ("news/today", b"exact"),
            ("rooms/1/say", b"matched"),
        ]
        assert sum(calls(cluster, "publish").values()) == 1  # the matched one, once
        assert sum(calls(cluster, "spublish").values()) == 3
        await a.unsubscribe("rooms/+/say")
        deadline = time.monotonic() + 5  # b hears that nobody holds the pattern any more
        while time.monotonic() < deadline:
            reset_stats(cluster)
            await b.publish("rooms/2/say", b"unheard")
            await asyncio.sleep(0.05)
            if sum(calls(cluster, "publish").values()) == 0:
                break
        assert sum(calls(cluster, "publish").values()) == 0


async def test_a_topic_with_braces_keeps_history_and_presence_on_one_node(
    cluster: ClusterSet,
) -> None:
    prefix = f"brace{next(_prefixes)}:"
    async with two(f"{cluster.url}?prefix={prefix}") as (a, inbox, b):
        topic = "orders/{eu}/7"
        await a.subscribe(topic)
        first = await b.append(topic, b"one", key="k1", size=10, ttl=60)
        second = await b.append(topic, b"two", key="k2", size=10, ttl=60)
        assert (first.offset, second.offset, first.epoch) == (1, 2, second.epoch)
        assert await inbox.wait_for(2) == [(topic, b"one"), (topic, b"two")]
        assert inbox.positions == [first, second]
        read = await a.read(topic, after=1, limit=10, ttl=60)
        assert read.entries == [(2, b"two")]
        await b.presence_set(topic, {"ann": b"{}"}, 30)
        assert (await a.presence_members(topic))[1] == {"ann": b"{}"}


async def test_a_slot_moved_to_another_primary_takes_its_subscribers_and_publishers_along(
    cluster: ClusterSet,
) -> None:
    """Redis ends a shard subscription unasked when its slot moves, and answers MOVED to
    a publisher that does not know yet: both are followed, with no look at the map due
    (``cluster_check`` of a minute)."""
    prefix = f"move{next(_prefixes)}:"
    url = f"{cluster.url}?prefix={prefix}&cluster_check=60"
    async with two(url) as (a, inbox, b):
        topic = "moving/t"
        await a.subscribe(topic)
        await b.publish(topic, b"before")
        await inbox.wait_for(1)
        kept = await b.append(topic, b"kept", key="m1", size=10, ttl=60)
        await inbox.wait_for(2)
        key = prefix + tagged(topic)
        source = cluster.owner(key)
        target = next(port for port in cluster.primaries() if port != source)
        cluster.move_slot(key, target)
        assert cluster.owner(key) == target
        deadline = time.monotonic() + 10
        while len(inbox.messages) < 3 and time.monotonic() < deadline:
            await b.publish(topic, b"after")
            await asyncio.sleep(0.1)
        assert inbox.messages[2] == (topic, b"after")
        moved = await b.append(topic, b"moved", key="m2", size=10, ttl=60)
        # Kept under another node's replication id: the check cannot tell a migration
        # from a failover, so the history starts again, and says so; never a silent gap.
        assert (moved.offset, moved.epoch != kept.epoch) == (1, True)
        assert b.stats["publish_failures"] == 0


async def test_a_script_on_a_slot_being_migrated_is_asked_of_the_node_it_moves_to(
    cluster: ClusterSet,
) -> None:
    """Mid-migration the old owner answers ASK for keys it does not hold, and the new one
    TRYAGAIN for a script whose keys are not all there yet: the call goes on until the
    slot has moved, then runs on its new owner, once. The subscriber, whose shard
    subscription Redis ended when the slot moved, holds it on the new node and resumes."""
    prefix = f"ask{next(_prefixes)}:"
    resumed: list[float] = []
    url = f"{cluster.url}?prefix={prefix}&cluster_check=60"
    async with two(url, lambda: resumed.append(time.monotonic())) as (a, inbox, b):
        topic = "asked/t"
        await a.subscribe(topic)
        key = prefix + tagged(topic)
        source = cluster.owner(key)
        target = next(port for port in cluster.primaries() if port != source)
        cluster.begin_migration(key, target)
        reset_stats(cluster)
        appending = asyncio.ensure_future(b.append(topic, b"asked", key="a1", size=10, ttl=60))
        await asyncio.sleep(0.5)
        assert not appending.done()  # neither node can run it mid-migration
        assert calls(cluster, "asking")[target] >= 1  # the new node was asked
        await asyncio.to_thread(cluster.end_migration, key, target)
        first = await asyncio.wait_for(appending, 10)
        assert first.offset == 1
        assert cluster.owner(key) == target
        read = await b.read(topic, after=None, limit=10, ttl=60)
        assert read.entries == [(1, b"asked")]  # kept once
        deadline = time.monotonic() + 10
        while not resumed and time.monotonic() < deadline:
            await b.publish(topic, b"later")
            await asyncio.sleep(0.1)
        assert resumed  # the subscriber resumes its histories from where it was
        await b.publish(topic, b"last")
        while (topic, b"last") not in inbox.messages:  # heard on the slot's new node
            await inbox.wait_for(len(inbox.messages) + 1)


async def test_a_killed_primary_pauses_only_its_own_topics_until_its_replica_serves_them(
    tmp_path: Path,
) -> None:
    found = ClusterSet(tmp_path, node_timeout=1000)
    found.start()
    prefix = "kill:"
    url = f"{found.url}?prefix={prefix}"
    gc.collect()  # what earlier tests left to the collector is not counted, nor closed during
    files = psutil.Process().num_fds()
    tasks = len(asyncio.all_tasks())
    try:
        async with two(url) as (a, inbox, b):
            await killed_primary(found, prefix, a, inbox, b)
        # Stopped, nothing of either is left: no task, no connection, no file.
        assert len(asyncio.all_tasks()) == tasks, [t.get_coro() for t in asyncio.all_tasks()]
        gc.collect()
        assert psutil.Process().num_fds() <= files
    finally:
        found.stop()


async def killed_primary(
    found: ClusterSet, prefix: str, a: Backplane, inbox: Inbox, b: Backplane
) -> None:
    """A topic on each shard published to every 20 ms; the primary of one SIGKILLed."""
    owners: dict[int, str] = {}  # a topic on each shard
    for n in itertools.count():
        owners.setdefault(found.owner(prefix + tagged(f"t/{n}")), f"t/{n}")
        if len(owners) == 3:
            break
    for topic in owners.values():
        await a.subscribe(topic)
    stop = asyncio.Event()

    async def publish() -> None:
        while not stop.is_set():
            for topic in owners.values():
                await b.publish(topic, b"x")
            await asyncio.sleep(0.02)

    def heard(topic: str) -> int:
        return sum(1 for found_topic, _ in inbox.messages if found_topic == topic)

    publishing = asyncio.ensure_future(publish())
    await asyncio.sleep(0.5)
    victim = next(iter(owners))
    paused, others = owners[victim], [t for p, t in owners.items() if p != victim]
    found.kill(victim)
    killed = time.monotonic()
    before = {topic: heard(topic) for topic in others}
    await asyncio.sleep(1.0)  # inside the failover: the node timeout is 1 s
    assert all(heard(topic) >= before[topic] + 10 for topic in others), inbox.messages[-5:]
    found.wait_promoted(victim)
    at_promotion = heard(paused)
    deadline = killed + 10
    try:
        while heard(paused) < at_promotion + 10 and time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # the next message, or a look again
                await inbox.wait_for(len(inbox.messages) + 1, 0.5)
    finally:
        stop.set()
        await publishing
    assert heard(paused) >= at_promotion + 10, "the failed primary's topic did not go on"
    assert b.stats["publish_failures"] == 0  # they waited for the promoted replica


def test_the_nodes_of_one_cluster_set_never_share_a_port_or_a_bus_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from . import redis_sets

    # The kernel may hand out a free port again until something listens on it.
    handed = iter([21000, 21000, 11000, 21001, 21000, 11001, 21002, 21003, 21004, 21005])
    monkeypatch.setattr(redis_sets, "free_port", lambda: next(handed))
    ports = [redis_sets.cluster_port()]
    for _ in range(4):
        ports.append(redis_sets.cluster_port(ports))
    assert ports == [21000, 21001, 21002, 21003, 21004]  # 11000: its bus port is 21000
    monkeypatch.setattr(redis_sets, "free_port", iter([7, 7, 8, 7, 9, 10, 11]).__next__)
    assert redis_sets.distinct_ports(5) == [7, 8, 9, 10, 11]
