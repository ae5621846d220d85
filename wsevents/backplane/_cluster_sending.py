"""How a Redis Cluster backplane sends: publishes and script calls, node by node.

A mixin of :class:`~wsevents.backplane.cluster.RedisClusterBackplane`. Each
primary's :class:`Node` has a pipeline of publishes and one of script calls,
so a shard that fails over holds back its own topics only; what Redis
redirects (``MOVED``, ``ASK``, ``TRYAGAIN``) or what a failed round trip
leaves goes again, to the slot's owner once the map is read again.
(redis-py's ``ClusterPipeline`` is not used: on a retry it resends the
commands whose result was falsy, and an ``SPUBLISH`` that reached nobody
would go out twice.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from time import monotonic, perf_counter
from typing import Any

from .._retry import Backoff
from .._tasks import within
from ._cluster_patterns import Patterns
from ._pipeline import Pipeline
from ._redis_store import Call, answer, evalsha_all, fail_calls
from ._slots import Address, tagged

__all__ = ["ClusterSending", "Node"]


class Node:
    """One primary: its clients, its pipelines, its pub/sub connection and its shard's topics."""

    def __init__(self, address: Address, commands: Any, subscriber: Any) -> None:
        self.address = address
        self.commands = commands  # each call bounded by ``within``
        self.subscriber = subscriber  # without one: a pub/sub connection waits
        self.outgoing: Pipeline[tuple[str, bytes]] | None = None
        self.calls: Pipeline[Call] | None = None
        self.listener: asyncio.Task[None] | None = None
        self.pubsub: Any = None  # connected and subscribed, else None
        self.subscribed: set[str] = set()  # shard channels held on the current connection
        self.dirty = False  # the topics it should hold may have changed


