"""RedisBackplane: Redis pub/sub, with one supervised listener that never dies.

Over 300 lines: pub/sub with its supervised listener, the bounded publish
buffer, history topics' Lua scripts, which publish through the same
channels the listener hears, and presence's, which share one connection.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from time import monotonic
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._history import Position
from .._wildcards import is_pattern
from ._base import Backplane, HistoryRead, Receiver, Resumed
from .memory import EPOCH_TTL, new_epoch

__all__ = ["RedisBackplane"]

logger = logging.getLogger("wsevents.backplane")

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})

# History, as Centrifugo keeps it in Redis: a hash holds the topic's epoch ("e")
# and last offset ("s"), a stream its publications, each at ID "<offset>-0".
# One script gives the offset, keeps the publication and publishes it: every
# process hears a topic's publications in offset order. A third key remembers
# an append's result for a while, so that a retry is not kept twice.
#   KEYS: meta, stream, result     ARGV: payload, size, ttl (ms), channel,
#   new epoch, meta ttl (s), result ttl (ms); returns {offset, epoch}
_APPEND = """
local known = redis.call('hmget', KEYS[3], 'e', 's')
if known[1] then return {tonumber(known[2]), known[1]} end
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
end
local offset = redis.call('hincrby', KEYS[1], 's', 1)
redis.call('expire', KEYS[1], ARGV[6])
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('publish', ARGV[4], 'H' .. offset .. ':' .. epoch .. ':' .. ARGV[1])
redis.call('hset', KEYS[3], 'e', epoch, 's', offset)
redis.call('pexpire', KEYS[3], ARGV[7])
return {offset, epoch}
"""
#   KEYS: meta, stream     ARGV: first ID (or '-'), limit, new epoch, meta ttl (s)
#   returns {offset, epoch, entries}; a topic without an epoch gets one
_READ = """
local meta = redis.call('hmget', KEYS[1], 'e', 's')
local epoch, offset = meta[1], tonumber(meta[2])
if not epoch then
  epoch, offset = ARGV[3], 0
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
  redis.call('expire', KEYS[1], ARGV[4])
