"""RedisBackplane: Redis pub/sub, with one supervised listener that never dies.

The Lua scripts are in ``_scripts``, the calls of them (history, presence,
``once`` requests) in ``_redis_store``, the batching of publishes and script
calls in ``_pipeline``.

Over 300 lines: pub/sub with its supervised listener, the bounded publish
buffer, and the round trips of the scripts' calls, which publish through the
same channels the listener hears and share one connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from time import monotonic, perf_counter
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from .._history import Position
from .._retry import Backoff, Tally
from .._tasks import within
from .._wildcards import is_pattern
from ._base import Backplane, Receiver, Resumed
from ._pipeline import Pipeline
from ._redis_store import Call, RedisStore, call_all, call_one, fail_calls
from ._sentinel import SENTINEL_SCHEMES, Sentinels

__all__ = ["RedisBackplane"]

logger = logging.getLogger("wsevents.backplane")

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def redis_glob(pattern: str) -> str:
    """Translate an MQTT pattern to a Redis glob that matches at least what it matches.

    ``+`` becomes ``*`` (which also crosses ``/``) and a final ``#`` becomes a
    trailing ``*``; the app filters what arrives with MQTT's exact rules.
    """
    if pattern == "#":
        return "*"
    tail = ""
    if pattern.endswith("/#"):
        pattern, tail = pattern[:-2], "*"
    levels = pattern.split("/")
    glob = ["*" if level == "+" else level.translate(_GLOB_SPECIAL) for level in levels]
    return "/".join(glob) + tail


class RedisBackplane(RedisStore, Backplane):
    """Redis pub/sub through ``redis.asyncio``.

    The URL is redis-py's (``redis://[:password@]host:port/db``, ``rediss://``,
    ``unix://``), or ``redis+sentinel://host:port[,host:port...]/SERVICE[/db]``
    for the master Sentinel names (``_sentinel``: followed across a failover,
    ``sentinel_check`` seconds between two looks, 1.0), with wsevents' own
    options in its query string:

    - ``prefix`` (``wsevents:``): put before every Redis channel name, to
      share one Redis between apps;
    - ``connect_timeout`` (1.0 s) and ``command_timeout`` (1.0 s): how long a
      connection attempt and a command may take;
    - ``max_backoff`` (1.0 s): the longest wait between reconnection attempts
      (they start at 0.05 s, double, and are jittered);
    - ``publish_buffer`` (10,000): publishes waiting for Redis. ``publish``
      never waits on Redis: it queues, and one task sends what is queued in
      pipelines, in order. A publish that finds the buffer full (Redis is
      slow or frozen) is dropped and counted in ``stats["publish_overflows"]``.
    - ``once_lease`` (15.0 s): how long a ``once`` request's claim holds
      after its run last renewed it; a request whose process died runs
      again after this.
    - ``publish_retry_for`` (10.0 s): how long a pipeline of publishes whose
      round trip timed out is tried again while Redis is there (counted in
      ``stats["publish_retries"]``); receivers drop a message heard twice.

    A publication to a history topic is confirmed instead: ``append`` waits
    for Redis to number and keep it. History and presence are Lua scripts, and
    one task sends the calls made while a round trip is out together in the
    next (a pipeline of scripts, as Centrifugo's broker auto-pipelines), so
    concurrent publishers, subscribers and leavers share round trips and one
    connection (redis-py's pool refuses its 101st connection at once).

    A listener task holds the subscriptions. When Redis goes away it logs
    once, counts a reconnect, retries with backoff and jitter, and
    resubscribes to everything when Redis is back. ``publish`` during the
    outage fails fast: it is logged and counted (``stats``), never raised.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import redis.asyncio as redis
            from redis import exceptions
        except ImportError as exc:  # tests/test_packaging.py runs this without redis
            raise ImportError(
                "the Redis backplane needs redis-py: pip install 'wsevents[redis]'"
            ) from exc
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        self.prefix = options.pop("prefix", "wsevents:")
        self.connect_timeout = float(options.pop("connect_timeout", 1.0))
        self.command_timeout = float(options.pop("command_timeout", 1.0))
        self.max_backoff = float(options.pop("max_backoff", 1.0))
        self.publish_buffer = int(options.pop("publish_buffer", 10_000))
        self.publish_retry_for = float(options.pop("publish_retry_for", 10.0))
        self.once_lease = float(options.pop("once_lease", 15.0))
        self.stats["publish_retries"] = 0
        # Failures of a round trip that may pass: a timeout, a connection that broke.
        self._transient: tuple[type[BaseException], ...] = (
            asyncio.TimeoutError,
            TimeoutError,
            OSError,
            exceptions.TimeoutError,
            exceptions.ConnectionError,
        )
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))
        common: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "retry_on_timeout": False,
            "retry": None,
        }
        # Where Sentinel names the master (redis+sentinel://): who asks it, and watches.
        self._sentinels: Sentinels | None = None
        # The master moved: the listener reconnects (to the new one) at its next look.
        self._switched = False
        self._watcher: asyncio.Task[None] | None = None
        # Set by stop(): a task that outlived its cancel must not connect again (a client
        # stop() closed would open a connection nobody closes).
        self._stopping = False
        self._desired: set[str] = set()
        self._pubsub: Any = None
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._receive: Receiver | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[str] = set()
        self._down_logged = False
        self._failures = Tally()
        # Publishes waiting for Redis, and script calls waiting for their round trip:
        # each sent by one task, what is queued meanwhile together in the next batch.
        self._outgoing: Pipeline[tuple[str, bytes]] = Pipeline(self._send_batch, most=1000)
        self._calls: Pipeline[Call] = Pipeline(
            self._call_batch,
            most=500,
            abandon=lambda calls: fail_calls(calls, "the backplane stopped"),
        )
        self._resumed: Resumed | None = None
        self._lost_since = False  # the listener lost Redis since it last subscribed
        self._clients(redis, parts, options, common)

    def _clients(
        self, redis: Any, parts: SplitResult, options: dict[str, str], common: dict[str, Any]
    ) -> None:
        """Make the clients of the URL's Redis, and register the scripts with them.

        No ``socket_timeout`` on the publisher (redis-py 8 sets 5 s unless told):
        every call through it is bounded by ``within`` (redis-py drops a connection
        whose command was cancelled), and redis-py's own bound runs each command's
        send in ``asyncio.wait_for``, a task per command on Python 3.10 and 3.11.
        """
        if parts.scheme.lower() in SENTINEL_SCHEMES:
            check = float(options.pop("sentinel_check", 1.0))
            self._sentinels = Sentinels(parts, options, common, check)
            self.failover_guard = "1"
            self._publisher = self._sentinels.client(socket_timeout=None)
            # No read timeout on the subscriber: it waits; health checks find a dead peer.
            self._subscriber = self._sentinels.client(health_check_interval=5)
        else:
            clean = urlunsplit(parts._replace(query=urlencode(options)))
            self._publisher = redis.Redis.from_url(clean, socket_timeout=None, **common)
            self._subscriber = redis.Redis.from_url(clean, health_check_interval=5, **common)
        # The scripts, known to redis-py by their SHA (loaded again on NOSCRIPT).
        self.register_scripts(self._publisher.register_script)

    def __repr__(self) -> str:
        return f"RedisBackplane({self.url!r})"

    def _name(self, subscription: str) -> tuple[str, bool]:
        if is_pattern(subscription):
            return self.prefix + redis_glob(subscription), True
        return self.prefix + subscription, False

    async def start(self, receive: Receiver, resumed: Resumed | None = None) -> None:
        self._new_ready()
        self._stopping = False
        self._receive = receive
        self._resumed = resumed
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen())
        if self._sentinels is not None:
            self._watcher = loop.create_task(self._watch(self._sentinels))
        self._outgoing.start()
        self._calls.start()

    async def stop(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        bound = self.connect_timeout + self.command_timeout
        watcher, self._watcher = self._watcher, None
        for task in (watcher, listener):
            if task is not None:
                await finish(task, bound)
        await self._outgoing.stop(bound)
        await self._calls.stop(bound)
        if self._pubsub is not None:  # what is queued, once, bounded
            await self._outgoing.flush()
        self._outgoing.clear()
        self._calls.clear()
        self._ready.clear()
        for client in (self._publisher, self._subscriber):
            with suppress(Exception):
                await client.aclose()  # each disconnect bounded by redis-py
        if self._sentinels is not None:
            with suppress(Exception):
                await self._sentinels.close()

    async def subscribe(self, subscription: str) -> None:
        self._desired.add(subscription)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes to everything desired when it connects
        name, pattern = self._name(subscription)
        await self._acknowledged(pubsub.psubscribe if pattern else pubsub.subscribe, name)

    async def _acknowledged(self, command: Callable[[str], Awaitable[Any]], name: str) -> None:
        """Send a subscribe ``command`` for ``name``; wait (bounded) until Redis says so."""
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.setdefault(name, []).append(acknowledged)
        try:
            await within(command(name), self.command_timeout)
            await within(asyncio.shield(acknowledged), self.command_timeout)
        except Exception as exc:  # the listener resubscribes after it reconnects
            logger.debug("redis backplane: subscribe %r not acknowledged: %r", name, exc)
        finally:
            waiting = self._acks.get(name, [])
            if acknowledged in waiting:
                waiting.remove(acknowledged)

    async def unsubscribe(self, subscription: str) -> None:
        self._desired.discard(subscription)
        pubsub = self._pubsub
        if pubsub is None:
            return
        name, pattern = self._name(subscription)
        command = pubsub.punsubscribe if pattern else pubsub.unsubscribe
        with suppress(Exception):
            await within(command(name), self.command_timeout)

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._pubsub is None:  # Redis is away: fail fast rather than wait on a timeout
            self._publish_failed("Redis is not connected")
            return
        if len(self._outgoing) >= self.publish_buffer:
            self._overflowed(len(self._outgoing))
            return
        self._outgoing.put((topic, payload))
        await self._outgoing.turn()

    def _overflowed(self, queued: int) -> None:
        """A publish dropped: ``queued`` wait for Redis already."""
        self.stats["publish_overflows"] += 1
        if self._failures.add("overflow"):
            logger.warning(
                "redis backplane: %d publishes waiting for Redis; dropped one (%d so far)",
                queued,
                self.stats["publish_overflows"],
            )

    async def send(self, topic: str, payload: bytes) -> int:
        if self._pubsub is None:
            raise ConnectionError("Redis is not connected")
        receivers: int = await within(
            self._publisher.publish(self.prefix + topic, payload), self.command_timeout
        )
        self.stats["published"] += 1
        self.stats["publish_receivers"] += receivers
        return receivers

    async def _send_batch(self, batch: list[tuple[str, bytes]]) -> None:
        """Send up to 1,000 queued publishes in one pipeline; retry one that timed out.

        A round trip that timed out or lost its connection while the listener
        still holds Redis is tried again (with backoff, for ``publish_retry_for``
        seconds): a process whose event loop was busy past ``command_timeout``
        had lost whole batches. Redis may have run the first try; the receivers
        drop a message heard twice by its id. While Redis is away (the listener
        lost it) the batch fails at once, as a publish made then does.
        """
        started = monotonic()
        backoff = Backoff(0.05, self.max_backoff)
        while True:
            try:
                pipeline = self._publisher.pipeline(transaction=False)
                for topic, payload in batch:
                    pipeline.publish(self.prefix + topic, payload)
                sent = perf_counter()
                receivers = await within(pipeline.execute(), self.command_timeout)
                if self.round_trip is not None:
                    self.round_trip(perf_counter() - sent)
            except self._transient as exc:
                if self._pubsub is None or monotonic() - started > self.publish_retry_for:
                    self._publish_failed(repr(exc), len(batch))
                    return
                self.stats["publish_retries"] += len(batch)
                await asyncio.sleep(backoff.next())
                continue
            except Exception as exc:
                self._publish_failed(repr(exc), len(batch))
                return
            stats = self.stats
            stats["published"] += len(batch)
            stats["publish_receivers"] += sum(receivers)
            return

    def _publish_failed(self, why: str, count: int = 1) -> None:
        failures = self.stats["publish_failures"] = self.stats["publish_failures"] + count
        if self._failures.add("publish", count):
            logger.warning("redis backplane: publish failed (%s); %d so far", why, failures)

    async def _listen(self) -> None:
        backoff = Backoff(0.05, self.max_backoff)
        while not self._stopping:
            pubsub: Any = self._subscriber.pubsub()
            try:
                await within(pubsub.connect(), self.connect_timeout)
                with suppress(Exception):  # the publisher's connection, before the first publish
                    await within(self._publisher.ping(), self.command_timeout)
                await self._resubscribe(pubsub)
                backoff.reset()
                while True:
                    if self._switched:  # the sentinels named another master
                        self._switched = False
                        raise ConnectionError("the master moved")
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever Redis or the network did: never die
                self._lost(exc)
            finally:
                self._pubsub = None
                self._ready.clear()
                with suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff.next())  # jittered, never above max_backoff

    async def _watch(self, sentinels: Sentinels) -> None:
        """Ask the sentinels where the master is, every ``sentinel_check`` seconds.

        When it moved (a failover, also one that left the old master alive),
        every connection to the old one is dropped: the next ones go to the new.
        """
        while not self._stopping:
            try:
                # Bounded by the sentinels' socket timeouts, never cancelled midway: a
                # cancel inside redis-py's connect could leave a connection unclosed.
                moved = await sentinels.moved()
            except Exception as exc:  # no sentinel names one: a failover under way
                if self._failures.add("sentinel"):
                    logger.warning("redis backplane: no master named by the sentinels (%r)", exc)
                moved = False
            if moved:
                logger.warning(
                    "redis backplane: the sentinels moved the master of %r to %s:%s",
                    sentinels.service,
                    *(sentinels.master or ("?", "?")),
                )
                self._switched = True
                with suppress(Exception):
                    await self._publisher.connection_pool.disconnect()
            await asyncio.sleep(sentinels.check)

    async def _resubscribe(self, pubsub: Any) -> None:
        """Subscribe a new connection to everything desired, those added meanwhile included.

        ``subscribe`` only notes a subscription while the listener is here
        (there is no connection to send it on yet), so this sends what was
        desired, then what was added while it sent, until nothing is missing;
        the last look and handing the connection over happen with no await
        between them. (redis-py's own re-subscription records a channel only
        once its command was written, so a subscription made while Redis is
        away would be lost: the desired set stays ours.)
        """
        self._pending = set()
        sent: set[str] = set()
        while missing := self._desired - sent:
            names = [self._name(subscription) for subscription in missing]
            self._pending |= {name for name, _ in names}
            channels = [name for name, pattern in names if not pattern]
            patterns = [name for name, pattern in names if pattern]
            if channels:
                await within(pubsub.subscribe(*channels), self.command_timeout)
            if patterns:
                await within(pubsub.psubscribe(*patterns), self.command_timeout)
            sent |= missing
        self._pubsub = pubsub
        self._reconnected()
        self._subscribed_all()

    def _reconnected(self) -> None:
        """A listener holds its subscriptions again: say so, and resume the histories."""
        if self._down_logged:
            logger.warning("redis backplane: reconnected to %s", self.url)
            self._down_logged = False
        if self._lost_since:
            self._lost_since = False
            if self._resumed is not None:
                self._resumed()

    def _subscribed_all(self) -> None:
        """Ready once Redis acknowledged every subscription sent."""
        if not self._pending:
            self._ready.set()

    def _topic_of(self, name: str, kind: str) -> str:
        """The topic of a message heard on the Redis channel ``name``."""
        return name[len(self.prefix) :]

    def _lost(self, exc: Exception) -> None:
        self.stats["reconnects"] += 1
        self._lost_since = True
        if not self._down_logged:
            logger.warning("redis backplane: %s unreachable (%r); reconnecting", self.url, exc)
            self._down_logged = True

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind in ("message", "pmessage", "smessage"):
            if self._receive is not None and name.startswith(self.prefix):
                self.stats["received"] += 1
                data: bytes = message["data"]
                position = None
                try:
                    if data[:1] == b"H":  # a history publication: H<offset>:<epoch>:<payload>
                        offset, epoch, data = data[1:].split(b":", 2)
                        position = Position(epoch.decode(), int(offset))
                    self._receive(self._topic_of(name, kind), data, position)
                except Exception:  # the receiver's bug must not cost the subscriptions
                    logger.exception("redis backplane: the receiver failed on %r", name)
        elif kind in ("subscribe", "psubscribe", "ssubscribe"):
            for acknowledged in self._acks.pop(name, ()):
                if not acknowledged.done():
                    acknowledged.set_result(None)
            self._pending.discard(name)
            self._subscribed_all()

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script in Redis; calls made meanwhile share the round trip.

        With nothing queued or out, the call goes from the caller's task at once.
        """
        calls = self._calls
        if not calls.running:
            raise ConnectionError("the Redis backplane is not running")
        if calls.idle:
            return await calls.alone(self._call_now(script, keys, args))
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        calls.put((script, keys, args, answered))
        return await answered

    async def _call_now(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return await call_one(self._publisher, script, keys, args, self.command_timeout)

    async def _call_batch(self, batch: list[Call]) -> None:
        await call_all(self._publisher, batch, self.command_timeout)


async def finish(task: asyncio.Task[Any], bound: float) -> None:
    """Cancel ``task`` and wait for it, ``bound`` seconds at a time, three times at most.

    redis-py may swallow a cancellation that lands mid-connect: the task then
    goes on to its next look at ``_stopping``, and ends there.
    """
    for _ in range(3):
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=bound)
