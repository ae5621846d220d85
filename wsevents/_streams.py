"""History topics in this process: the backplane's reads, gap filling, recovery on subscribe.

For every history topic that has subscribers here, :class:`Streams` keeps an
:class:`~wsevents._ordering.Order` (pure: which publication goes next) and
does the I/O that order asks for: it reads a gap from the history while
publications that came early wait, compares every topic with its history
after the backplane came back, and reads what a new subscription missed.
What to deliver goes to the broker's ``deliver(topic, steps)``, which knows
the subscribers; this module knows none.

Over 300 lines: the backplane's calls (retried until a rule's
``publish_timeout``), gap filling, catching up after a reconnect and the
recovery of a subscription all move the same orders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._history import History, Position, Publication, history_rule
from ._ordering import Message, Order, Step
from ._tasks import within
from ._wildcards import check_topic
from .exceptions import BackplaneUnavailable, TopicError

if TYPE_CHECKING:
    from .backplane import Backplane
    from .backplane._base import HistoryRead

__all__ = ["Streams"]

logger = logging.getLogger("wsevents")

Deliver = Callable[[str, list[Step]], bool]  # whether the publisher should let others run
Unpack = Callable[[bytes], Message]

RETRY_DELAY = 0.05
RULES_KNOWN = 10_000  # topics whose rule is remembered; past it, forgotten and looked up again


class Streams:
    """The history topics of one broker: their orders, and the I/O the orders ask for."""

    def __init__(
        self, backplane: Backplane, rules: tuple[History, ...], deliver: Deliver, unpack: Unpack
    ) -> None:
        self.rules = rules
        self._backplane = backplane
        self._deliver = deliver
        self._unpack = unpack
        self._orders: dict[str, Order] = {}
        self._rule_of: dict[str, History | None] = {}
        self._filling: dict[str, asyncio.Task[None]] = {}
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
                return await within(call(), max(left, 0.001))
            except Exception as exc:
                left = deadline - loop.time()
                if left <= RETRY_DELAY:
                    raise BackplaneUnavailable(
                        f"{what} {topic!r}: the backplane did not confirm within"
                        f" {rule.publish_timeout:g} s ({exc!r})"
                    ) from None
                await asyncio.sleep(RETRY_DELAY)

    async def append(self, rule: History, topic: str, payload: bytes, key: str) -> Position:
        """Keep a publication of ``topic`` in its history: its position (``call``'s bounds)."""
        backplane = self._backplane
        retry_for = rule.publish_timeout + 1.0  # retries stop before
        if not backplane.waits:  # in-process: at once, without call's closure
            return await backplane.append(
                topic, payload, key=key, size=rule.size, ttl=rule.ttl, retry_for=retry_for
            )
        position: Position = await self.call(
            rule,
            "publishing to",
            topic,
            lambda: backplane.append(
                topic,
                payload,
                key=key,
                size=rule.size,
                ttl=rule.ttl,
                retry_for=retry_for,
            ),
        )
        return position

    async def history(self, topic: str, since: Position | None, limit: int) -> list[Publication]:
        """At most ``limit`` kept publications of ``topic`` after ``since``, oldest first.

        From the oldest kept where ``since`` is of another epoch.
        """
        check_topic(topic)
        rule = history_rule(self.rules, topic)
        if rule is None:
            raise TopicError(f"{topic!r} matches no History rule: it keeps no history")
        found = await self.read(rule, topic, None if since is None else since.offset, limit)
        if since is not None and since.epoch != found.position.epoch:
            found = await self.read(rule, topic, None, limit)
        epoch = found.position.epoch
        publications = []
        for offset, payload in found.entries:
            message = self._unpack(payload)
            publications.append(Publication(message["e"], message["d"], topic, epoch, offset))
        return publications

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

    def _entries(self, found: HistoryRead) -> list[tuple[int, Message]]:
        return [(offset, self._unpack(payload)) for offset, payload in found.entries]

    # -- live publications ---------------------------------------------------------------

    def delivered(self, topic: str, position: Position) -> bool:
        """Whether this process delivered ``position`` already (its own publication, echoed)."""
        order = self._orders.get(topic)
        return order is not None and order.delivered(position)

    def arrived(self, topic: str, position: Position, message: Message, wanted: bool) -> bool:
        """Take a publication of a history topic, from this process or another; return
        whether its publisher should let the others run (as ``Broker.publish`` says).

        ``wanted``: someone here subscribes to ``topic`` (a wildcard
        subscriber's topic gets an order at its first publication).
        """
        order = self._orders.get(topic)
        if not wanted:
            if order is not None:  # its wildcard subscribers left
                self.forget(topic)
            return False
        if order is None:
            order = self._orders[topic] = Order(Position(position.epoch, position.offset - 1))
        let_others_run = self._deliver(topic, order.arrived(position, message))
        if order.gap is not None and topic not in self._filling:
            self._filling[topic] = self._spawn(self._fill(topic, order))
        return let_others_run

    async def _fill(self, topic: str, order: Order) -> None:
        """Read the publications missing before the ones that came early."""
        try:
            rule = self.rule_for(topic)
            while self._orders.get(topic) is order:
                self._deliver(topic, order.ready())
                gap = order.gap
                if gap is None:
                    return
                after, first = gap
                epoch = order.epoch
                try:
                    found = await self.read(rule, topic, after, first - after - 1)
                except BackplaneUnavailable:
                    logger.warning("could not fill a gap in %r from its history", topic)
                    self._deliver(topic, order.skip_gap())
                    continue
                if order.epoch != epoch or self._orders.get(topic) is not order:
                    continue  # the epoch moved on while reading
                self._deliver(topic, order.filled(found.position, self._entries(found), first))
        finally:
            if self._filling.get(topic) is asyncio.current_task():
                del self._filling[topic]

    # -- after the backplane came back -------------------------------------------------

    def resumed(self) -> None:
        """Compare every order with its topic's history: publications may have been missed."""
        for topic, order in list(self._orders.items()):
            self._spawn(self._catch_up(topic, order))

    async def _catch_up(self, topic: str, order: Order) -> None:
        rule = self.rule_for(topic)
        epoch, offset = order.epoch, order.offset
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
        if self._orders.get(topic) is not order or order.epoch != epoch:
            return
        self._deliver(topic, order.caught_up(found.position, self._entries(found)))
        if order.gap is not None and topic not in self._filling:
            self._filling[topic] = self._spawn(self._fill(topic, order))

    # -- subscriptions -----------------------------------------------------------------

    def rule_of(self, topic: str) -> History | None:
        """The ``History`` rule of ``topic``, if it has one; each topic's looked up once."""
        known = self._rule_of
        if topic in known:
            return known[topic]
        if len(known) >= RULES_KNOWN:
            known.clear()
        rule = known[topic] = history_rule(self.rules, topic) if self.rules else None
        return rule

    def rule_for(self, topic: str) -> History:
        """The rule of a history topic."""
        rule = self.rule_of(topic)
        assert rule is not None
        return rule

    async def recover(
        self, topic: str, resume: Position | None
    ) -> tuple[list[tuple[Position, Message]], Position, bool | None]:
        """Read what a subscriber missed after ``resume``: ``(replay, position, recovered)``.

        Call once subscribed, so that nothing published after the read is missed.
        """
        rule = self.rule_for(topic)
        after = None if resume is None else resume.offset
        found = await self.read(rule, topic, after, 0 if resume is None else rule.size + 1)
        position = found.position
        if topic not in self._orders:
            self._orders[topic] = Order(position)
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
        return replay, position, recovered

    def forget(self, topic: str) -> None:
        """Nobody here hears ``topic`` now: drop its order, stop filling its gap."""
        self._orders.pop(topic, None)
        filling = self._filling.pop(topic, None)
        if filling is not None:
            filling.cancel()

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
