"""History topics in this process: ordered delivery, gap filling, recovery on subscribe.

For every history topic that has subscribers here, :class:`Streams` holds the
position it last delivered. A publication is delivered only right after the
one before it: one that comes early (Redis pub/sub dropped the one between)
waits while the gap is read from the history; one seen before is dropped.
Where the history cannot fill a gap, or the topic's epoch changed, each
subscriber gets ``wsevents.subscribed`` with ``recovered: false`` first.

An exact subscription to a history topic holds its own position (:class:`Held`):
while it subscribes, what arrives is buffered; once the replay is read, the
replay goes out, then ``wsevents.subscribed``, then what was buffered after the
replay's position: none missing, none twice.

Over 300 lines: one topic's ordering, its gap filling, its catching up after
a reconnect and its subscriptions' recovery all move the same position.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._history import History, Position, history_rule
from .exceptions import BackplaneUnavailable

if TYPE_CHECKING:
    from ._session import Session
    from .backplane import Backplane
    from .backplane._base import HistoryRead

__all__ = ["Held", "Streams"]

logger = logging.getLogger("wsevents")

Message = dict[str, Any]
"""A publication as the broker packs it: ``t`` topic, ``e`` event, ``d`` data, ``x`` excluded."""

Deliver = Callable[[str, Position, Message, "dict[Session, Held] | None"], None]
Unpack = Callable[[bytes], Message]

if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[Any], seconds: float) -> Any:
        async with asyncio.timeout(seconds):  # no task per call, unlike wait_for on 3.11
            return await awaitable

else:
    _within = asyncio.wait_for


MAX_EARLY = 10_000  # publications kept waiting for a gap to fill, per topic
RETRY_DELAY = 0.05


class Held:
    """The position an exact subscription holds in its topic; what waits while it subscribes."""

    __slots__ = ("buffer", "epoch", "offset")

    def __init__(self) -> None:
        self.epoch = ""
        self.offset = 0
        # Publications (or, with no message, an epoch change) that came while subscribing.
        self.buffer: list[tuple[Position, Message | None]] | None = []

    def takes(self, position: Position) -> bool:
        """Whether ``position`` is the next this subscription should get; if so, it holds it."""
        if position.epoch != self.epoch or position.offset <= self.offset:
            return False
        self.offset = position.offset
        return True


class _Stream:
    """This process's delivery of one history topic."""

    __slots__ = ("early", "epoch", "filling", "offset", "old_epochs")

    def __init__(self, position: Position) -> None:
        self.epoch, self.offset = position
        self.early: dict[int, Message] = {}
        self.filling: asyncio.Task[None] | None = None
        self.old_epochs: set[str] = set()