end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('xrange', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {offset, epoch, entries}
"""
#   KEYS: meta, stream     ARGV: delivered epoch, delivered offset, new epoch, meta ttl (s)
#   returns {offset, epoch}: a new epoch where the topic has none or stands behind
_RENEW = """
local meta = redis.call('hmget', KEYS[1], 'e', 's')
if not meta[1] or (meta[1] == ARGV[1] and tonumber(meta[2]) < tonumber(ARGV[2])) then
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', ARGV[3], 's', 0)
  redis.call('expire', KEYS[1], ARGV[4])
  return {0, ARGV[3]}
end
return {tonumber(meta[2]), meta[1]}
"""

# Presence, as Centrifugo keeps it: a sorted set of members by expiry (ms, Redis'
# clock) and a hash of their info; and, for the diffs, a counter of changes and a
# stream of them, each at ID "<number>-0". Every script removes expired members
# first, logging each as left with its info.
#   KEYS: expiries, infos, log, counter
_PRESENCE_COMMON = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function change(kind, member, info)
  local seq = redis.call('incr', KEYS[4])
  redis.call('xadd', KEYS[3], 'MAXLEN', '~', 10000, seq .. '-0', 'k', kind, 'm', member, 'i', info)
end
local gone = redis.call('zrangebyscore', KEYS[1], '-inf', now)
for _, member in ipairs(gone) do
  change('l', member, redis.call('hget', KEYS[2], member) or '{}')
  redis.call('hdel', KEYS[2], member)
end
if #gone > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', now) end
local function keep(seconds)
  for i = 1, 4 do redis.call('expire', KEYS[i], seconds) end
end
"""
#   ARGV: ttl (ms), keys' ttl (s), 'r' (a refresh: a member there keeps its info) or 'j',
#   then member, info, member, info...
_PRESENCE_SET = (
    _PRESENCE_COMMON
    + """
local expiry = now + tonumber(ARGV[1])
local refresh = ARGV[3] == 'r'
for i = 4, #ARGV, 2 do
  local member, info = ARGV[i], ARGV[i + 1]
  local added = redis.call('zadd', KEYS[1], expiry, member) == 1
  if (added or not refresh) and redis.call('hget', KEYS[2], member) ~= info then
    redis.call('hset', KEYS[2], member, info)
    change('j', member, info)
  end
end
keep(ARGV[2])
return tonumber(redis.call('get', KEYS[4]) or '0')
"""
)
#   ARGV: members...
_PRESENCE_REMOVE = (
    _PRESENCE_COMMON
    + """
for i = 1, #ARGV do
  local info = redis.call('hget', KEYS[2], ARGV[i])
  if info then
    redis.call('hdel', KEYS[2], ARGV[i])
    redis.call('zrem', KEYS[1], ARGV[i])
    change('l', ARGV[i], info)
  end
end
return 0
"""
)
#   ARGV: after, limit; returns {seq, entries} (entries false: read the members)
_PRESENCE_CHANGES = (
    _PRESENCE_COMMON
    + """
local seq = tonumber(redis.call('get', KEYS[4]) or '0')
local after = tonumber(ARGV[1])
if after == seq then return {seq, {}} end
if after > seq or seq - after > tonumber(ARGV[2]) then return {seq, false} end
local entries = redis.call('xrange', KEYS[3], after .. '-1', '+', 'COUNT', ARGV[2])
if #entries ~= seq - after then return {seq, false} end
return {seq, entries}
"""
)
#   returns {seq, {member, info, ...}}
_PRESENCE_MEMBERS = (
    _PRESENCE_COMMON
    + """
return {tonumber(redis.call('get', KEYS[4]) or '0'), redis.call('hgetall', KEYS[2])}
"""
)
#   KEYS: expiries; returns the members that have not expired, without reading them
_PRESENCE_COUNT = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('zcount', KEYS[1], '(' .. now, '+inf')
"""


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


class RedisBackplane(Backplane):
    """Redis pub/sub through ``redis.asyncio``.

    The URL is redis-py's (``redis://[:password@]host:port/db``, ``rediss://``,
    ``unix://``), with wsevents' own options in its query string:

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
        except ImportError as exc:  # pragma: no cover - redis is a dev dependency
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
        self.stats["publish_retries"] = 0
        # Failures of a round trip that may pass: a timeout, a connection that broke.
        self._transient: tuple[type[BaseException], ...] = (
            asyncio.TimeoutError,
            TimeoutError,
            OSError,
            exceptions.TimeoutError,
            exceptions.ConnectionError,
        )
        clean = urlunsplit(parts._replace(query=urlencode(options)))
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))
        common: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "retry_on_timeout": False,
            "retry": None,
        }
        self._publisher = redis.Redis.from_url(clean, socket_timeout=self.command_timeout, **common)
        # No read timeout on the subscriber: it waits for messages; health checks find a dead peer.
        self._subscriber = redis.Redis.from_url(clean, health_check_interval=5, **common)
        self._desired: set[str] = set()
        self._pubsub: Any = None
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._receive: Receiver | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[str] = set()
        self._down_logged = False
        self._outgoing: deque[tuple[str, bytes]] = deque()
        self._outgoing_ready: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._resumed: Resumed | None = None
        self._lost_since = False  # the listener lost Redis since it last subscribed
        # Script calls waiting for their round trip, and the one task that sends them.
        self._calls: deque[_Call] = deque()
        self._calls_ready: asyncio.Event | None = None
        self._caller: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RedisBackplane({self.url!r})"

    def _name(self, subscription: str) -> tuple[str, bool]:
        if is_pattern(subscription):
            return self.prefix + redis_glob(subscription), True
        return self.prefix + subscription, False

    async def start(self, receive: Receiver, resumed: Resumed | None = None) -> None:
        self._new_ready()
        self._receive = receive
        self._resumed = resumed
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen())
        self._outgoing_ready = asyncio.Event()
        self._sender = loop.create_task(self._send_outgoing(self._outgoing_ready))
        self._calls_ready = asyncio.Event()
        self._caller = loop.create_task(self._send_calls(self._calls_ready))

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        sender, self._sender = self._sender, None
        caller, self._caller = self._caller, None
        for ready in (self._outgoing_ready, self._calls_ready):
            if ready is not None:
                ready.set()  # wakes a sender whose command swallowed the cancel
        for task in (listener, sender, caller):
            if task is not None:
                task.cancel()
                # Bounded: redis-py may swallow a cancellation that lands mid-connect.
                await asyncio.wait({task}, timeout=self.connect_timeout + self.command_timeout)
        if self._outgoing and self._pubsub is not None:  # what is queued, once, bounded
            await self._send_batch()
        self._outgoing.clear()
        _fail(self._calls, "the backplane stopped")
        self._calls.clear()
        self._ready.clear()
        for client in (self._publisher, self._subscriber):
            with suppress(Exception):
                await asyncio.wait_for(client.aclose(), self.command_timeout)

    async def subscribe(self, subscription: str) -> None:
        self._desired.add(subscription)
        pubsub = self._pubsub
        if pubsub is None:
            return  # the listener subscribes to everything desired when it connects
        name, pattern = self._name(subscription)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.setdefault(name, []).append(acknowledged)
        try:
            command = pubsub.psubscribe if pattern else pubsub.subscribe
            await asyncio.wait_for(command(name), self.command_timeout)
            await asyncio.wait_for(asyncio.shield(acknowledged), self.command_timeout)
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
            await asyncio.wait_for(command(name), self.command_timeout)

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._pubsub is None:  # Redis is away: fail fast rather than wait on a timeout
            self._publish_failed("Redis is not connected")
            return
        if len(self._outgoing) >= self.publish_buffer:
            self.stats["publish_overflows"] += 1
            overflows = self.stats["publish_overflows"]
            if overflows == 1 or overflows % 1000 == 0:
                logger.warning(
                    "redis backplane: %d publishes waiting for Redis; dropped one (%d so far)",
                    len(self._outgoing),
                    overflows,
                )
            return
        self._outgoing.append((topic, payload))
        if self._outgoing_ready is not None:
            self._outgoing_ready.set()

    async def _send_outgoing(self, ready: asyncio.Event) -> None:
        # One sender: publishes leave in the order they were made, many per round trip.
        while self._sender is not None:
            await ready.wait()
            ready.clear()
            while self._outgoing and self._sender is not None:
                await self._send_batch()

    async def _send_batch(self) -> None:
        """Send up to 1,000 queued publishes in one pipeline; retry one that timed out.

        A round trip that timed out or lost its connection while the listener
        still holds Redis is tried again (with backoff, for ``publish_retry_for``
        seconds): a process whose event loop was busy past ``command_timeout``
        had lost whole batches. Redis may have run the first try; the receivers
        drop a message heard twice by its id. While Redis is away (the listener
        lost it) the batch fails at once, as a publish made then does.
        """
        batch = [self._outgoing.popleft() for _ in range(min(len(self._outgoing), 1000))]
        started = monotonic()
        delay = 0.05
        while True:
            try:
                pipeline = self._publisher.pipeline(transaction=False)
                for topic, payload in batch:
                    pipeline.publish(self.prefix + topic, payload)
                receivers = await asyncio.wait_for(pipeline.execute(), self.command_timeout)
            except self._transient as exc:
                if self._pubsub is None or monotonic() - started > self.publish_retry_for:
                    self._publish_failed(repr(exc), len(batch))
                    return
                self.stats["publish_retries"] += len(batch)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.max_backoff)
                continue
            except Exception as exc:
                self._publish_failed(repr(exc), len(batch))
                return
            stats = self.stats
            stats["published"] += len(batch)
            stats["publish_receivers"] += sum(receivers)
            return

    def _publish_failed(self, why: str, count: int = 1) -> None:
        before = self.stats["publish_failures"]
        failures = self.stats["publish_failures"] = before + count
        if before == 0 or failures // 1000 > before // 1000:
            logger.warning("redis backplane: publish failed (%s); %d so far", why, failures)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            pubsub: Any = self._subscriber.pubsub()
            try:
                await asyncio.wait_for(pubsub.connect(), self.connect_timeout)
                await self._resubscribe(pubsub)
                delay = 0.05
                while True:
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
                    await asyncio.wait_for(pubsub.aclose(), self.command_timeout)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))  # jitter, never above max
            delay = min(delay * 2, self.max_backoff)

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
                await asyncio.wait_for(pubsub.subscribe(*channels), self.command_timeout)
            if patterns:
                await asyncio.wait_for(pubsub.psubscribe(*patterns), self.command_timeout)
            sent |= missing
        self._pubsub = pubsub
        if self._down_logged:
            logger.warning("redis backplane: reconnected to %s", self.url)
            self._down_logged = False
        if not self._pending:
            self._ready.set()
        if self._lost_since:
            self._lost_since = False
            if self._resumed is not None:
                self._resumed()

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
        if kind in ("message", "pmessage"):
            if self._receive is not None and name.startswith(self.prefix):
                self.stats["received"] += 1
                data: bytes = message["data"]
                position = None
                try:
                    if data[:1] == b"H":  # a history publication: H<offset>:<epoch>:<payload>
                        offset, epoch, data = data[1:].split(b":", 2)
                        position = Position(epoch.decode(), int(offset))
                    self._receive(name[len(self.prefix) :], data, position)
                except Exception:  # the receiver's bug must not cost the subscriptions
                    logger.exception("redis backplane: the receiver failed on %r", name)
        elif kind in ("subscribe", "psubscribe"):
            for acknowledged in self._acks.pop(name, ()):
                if not acknowledged.done():
                    acknowledged.set_result(None)
            self._pending.discard(name)
            if not self._pending:
                self._ready.set()

    # -- history -----------------------------------------------------------------------

    def _history_keys(self, topic: str) -> list[str]:
        return [f"{self.prefix}meta:{topic}", f"{self.prefix}history:{topic}"]

    async def append(
        self,
        topic: str,
        payload: bytes,
        *,
        key: str,
        size: int,
        ttl: float,
        retry_for: float = 60.0,
    ) -> Position:
        keys = [*self._history_keys(topic), f"{self.prefix}result:{key}"]
        args: list[bytes | str | int] = [
            payload,
            size,
            max(1, int(ttl * 1000)),
            self.prefix + topic,
            new_epoch(),
            int(EPOCH_TTL),
            max(1, int(retry_for * 1000)),
        ]
        offset, epoch = await self._script(_APPEND, keys, args)
        return Position(_text(epoch), int(offset))

    async def _script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run the Lua ``script`` in Redis; calls made meanwhile share the round trip."""
        if self._caller is None or self._calls_ready is None:
            raise ConnectionError("the Redis backplane is not running")
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append((script, keys, args, answered))
        self._calls_ready.set()
        return await answered

    async def _send_calls(self, ready: asyncio.Event) -> None:
        # One sender: the calls made while a round trip is out leave together in the next,
        # on one connection (redis-py's pool refuses its 101st at once).
        while self._caller is not None:
            await ready.wait()
            ready.clear()
            while self._calls and self._caller is not None:
                batch = [self._calls.popleft() for _ in range(min(len(self._calls), 500))]
                try:
                    await self._call_batch([call for call in batch if not call[3].done()])
                except BaseException:
                    _fail(batch, "the backplane stopped")
                    raise

    async def _call_batch(self, batch: list[_Call]) -> None:
        """Run each call of ``batch`` in one pipeline; answer each caller."""
        from redis.exceptions import NoScriptError  # redis-py is optional: imported once used

        for _ in range(2):  # a second time after loading the scripts into a Redis without them
            try:
                pipeline = self._publisher.pipeline(transaction=False)
                for script, keys, args, _answered in batch:
                    pipeline.evalsha(_sha(script), len(keys), *keys, *args)
                results = await asyncio.wait_for(
                    pipeline.execute(raise_on_error=False), self.command_timeout
                )
            except Exception as exc:
                _fail(batch, repr(exc))
                return
            unknown = []
            for call, result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):  # it did not run: safe to send again
                    unknown.append(call)
                elif not call[3].done():
                    if isinstance(result, Exception):
                        call[3].set_exception(result)
                    else:
                        call[3].set_result(result)
            if not unknown:
                return
            batch = unknown
            try:
                for source in {call[0] for call in unknown}:
                    await asyncio.wait_for(
                        self._publisher.script_load(source), self.command_timeout
                    )
            except Exception as exc:
                _fail(batch, repr(exc))
                return
        _fail(batch, "Redis forgot the scripts twice")

    async def read(self, topic: str, *, after: int | None, limit: int, ttl: float) -> HistoryRead:
        # Entry IDs are "<offset>-0": "<after>-1" is the first ID after offset ``after``.
        start = "-" if after is None else f"{after}-1"
        args: list[bytes | str | int] = [start, limit, new_epoch(), int(EPOCH_TTL)]
        offset, epoch, rows = await self._script(_READ, self._history_keys(topic), args)
        entries = [(int(_text(row[0]).partition("-")[0]), _field(row[1])) for row in rows]
        return HistoryRead(Position(_text(epoch), int(offset)), entries)

    async def new_epoch_if_behind(self, topic: str, delivered: Position) -> Position:
        args: list[bytes | str | int] = [
            delivered.epoch,
            delivered.offset,
            new_epoch(),
            int(EPOCH_TTL),
        ]
        offset, epoch = await self._script(_RENEW, self._history_keys(topic), args)
        return Position(_text(epoch), int(offset))

    # -- presence ----------------------------------------------------------------------

    def _presence_keys(self, topic: str) -> list[str]:
        base = f"{self.prefix}presence:{topic}:"
        return [base + "z", base + "h", base + "log", base + "seq"]

    async def presence_set(
        self, topic: str, members: dict[str, bytes], ttl: float, *, refresh: bool = False
    ) -> int:
        args: list[bytes | str | int] = [
            max(1, int(ttl * 1000)),
            max(60, int(ttl * 3)),
            "r" if refresh else "j",
        ]
        for member, info in members.items():
            args += [member, info]
        return int(await self._script(_PRESENCE_SET, self._presence_keys(topic), args))

    async def presence_remove(self, topic: str, members: list[str]) -> None:
        await self._script(_PRESENCE_REMOVE, self._presence_keys(topic), list(members))

    async def presence_changes(
        self, topic: str, after: int
    ) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        args: list[bytes | str | int] = [after, PRESENCE_LOG]
        seq, rows = await self._script(_PRESENCE_CHANGES, self._presence_keys(topic), args)
        if not rows and rows != []:  # false: the log cannot tell
            return int(seq), None
        changes = []
        for _id, fields in rows:
            entry = _mapping(fields)
            changes.append((_text(entry[b"k"]), _text(entry[b"m"]), bytes(entry[b"i"])))
        return int(seq), changes

    async def presence_members(self, topic: str) -> tuple[int, dict[str, bytes]]:
        seq, flat = await self._script(_PRESENCE_MEMBERS, self._presence_keys(topic), [])
        found = _mapping(flat)
        return int(seq), {_text(member): bytes(info) for member, info in found.items()}

    async def presence_count(self, topic: str) -> int:
        return int(await self._script(_PRESENCE_COUNT, self._presence_keys(topic)[:1], []))


PRESENCE_LOG = 10_000  # changes a reader may be behind before it reads the members instead


def _mapping(fields: list[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A flat list of keys and values, or a mapping (RESP3), as a mapping."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


# A script call waiting for its round trip: the script, its keys and arguments, its caller.
_Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]


@functools.cache
def _sha(script: str) -> str:
    """The SHA1 by which Redis knows a script it has loaded."""
    return hashlib.sha1(script.encode()).hexdigest()


def _fail(calls: Iterable[_Call], why: str) -> None:
    """Answer the callers of ``calls`` still waiting with a ``ConnectionError``."""
    for _script, _keys, _args, answered in calls:
        if not answered.done():
            answered.set_exception(ConnectionError(why))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: list[bytes] | dict[bytes, bytes]) -> bytes:
    """The payload of a stream entry, as a flat list or a mapping (RESP3)."""
    if isinstance(fields, dict):
        return fields[b"d"]
    return fields[1]