class ClusterSending:
    """Publishes and script calls sent to the node that owns each one's slot."""

    prefix: str
    command_timeout: float
    max_backoff: float
    publish_buffer: int
    publish_retry_for: float
    stats: dict[str, Any]
    round_trip: Callable[[float], None] | None
    _transient: tuple[type[BaseException], ...]
    _stopping: bool
    _wake: asyncio.Event
    _patterns: Patterns
    _owner: Callable[[str], Node | None]
    _moved: Callable[[Any], None]
    _refresh: Callable[[], Any]
    _client: Callable[[str, int, bool], Any]
    _publish_failed: Callable[..., None]
    _overflowed: Callable[[int], None]

    # -- publishing --------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes) -> None:
        node = self._owner(tagged(topic))
        if node is None or node.outgoing is None:
            self._publish_failed("no cluster node owns the topic's slot yet")
            return
        if len(node.outgoing) >= self.publish_buffer:
            self._overflowed(len(node.outgoing))
            return
        node.outgoing.put((topic, payload))
        await node.outgoing.turn()

    async def send(self, topic: str, payload: bytes) -> int:
        """SPUBLISH now, to the topic's shard, and PUBLISH the cluster-wide copy where a
        pattern matches: how many deliveries, as on one Redis (each process holding the
        topic once, and once more for each pattern it holds that matches).

        A cluster-wide PUBLISH answers only for its own node, so the pattern
        holders are counted from the registry (every process alive that holds
        the pattern; one that died without saying so is counted until its
        entry expires).
        """
        from redis.exceptions import AskError, ClusterDownError, TryAgainError

        for _ in range(3):
            node = self._owner(tagged(topic))
            if node is None:
                break
            try:
                receivers: int = await within(
                    node.commands.execute_command("SPUBLISH", self.prefix + tagged(topic), payload),
                    self.command_timeout,
                )
            except AskError as exc:  # MOVED is one: a pub/sub channel is never asked
                self._moved(exc)
                await self._refresh()
                continue
            except (TryAgainError, ClusterDownError):
                await asyncio.sleep(0.05)
                continue
            if self._patterns.matched(topic):
                await within(
                    node.commands.publish(self.prefix + topic, payload), self.command_timeout
                )
                receivers += self._patterns.holders(topic)
            self.stats["published"] += 1
            self.stats["publish_receivers"] += receivers
            return receivers
        raise ConnectionError("no cluster node owns the topic's slot")

    async def _send_node(self, node: Node, batch: list[tuple[str, bytes]]) -> None:
        """SPUBLISH a batch on its node; what was redirected or failed goes again.

        A round trip that failed is tried again (for ``publish_retry_for``
        seconds) once the map is read again: a publication of a shard that
        fails over waits for the promoted replica; one whose slot moved goes
        to its new owner's pipeline.
        """
        from redis.exceptions import ResponseError

        started = monotonic()
        backoff = Backoff(0.05, self.max_backoff)
        while batch:
            again: list[tuple[str, bytes]] = []
            try:
                pipeline = node.commands.pipeline(transaction=False)
                matched = []
                for topic, payload in batch:
                    pipeline.execute_command("SPUBLISH", self.prefix + tagged(topic), payload)
                    matched.append(self._patterns.matched(topic))
                    if matched[-1]:
                        pipeline.publish(self.prefix + topic, payload)
                sent = perf_counter()
                results = iter(
                    await within(pipeline.execute(raise_on_error=False), self.command_timeout)
                )
                if self.round_trip is not None:
                    self.round_trip(perf_counter() - sent)
            except self._transient as exc:
                again, why = batch, repr(exc)
            else:
                why = "redirected"
                for item, both in zip(batch, matched, strict=True):
                    result = next(results)
                    if both:
                        next(results)
                    if isinstance(result, ResponseError):
                        again.append(item)
                        why = repr(result)
                    else:
                        self.stats["published"] += 1
                        self.stats["publish_receivers"] += result
            if not again:
                return
            self._wake.set()
            if self._stopping or monotonic() - started > self.publish_retry_for:
                self._publish_failed(why, len(again))
                return
            self.stats["publish_retries"] += len(again)
            await asyncio.sleep(backoff.next())
            with suppress(Exception):
                await self._refresh()
            batch = [item for item in again if self._route(item, node)]

    def _route(self, item: tuple[str, bytes], node: Node) -> bool:
        """Whether ``item`` is still ``node``'s; if not, it goes to its owner's pipeline."""
        owner = self._owner(tagged(item[0]))
        if owner is None or owner is node or owner.outgoing is None:
            return True
        owner.outgoing.put(item)
        return False

    def _abandoned_publishes(self, batch: list[tuple[str, bytes]]) -> None:
        if self._stopping:
            self._publish_failed("the backplane stopped", len(batch))
            return
        for item in batch:  # a retired node's: to the topics' owners now
            owner = self._owner(tagged(item[0]))
            if owner is not None and owner.outgoing is not None and owner.outgoing.running:
                owner.outgoing.put(item)
            else:
                self._publish_failed("no cluster node owns the topic's slot")

    # -- scripts -----------------------------------------------------------------------

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        node = self._owner(keys[0])
        if node is None or node.calls is None or not node.calls.running:
            raise ConnectionError("no cluster node owns the key's slot yet")
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        node.calls.put((script, keys, args, answered))
        return await answered

    async def _call_node(self, node: Node, batch: list[Call]) -> None:
        """Run a batch of script calls on their node; a redirected one follows."""
        from redis.exceptions import AskError, ClusterDownError, NoScriptError, TryAgainError

        batch = [call for call in batch if not call[3].done()]
        try:
            results = await evalsha_all(node.commands, batch, self.command_timeout)
        except Exception as exc:
            self._wake.set()
            fail_calls(batch, repr(exc))
            return
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, (NoScriptError, AskError, TryAgainError, ClusterDownError)):
                try:
                    result = await self._call_again(node, call, result)
                except Exception as exc:
                    result = exc
            answer(call[3], result)

    async def _call_again(self, node: Node, call: Call, error: Exception) -> Any:
        """One call again until it runs, for ``publish_retry_for`` seconds at most.

        By its text where the node lacked the script; at the slot's owner where
        MOVED; at the importing node, after ``ASKING``, where ASK (the slot is
        migrating and its keys are not all here); after a pause where TRYAGAIN
        or CLUSTERDOWN (a migration or a failover under way).
        """
        from redis.exceptions import (
            AskError,
            ClusterDownError,
            MovedError,
            NoScriptError,
            TryAgainError,
        )

        script, keys, args, _answered = call
        deadline = monotonic() + self.publish_retry_for
        backoff = Backoff(0.02, self.max_backoff)
        while True:
            asked = None
            if monotonic() > deadline:
                raise error
            if isinstance(error, MovedError):
                self._moved(error)
                await self._refresh()
                owner = self._owner(keys[0])
                if owner is None:
                    raise ConnectionError("no cluster node owns the key's slot")
                node = owner
            elif isinstance(error, AskError):
                asked = error
            elif isinstance(error, (TryAgainError, ClusterDownError)):
                await asyncio.sleep(backoff.next())
            elif not isinstance(error, NoScriptError):
                raise error
            result = await self._eval(node, script, keys, args, asked)
            if not isinstance(result, Exception):
                return result
            error = result

    async def _eval(
        self, node: Node, script: Any, keys: list[str], args: list[Any], asked: Any
    ) -> Any:
        """Run ``script`` by its text on ``node``, or on the node an ASK named."""
        client = node.commands if asked is None else self._client(asked.host, asked.port, True)
        try:
            pipeline = client.pipeline(transaction=False)
            if asked is not None:
                pipeline.execute_command("ASKING")
            pipeline.eval(script.text, len(keys), *keys, *args)
            results = await within(pipeline.execute(raise_on_error=False), self.command_timeout)
        finally:
            if asked is not None:
                with suppress(Exception):
                    await client.aclose()
        return results[-1]

    def _abandoned_calls(self, calls: list[Call]) -> None:
        fail_calls(calls, "the backplane stopped" if self._stopping else "the node was retired")