class Streams:
    """The history topics of one broker."""

    def __init__(
        self,
        backplane: Backplane,
        rules: tuple[History, ...],
        deliver: Deliver,
        unpack: Unpack,
        subscribed: Callable[[Session, str, Position, bool | None], None],
    ) -> None:
        self.rules = rules
        self._backplane = backplane
        self._deliver = deliver
        self._unpack = unpack
        self._subscribed = subscribed
        self._streams: dict[str, _Stream] = {}
        self.held: dict[str, dict[Session, Held]] = {}  # exact subscriptions, by topic
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the backplane's calls -----------------------------------------------------------

    async def call(self, rule: History, what: str, topic: str, call: Callable[[], Any]) -> Any:
        """Await ``call()`` on the backplane, retried until ``rule.publish_timeout``.

        ``what`` and ``topic`` say what failed, if it does.

        Raises:
            BackplaneUnavailable: it never answered in time.
        """
        if not self._backplane.waits:  # in-process: at once, nothing to bound
            return await call()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rule.publish_timeout
        while True:
            left = deadline - loop.time()
            try:
                return await _within(call(), max(left, 0.001))
            except Exception as exc:
                left = deadline - loop.time()
                if left <= RETRY_DELAY:
                    raise BackplaneUnavailable(
                        f"{what} {topic!r}: the backplane did not confirm within"
                        f" {rule.publish_timeout:g} s ({exc!r})"
                    ) from None
                await asyncio.sleep(RETRY_DELAY)

    async def read(self, rule: History, topic: str, after: int | None, limit: int) -> HistoryRead:
        """The topic's position and its kept publications after ``after``."""
        backplane = self._backplane
        found: HistoryRead = await self.call(
            rule,
            "reading the history of",
            topic,
            lambda: backplane.read(topic, after=after, limit=limit, ttl=rule.ttl),
        )
        return found

    # -- live publications ---------------------------------------------------------------

    def delivered(self, topic: str, position: Position) -> bool:
        """Whether this process delivered ``position`` already (its own publication, echoed)."""
        stream = self._streams.get(topic)
        return (
            stream is not None
            and stream.epoch == position.epoch
            and (position.offset <= stream.offset)
        )

    def arrived(self, topic: str, position: Position, message: Message, wanted: bool) -> None:
        """Take a publication of a history topic, from this process or another.

        ``wanted``: someone here subscribes to ``topic`` (a wildcard
        subscriber's topic gets a stream at its first publication).
        """
        stream = self._streams.get(topic)
        if not wanted:
            if stream is not None:  # its wildcard subscribers left
                self.drop(topic, None, last=True)
            return
        if stream is None:
            stream = self._streams[topic] = _Stream(Position(position.epoch, position.offset - 1))
        if position.epoch != stream.epoch:
            if position.epoch in stream.old_epochs:
                return  # a straggler of an epoch already left
            self._new_epoch(topic, stream, Position(position.epoch, 0))
        if position.offset <= stream.offset or position.offset in stream.early:
            return  # delivered already, or waiting already
        if position.offset == stream.offset + 1 and not stream.early:
            stream.offset = position.offset
            self._deliver(topic, position, message, self.held.get(topic))
            return
        if len(stream.early) >= MAX_EARLY:
            self._skip_gap(topic, stream)
        stream.early[position.offset] = message
        self._drain(topic, stream)
        if stream.early and stream.filling is None:
            stream.filling = self._spawn(self._fill(topic, stream))

    def _drain(self, topic: str, stream: _Stream) -> None:
        early = stream.early
        while early:
            message = early.pop(stream.offset + 1, None)
            if message is None:
                return
            stream.offset += 1
            self._deliver(
                topic, Position(stream.epoch, stream.offset), message, self.held.get(topic)
            )

    def _skip_gap(self, topic: str, stream: _Stream) -> None:
        """The gap cannot be filled: tell every subscriber, and go on from what waits."""
        if not stream.early:
            return
        first = min(stream.early)
        stream.offset = first - 1
        self._announce(topic, Position(stream.epoch, stream.offset))
        self._drain(topic, stream)

    async def _fill(self, topic: str, stream: _Stream) -> None:
        """Read the publications missing before the ones that came early."""
        try:
            rule = self.rule_for(topic)
            while stream.early and self._streams.get(topic) is stream:
                first = min(stream.early)
                after = stream.offset
                if first <= after + 1:  # the next, or one the stream moved past meanwhile
                    for stale in [offset for offset in stream.early if offset <= after]:
                        del stream.early[stale]
                    self._drain(topic, stream)
                    continue
                epoch = stream.epoch
                try:
                    found = await self.read(rule, topic, after, first - after - 1)
                except BackplaneUnavailable:
                    logger.warning("could not fill a gap in %r from its history", topic)
                    self._skip_gap(topic, stream)
                    continue
                if stream.epoch != epoch or self._streams.get(topic) is not stream:
                    continue  # the epoch moved on while reading
                if found.position.epoch != epoch:
                    self._new_epoch(topic, stream, found.position)
                    continue
                # Publications arrive while the read is out (a publish confirmed late):
                # take from it only what is still missing before ``first``.
                for offset, payload in found.entries:
                    if stream.offset < offset < first and offset not in stream.early:
                        stream.early[offset] = self._unpack(payload)
                self._drain(topic, stream)
                if stream.offset < first - 1:
                    self._skip_gap(topic, stream)  # trimmed: the history cannot give it all
        finally:
            stream.filling = None

    def _new_epoch(self, topic: str, stream: _Stream, position: Position) -> None:
        """The topic's history was lost: start over at ``position``, every subscriber told."""
        stream.old_epochs.add(stream.epoch)
        stream.epoch, stream.offset = position
        stream.early.clear()
        self._announce(topic, position)

    def _announce(self, topic: str, position: Position) -> None:
        """Tell every exact subscriber of ``topic`` it now stands at ``position``, not recovered."""
        for session, held in (self.held.get(topic) or {}).items():
            if held.buffer is not None:
                held.buffer.append((position, None))
            elif held.epoch != position.epoch or held.offset < position.offset:
                held.epoch, held.offset = position
                self._subscribed(session, topic, position, False)

    # -- after the backplane came back -------------------------------------------------

    def resumed(self) -> None:
        """Compare every stream with its topic's history: publications may have been missed."""
        for topic, stream in list(self._streams.items()):
            self._spawn(self._catch_up(topic, stream))

    async def _catch_up(self, topic: str, stream: _Stream) -> None:
        rule = self.rule_for(topic)
        epoch, offset = stream.epoch, stream.offset
        try:
            found = await self.read(rule, topic, offset, rule.size)
            if found.position.epoch == epoch and found.position.offset < offset:
                # The store lost publications we delivered: their offsets would come twice.
                backplane = self._backplane
                renewed = await self.call(
                    rule,
                    "starting a new epoch of",
                    topic,
                    lambda: backplane.new_epoch_if_behind(topic, Position(epoch, offset)),
                )
                found = found._replace(position=renewed, entries=[])
        except BackplaneUnavailable:
            logger.warning("could not compare %r with its history after a reconnect", topic)
            return
        if self._streams.get(topic) is not stream or stream.epoch != epoch:
            return
        if found.position.epoch != epoch:
            self._new_epoch(topic, stream, found.position)
            return
        entries = [entry for entry in found.entries if entry[0] <= found.position.offset]
        for entry_offset, payload in entries:  # a gap at their start is filled, or skipped
            self.arrived(topic, Position(epoch, entry_offset), self._unpack(payload), True)
        if not entries and stream.offset < found.position.offset:
            stream.offset = found.position.offset  # all expired: nothing to deliver
            self._announce(topic, found.position)

    # -- subscriptions -----------------------------------------------------------------

    def rule_for(self, topic: str) -> History:
        """The rule of a history topic."""
        rule = history_rule(self.rules, topic)
        assert rule is not None
        return rule

    def hold(self, topic: str, session: Session) -> Held:
        """Start buffering ``topic`` for ``session``, before it joins the topic."""
        held = self.held.setdefault(topic, {})[session] = Held()
        return held

    async def recover(
        self, topic: str, session: Session, held: Held, resume: Position | None
    ) -> tuple[list[tuple[Position, Message]], Position, bool | None]:
        """Read what ``session`` missed after ``resume``: ``(replay, position, recovered)``.

        Call once joined, so that nothing published after the read is missed.
        """
        rule = self.rule_for(topic)
        after = None if resume is None else resume.offset
        found = await self.read(rule, topic, after, 0 if resume is None else rule.size + 1)
        position = found.position
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _Stream(position)
        replay: list[tuple[Position, Message]] = []
        recovered: bool | None = None
        if resume is not None:
            entries = [entry for entry in found.entries if entry[0] <= position.offset]
            needed = position.offset - resume.offset
            recovered = (
                resume.epoch == position.epoch
                and needed >= 0
                and len(entries) == needed
                and (needed == 0 or entries[0][0] == resume.offset + 1)
            )
            if recovered:
                replay = [
                    (Position(position.epoch, offset), self._unpack(payload))
                    for offset, payload in entries
                ]
        held.epoch, held.offset = position
        return replay, position, recovered

    def release(self, topic: str, session: Session) -> list[tuple[Position, Message | None]]:
        """Stop buffering for ``session``: return what came meanwhile, for it to send."""
        held = (self.held.get(topic) or {}).get(session)
        if held is None or held.buffer is None:
            return []
        buffered, held.buffer = held.buffer, None
        return buffered

    def drop(self, topic: str, session: Session | None, *, last: bool) -> None:
        """Forget ``session``'s hold on ``topic``; ``last``: nobody here hears the topic now."""
        holders = self.held.get(topic)
        if holders is not None:
            if session is not None:
                holders.pop(session, None)
            if not holders:
                del self.held[topic]
        if last:
            stream = self._streams.pop(topic, None)
            if stream is not None and stream.filling is not None:
                stream.filling.cancel()

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a history task failed", exc_info=task.exception())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
