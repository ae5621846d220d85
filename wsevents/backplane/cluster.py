"""Redis Cluster: ``redis+cluster://host:port[,host:port...]``, through sharded pub/sub.

A topic lives in one slot: its shard channel and its history and presence
keys share one hash tag (:func:`tagged`), so a publication (``SPUBLISH``)
costs the shard that owns it, not every node, and each Lua script runs on
one node. Each primary gets a :class:`Node`: a client for its commands,
pipelines of its publishes and script calls, and one pub/sub connection
holding its shard's topics. The slot map comes from ``CLUSTER NODES``, asked
every ``cluster_check`` seconds and at once on a redirection, a lost node or
a shard subscription Redis ended unasked (it does when a slot moves).

Sharded pub/sub has no patterns: a process that subscribes to one records it
in a cluster-wide registry and says so on cluster-wide pub/sub, and a
publication whose topic matches a pattern some process holds also goes out
once with ``PUBLISH`` (DESIGN.md section 14); exact topics never do.

Over 300 lines: the slot map and its refresh, the nodes' pipelines and
listeners, redirections followed, and the cluster-wide pattern registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from functools import partial
from typing import Any
from urllib.parse import SplitResult, unquote
from uuid import uuid4

from .._retry import Backoff
from .._tasks import within
from .._wildcards import is_pattern
from ._base import Receiver, Resumed
from ._cluster_patterns import Patterns
from ._cluster_sending import ClusterSending, Node
from ._pipeline import Pipeline
from ._sentinel import address_of
from ._slots import SLOTS, Address, Script, by_slot, parse_nodes, tagged, untagged
from .redis import RedisBackplane, finish

__all__ = ["CLUSTER_SCHEMES", "RedisClusterBackplane", "tagged", "untagged"]

logger = logging.getLogger("wsevents.backplane")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
FORM = "redis+cluster://[[user]:password@]host:port[,host:port...]"


class RedisClusterBackplane(ClusterSending, RedisBackplane):
    """Redis Cluster 7 or newer, through sharded pub/sub (DESIGN.md section 14).

    The URL names some nodes (the others are found from them); its query takes
    :class:`~wsevents.backplane.redis.RedisBackplane`'s options and
    ``cluster_check`` (2.0 s), the seconds between two looks at the slot map.
    A shard that fails over pauses its own topics only: a publish to one of
    them waits in that node's pipeline and is sent to the promoted replica
    (for ``publish_retry_for`` seconds at most), the others go on.
    """

    def _clients(
        self, redis: Any, parts: SplitResult, options: dict[str, str], common: dict[str, Any]
    ) -> None:
        self.check = float(options.pop("cluster_check", 2.0))
        if options:
            raise ValueError(f"unknown option(s) {sorted(options)} in a redis+cluster:// URL")
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a cluster's prefix cannot hold '{{' or '}}': {self.prefix!r}")
        auth, _, hosts = parts.netloc.rpartition("@")
        if not hosts or parts.path.strip("/"):
            raise ValueError(f"expected {FORM}, got {parts.geturl()!r}")
        username, _, password = auth.partition(":")
        from redis.crc import key_slot

        self._redis = redis
        self._slot_of = key_slot
        # A replica promoted may lack the last writes: a history it holds gets a new epoch.
        self.failover_guard = "1"
        self._options: dict[str, Any] = {
            **{name: value for name, value in common.items() if name != "retry_on_timeout"},
            "username": unquote(username) or None,
            "password": unquote(password) or None,
            "ssl": parts.scheme.lower().startswith("rediss"),
        }
        self._known: list[Address] = [address_of(host, FORM) for host in hosts.split(",")]
        self._owners: list[Address | None] = [None] * SLOTS
        self._nodes: dict[Address, Node] = {}
        self._retiring: set[Node] = set()  # no longer primaries, their work being stopped
        self._stopping = False
        self._resync = False  # a shard subscription ended unasked: hold them all again
        self._wake = asyncio.Event()
        self._refreshing: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the maintainer, the global listener
        self._global: Any = None  # the pub/sub connection of patterns and notices
        self._patterns = Patterns(
            self.prefix,
            uuid4().hex,
            max(30.0, 10 * self.check),
            self._command,
            self.command_timeout,
        )
        self.register_scripts(Script)

    def __repr__(self) -> str:
        return f"RedisClusterBackplane({self.url!r})"

    # -- naming ------------------------------------------------------------------------

    def _keyed(self, topic: str) -> str:
        return tagged(topic)

    def _result_key(self, topic: str, key: str) -> str:
        return f"{self.prefix}result:{tagged(topic)}:{key}"

    def _publish_mode(self, topic: str) -> str:
        return "sp" if self._patterns.matched(topic) else "s"

    def _name(self, subscription: str) -> tuple[str, bool]:
        if is_pattern(subscription):
            return super()._name(subscription)
        return self.prefix + tagged(subscription), False

    def _topic_of(self, name: str, kind: str) -> str:
        topic = name[len(self.prefix) :]
        return untagged(topic) if kind == "smessage" else topic

    def _owner(self, key: str) -> Node | None:
        address = self._owners[self._slot_of(key.encode())]
        return None if address is None else self._nodes.get(address)

    # -- life --------------------------------------------------------------------------

    async def start(self, receive: Receiver, resumed: Resumed | None = None) -> None:
        self._new_ready()
        self._receive = receive
        self._resumed = resumed
        self._stopping = False
        self._wake = asyncio.Event()
        self._refreshing = asyncio.Lock()
        self._spawn(self._maintain())
        self._spawn(self._listen_global())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._stopping:  # a client closed by stop() would quietly connect again
            work.close()
            return
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopping = True  # from here no task is spawned and no node made
        bound = self.connect_timeout + self.command_timeout
        for task in list(self._tasks):
            await finish(task, bound)
        self._retiring.update(self._nodes.values())
        self._nodes.clear()
        while self._retiring:  # also those a cancelled look at the map was retiring
            await self._retire(self._retiring.pop(), flush=True)
        self._ready.clear()

    def _subscribed_all(self) -> None:
        # Every subscription acknowledged, on every node, and the others know this
        # process is alive (they answer its patterns' notices).
        held = all(node.pubsub for node in self._nodes.values())
        if held and not self._pending and self._global is not None and self._patterns.known:
            self._ready.set()

    # -- the slot map ------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keep the slot map and the pattern registry fresh, every ``check`` seconds."""
        backoff = Backoff(0.05, self.max_backoff)
        while not self._stopping:
            try:
                await self._refresh()
                await self._patterns.renew([s for s in self._desired if is_pattern(s)])
                self._subscribed_all()
                backoff.reset()
                delay = self.check
            except Exception as exc:  # no node answered: the cluster is away
                self._lost(exc)
                delay = backoff.next()
            self._wake.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _refresh(self) -> None:
        """Read the slot map from the first node that answers; follow what changed."""
        assert self._refreshing is not None
        if self._refreshing.locked():  # one is under way: its answer will do
            async with self._refreshing:
                return
        async with self._refreshing:
            text = await self._cluster_nodes()
            owners, known = parse_nodes(text)
            self._known = known + [address for address in self._known if address not in known]
            if owners != self._owners:
                self._owners = owners
                await self._follow()
            elif self._resync:
                for node in self._nodes.values():
                    node.dirty = True
            self._resync = False

    async def _cluster_nodes(self) -> str:
        order = [node.address for node in self._nodes.values()]
        order += [address for address in self._known if address not in order]
        last: Exception = ConnectionError("no cluster node named")
        for host, port in order:
            node = self._nodes.get((host, port))
            client = node.commands if node is not None else self._client(host, port, True)
            try:
                answer = await within(
                    client.execute_command("CLUSTER", "NODES"), self.command_timeout
                )
                return answer.decode() if isinstance(answer, bytes) else str(answer)
            except Exception as exc:
                last = exc
            finally:
                if node is None:
                    with suppress(Exception):
                        await client.aclose()
        raise last

    def _client(self, host: str, port: int, commands: bool) -> Any:
        # Commands: no socket_timeout, each call is bounded by ``within`` (as RedisBackplane's).
        # A subscriber: no read timeout, it waits; health checks find a dead peer.
        options = {"socket_timeout": None} if commands else {"health_check_interval": 5}
        return self._redis.Redis(host=host, port=port, **self._options, **options)

    async def _follow(self) -> None:
        """Make a node for each primary that owns slots now, retire the others."""
        if self._stopping:
            return
        primaries = {address for address in self._owners if address is not None}
        for address in primaries - self._nodes.keys():
            node = Node(address, self._client(*address, True), self._client(*address, False))
            self._nodes[address] = node
            node.outgoing = Pipeline(
                partial(self._send_node, node), most=1000, abandon=self._abandoned_publishes
            )
            node.calls = Pipeline(
                partial(self._call_node, node), most=500, abandon=self._abandoned_calls
            )
            node.outgoing.start()
            node.calls.start()
            node.listener = asyncio.get_running_loop().create_task(self._listen_node(node))
        for address in list(self._nodes.keys() - primaries):
            node = self._nodes.pop(address)
            self._retiring.add(node)
            await self._retire(node, flush=False)
            self._retiring.discard(node)
        for node in self._nodes.values():
            node.dirty = True
        self._ready.clear()
        self._subscribed_all()

    async def _retire(self, node: Node, *, flush: bool) -> None:
        """Stop a node's work; what it still held goes to the topics' owners now."""
        bound = self.connect_timeout + self.command_timeout
        if node.listener is not None:
            await finish(node.listener, bound)
        if node.outgoing is not None:
            await node.outgoing.stop(bound)
            if flush and node.pubsub is not None:  # what is queued, once, bounded
                await node.outgoing.flush()
            node.outgoing.clear()
        if node.calls is not None:
            await node.calls.stop(bound)
            node.calls.clear()
        for client in (node.commands, node.subscriber):
            with suppress(Exception):
                await client.aclose()  # each disconnect bounded by redis-py

    def _moved(self, exc: Any) -> None:
        """A redirection: the slot's owner now, until the next map says more."""
        self._owners[exc.slot_id] = (exc.host, exc.port)
        self._wake.set()  # the maintainer reads the whole map, and makes the node

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, subscription: str) -> None:
        self._desired.add(subscription)
        name, pattern = self._name(subscription)
        if pattern:  # heard here first, then known to every process
            if self._global is not None:
                await self._acknowledged(self._global.psubscribe, name)
            try:
                await self._patterns.hold(subscription, True)
            except Exception as exc:  # the cluster is away: the next look renews it
                logger.debug("redis cluster backplane: pattern %r not told: %r", name, exc)
            return
        node = self._owner(name)
        if node is not None and node.pubsub is not None:
            node.subscribed.add(name)
            await self._acknowledged(node.pubsub.ssubscribe, name)

    async def unsubscribe(self, subscription: str) -> None:
        self._desired.discard(subscription)
        name, pattern = self._name(subscription)
        if pattern:
            if self._global is not None:
                with suppress(Exception):
                    await within(self._global.punsubscribe(name), self.command_timeout)
            with suppress(Exception):
                await self._patterns.hold(subscription, False)
            return
        node = self._owner(name)
        if node is not None and node.pubsub is not None and name in node.subscribed:
            node.subscribed.discard(name)
            with suppress(Exception):
                await within(node.pubsub.sunsubscribe(name), self.command_timeout)

    async def _listen_node(self, node: Node) -> None:
        """Hold the node's shard of the topics on one pub/sub connection, whatever happens."""
        backoff = Backoff(0.05, self.max_backoff)
        while not self._stopping:
            pubsub: Any = node.subscriber.pubsub()
            try:
                await within(pubsub.connect(), self.connect_timeout)
                node.subscribed = set()
                node.dirty = True
                while True:
                    if node.dirty:
                        node.dirty = False
                        await self._hold_shard(node, pubsub)
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "sunsubscribe":  # asked, or the slot moved
                        name = message["channel"].decode()
                        node.subscribed.discard(name)
                        if untagged(name[len(self.prefix) :]) in self._desired:
                            # The slot moved: read the map, hold the topic on its new
                            # node, then resume the histories (publications may have
                            # gone by meanwhile, as in a reconnection).
                            self._resync = self._lost_since = True
                            self._wake.set()
                    else:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever Redis or the network did: never die
                self._lost(exc)
                self._wake.set()
            finally:
                node.pubsub = None
                self._ready.clear()
                with suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff.next())

    async def _hold_shard(self, node: Node, pubsub: Any) -> None:
        """Subscribe the connection to the node's desired topics, and nothing else."""
        added = node.pubsub is None
        while True:
            wanted = {
                name
                for name, pattern in map(self._name, self._desired)
                if not pattern and self._owner(name) is node
            }
            missing, extra = wanted - node.subscribed, node.subscribed - wanted
            if not missing and not extra:
                break
            # One command per slot: Redis refuses shard channels of two slots in one.
            for names in by_slot(extra):
                node.subscribed -= names
                await within(pubsub.sunsubscribe(*names), self.command_timeout)
            for names in by_slot(missing):
                added = True
                self._pending |= names
                node.subscribed |= names
                await within(pubsub.ssubscribe(*names), self.command_timeout)
        node.pubsub = pubsub
        if added:
            self._reconnected()
        self._subscribed_all()

    # -- patterns, cluster-wide --------------------------------------------------------

    async def _listen_global(self) -> None:
        """Hold the patterns and hear the registry's notices, on one node (any will do)."""
        backoff = Backoff(0.05, self.max_backoff)
        while not self._stopping:
            pubsub: Any = None
            try:
                if not self._nodes:  # the map first: the registry's owner must be known
                    await self._refresh()
                address = next(iter(self._nodes), None) or self._known[0]
                pubsub = self._client(*address, False).pubsub()
                await within(pubsub.connect(), self.connect_timeout)
                await within(pubsub.subscribe(self._patterns.key), self.command_timeout)
                patterns = [self._name(s)[0] for s in self._desired if is_pattern(s)]
                if patterns:
                    self._pending |= set(patterns)
                    await within(pubsub.psubscribe(*patterns), self.command_timeout)
                self._global = pubsub
                await self._patterns.read()
                self._subscribed_all()
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    if channel == self._patterns.key:
                        if message["type"] == "message":
                            answer = self._patterns.notice(message["data"].decode())
                            if answer is not None:  # off this task: it only listens
                                self._spawn(self._patterns.answer(answer))
                    else:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)
                self._wake.set()
            finally:
                self._global = None
                self._ready.clear()
                if pubsub is not None:  # its client's own pool: closed with it
                    with suppress(Exception):
                        await pubsub.aclose()
                    with suppress(Exception):
                        await pubsub.connection_pool.disconnect()
            await asyncio.sleep(backoff.next())

    async def _command(self, key: str, *args: Any) -> Any:
        """One command of ``key`` on its owner, a redirection followed."""
        from redis.exceptions import AskError

        for _ in range(3):
            node = self._owner(key)
            if node is None:
                break
            try:
                return await within(node.commands.execute_command(*args), self.command_timeout)
            except AskError as exc:
                self._moved(exc)
                await self._refresh()
        raise ConnectionError("no cluster node owns the registry's slot")
