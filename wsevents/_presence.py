"""Presence: who is subscribed to a topic, in every process, and what changed.

A connection subscribed to a topic that matches a :class:`Presence` rule
(``_members``) is a member of it, with the JSON object it gave as ``presence=``. Members are kept
in the backplane, each under its connection id, with an expiry that its
process refreshes: the members of a process that died expire within ``ttl``.
The backplane logs every change (a join, a leave, an expiry) with a sequence
number; :class:`Rooms` reads the log of each topic it has subscribers for
once per ``interval`` and sends them the net change, one
``wsevents.presence`` frame per window, encoded once per codec.

Over 300 lines: the members' registration and refresh, and the windows of
diffs, all keep the same per-topic state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ._envelope import event_frame
from ._history import first_rule
from ._members import PRESENCE_EVENT, Presence, encode_info
from ._retry import Tally
from ._wildcards import check_topic
from .exceptions import BackplaneUnavailable, TopicError

if TYPE_CHECKING:
    from ._subscriptions import Subscription, Subscriptions
    from .backplane import Backplane
    from .codecs import Codec

__all__ = ["PRESENCE_EVENT", "Presence", "Rooms"]

logger = logging.getLogger("wsevents")

REFRESH_PART = 1000  # members refreshed per backplane call


_MISSING = b""  # a member's info before a window, when it was not a member


class _Watch:
    """One topic's members as this process last read them, and its reader."""

    __slots__ = ("pending", "read", "seq", "task", "view")

    def __init__(self) -> None:
        self.view: dict[str, bytes] = {}
        self.seq = 0  # the number of the last change the view holds
        self.read = False  # the members were read once
        # Members owed their first frame, each once the view holds its own join.
        self.pending: dict[Subscription, int] = {}
        self.task: asyncio.Task[None] | None = None


class Rooms:
    """The presence of one broker: its members, their refresh, and the diffs.

    This process's members are the subscriptions that hold presence info
    (:attr:`~wsevents._subscriptions.Subscription.presence`): they are read
    from the broker's table, never copied.
    """

    def __init__(
        self, backplane: Backplane, rules: tuple[Presence, ...], subscriptions: Subscriptions
    ) -> None:
        self.rules = rules
        self._backplane = backplane
        self._subscriptions = subscriptions
        self._watches: dict[str, _Watch] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.failures = Tally()  # failed backplane calls, by what they did
        # Members that left, by topic, waiting to be removed; and who removes them.
        self._leaving: dict[str, tuple[list[str], asyncio.Future[None]]] = {}
        self._remover: asyncio.Task[None] | None = None

    def rule_for(self, topic: str) -> Presence | None:
        """The ``Presence`` rule of ``topic``, if it has one."""
        return first_rule(self.rules, topic) if self.rules else None

    # -- members -----------------------------------------------------------------------

    def check(self, topic: str, info: Any, pattern: bool) -> tuple[Presence, bytes] | None:
        """The rule and encoded info of a subscription to ``topic``; ``None``: no member.

        Raises:
            TopicError: ``presence=`` on a topic no rule matches, or on a wildcard.
            TypeError: ``presence=`` that is not a JSON object.
        """
        if pattern:
            if info is not None:
                raise TopicError(f"presence= on {topic!r}: only an exact topic has members")
            return None
        rule = self.rule_for(topic)
        if rule is None:
            if info is not None:
                raise TopicError(f"presence= on {topic!r}: it matches no Presence rule")
            return None
        return rule, encode_info(info)

    def _members(self, topic: str) -> list[Subscription]:
        """This process's members of ``topic``."""
        return [
            record for record in self._subscriptions.exact(topic) if record.presence is not None
        ]

    async def join(self, record: Subscription, rule: Presence, again: bool) -> None:
        """Register ``record``'s member (``again``: with new info); send its first diff.

        Its info is :attr:`record.presence`, set by the broker.
        """
        topic = record.topic
        self._start_refresher()
        registered = self._backplane.presence_set(
            topic, {record.subscriber.id: record.presence or b"{}"}, rule.ttl
        )
        try:
            joined_at: int = await self._call(rule, registered)
        except Exception as exc:  # registered by the next refresh
            self._failed("register a member of", topic, exc)
            joined_at = 0
        if not rule.diffs or again:  # a member already: its new info goes in the next diff
            return
        if not self._subscriptions.current(record):  # it left while registering
            return
        watch = self._watches.get(topic)
        if watch is None:
            watch = self._watches[topic] = _Watch()
            watch.task = asyncio.get_running_loop().create_task(self._watch(topic, rule, watch))
        # Its first frame lists every member, once the view holds its join: at the end of
        # this window, and from then on the diffs, so that no change reaches it twice.
        watch.pending[record] = joined_at

    async def leave(self, record: Subscription) -> None:
        """``record`` (unsubscribed, its info kept) is no member any more; never raises."""
        topic = record.topic
        watch = self._watches.get(topic)
        if watch is not None:
            watch.pending.pop(record, None)
        rule = self.rule_for(topic)
        if not self._members(topic):
            watch = self._watches.pop(topic, None)
            if watch is not None and watch.task is not None:
                watch.task.cancel()
        if rule is None:  # pragma: no cover - a member's topic has a rule
            return
        # Leaves of one topic made while a removal is out go together in the next one
        # (a thousand connections closing at once make a few calls, not a thousand).
        leaving = self._leaving.get(topic)
        if leaving is None:
            done = asyncio.get_running_loop().create_future()
            leaving = self._leaving[topic] = ([], done)
        leaving[0].append(record.subscriber.id)
        if self._remover is None or self._remover.done():
            self._remover = asyncio.get_running_loop().create_task(self._remove())
        await asyncio.shield(leaving[1])  # removed, or failed and logged: it expires

    async def _remove(self) -> None:
        """Remove the members that left, a call per topic, until none waits."""
        while self._leaving:
            topic = next(iter(self._leaving))
            members, done = self._leaving.pop(topic)
            rule = self.rule_for(topic)
            try:
                if rule is not None:
                    removal = self._backplane.presence_remove(topic, members)
                    await self._call(rule, removal, rule.ttl)
            except Exception as exc:  # they expire within ttl
                self._failed("remove a member of", topic, exc)
            finally:
                if not done.done():
                    done.set_result(None)

    async def members(self, topic: str) -> dict[str, dict[str, Any]]:
        """Every member of ``topic``, in every process: connection id to info.

        Raises:
            TopicError: a bad topic, or one no ``Presence`` rule matches.
            BackplaneUnavailable: the backplane did not answer.
        """
        rule = self._require(topic)
        _, found = await self._read(rule, self._backplane.presence_members(topic))
        return {member: _decode(raw) for member, raw in found.items()}

    async def count(self, topic: str) -> int:
        """How many members ``topic`` has, without reading them (raises as :meth:`members`)."""
        rule = self._require(topic)
        counted: int = await self._read(rule, self._backplane.presence_count(topic))
        return counted

    def _require(self, topic: str) -> Presence:
        check_topic(topic)
        rule = self.rule_for(topic)
        if rule is None:
            raise TopicError(f"{topic!r} matches no Presence rule: it has no members")
        return rule

    async def _read(self, rule: Presence, read: Any) -> Any:
        try:
            return await self._call(rule, read)
        except Exception as exc:  # what the transport raised, or its deadline
            raise BackplaneUnavailable(f"the backplane did not answer ({exc!r})") from None

    def _failed(self, what: str, topic: str, exc: BaseException) -> None:
        """Log a failed backplane call: the first of each kind, then every thousandth."""
        if self.failures.add(what):
            count = self.failures[what]
            logger.warning("presence: could not %s %r (%r); %d so far", what, topic, exc, count)

    async def _call(self, rule: Presence, awaitable: Any, within: float | None = None) -> Any:
        """Await a backplane call, within ``within`` seconds (an interval, at least 1 s)."""
        if not self._backplane.waits:
            return await awaitable
        return await asyncio.wait_for(awaitable, within or max(rule.interval, 1.0))

    # -- refresh -----------------------------------------------------------------------

    def _start_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Extend this process's members, every third of the shortest ``ttl``, while any."""
        every = min(rule.ttl for rule in self.rules) / 3
        while True:
            await asyncio.sleep(every)
            members = self._subscriptions.members_of_every_topic()
            if not members:
                return  # the next join starts it again
            for topic, records in members.items():
                rule = self.rule_for(topic)
                if rule is None:  # pragma: no cover - a member's topic has one
                    continue
                infos = [(record.subscriber.id, record.presence or b"{}") for record in records]
                try:
                    # In parts: one script call holds Redis for about 5 µs per member.
                    for start in range(0, len(infos), REFRESH_PART):
                        part = dict(infos[start : start + REFRESH_PART])
                        refreshed = self._backplane.presence_set(
                            topic, part, rule.ttl, refresh=True
                        )
                        await self._call(rule, refreshed)
                except Exception as exc:
                    self._failed("refresh the members of", topic, exc)

    # -- diffs -------------------------------------------------------------------------

    async def _watch(self, topic: str, rule: Presence, watch: _Watch) -> None:
        """Read ``topic``'s changes once per interval; send its subscribers the net change."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                if not watch.read:
                    watch.seq, watch.view = await self._call(
                        rule, self._backplane.presence_members(topic)
                    )
                    watch.read = True
                    self._send(topic, watch, {}, {})
                else:
                    self._send(topic, watch, *await self._window(topic, rule, watch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the backplane is away: the next window catches up
                self._failed("read the changes of", topic, exc)
            # Windows at a steady rate, whatever sending took (none skipped, none doubled).
            due = max(due + rule.interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _window(
        self, topic: str, rule: Presence, watch: _Watch
    ) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """Apply what changed since the last window; return ``(joined, left)``, net."""
        backplane = self._backplane
        seq, changes = await self._call(rule, backplane.presence_changes(topic, watch.seq))
        before: dict[str, bytes] = {}  # each touched member's info before the window
        view = watch.view
        if changes is None:  # the log cannot tell: compare with the members
            seq, now = await self._call(rule, backplane.presence_members(topic))
            for member in {*view, *now}:
                before[member] = view.get(member, _MISSING)
            watch.view = view = dict(now)
        else:
            for kind, member, info in changes:
                before.setdefault(member, view.get(member, _MISSING))
                if kind == "j":
                    view[member] = info
                else:
                    view.pop(member, None)
        watch.seq = seq
        joined: dict[str, bytes] = {}
        left: dict[str, bytes] = {}
        for member, old in before.items():
            new = view.get(member)
            if new is None:
                if old is not _MISSING:
                    left[member] = old
            elif new != old:
                joined[member] = new
        return joined, left

    def _send(
        self, topic: str, watch: _Watch, joined: dict[str, bytes], left: dict[str, bytes]
    ) -> None:
        """Send the window's net change; a new subscriber whose join the view holds, everyone."""
        frames: dict[Codec, str | bytes] = {}
        firsts: dict[Codec, str | bytes] = {}
        diff = None
        if joined or left:
            diff = {
                "topic": topic,
                "joined": {member: _decode(raw) for member, raw in joined.items()},
                "left": {member: _decode(raw) for member, raw in left.items()},
            }
        everyone = None
        for record in self._members(topic):
            subscriber, info = record.subscriber, record.presence or b"{}"
            joined_at = watch.pending.get(record)
            if joined_at is None:
                if diff is not None:
                    frame = frames.get(subscriber.codec)
                    if frame is None:
                        frame = frames[subscriber.codec] = subscriber.codec.encode(
                            event_frame(PRESENCE_EVENT, diff)
                        )
                    subscriber.push(frame)
                continue
            if joined_at > watch.seq:
                continue  # its join comes in a later window
            del watch.pending[record]
            if everyone is None:
                everyone = {member: _decode(raw) for member, raw in watch.view.items()}
            if subscriber.id not in everyone:  # its registration failed: the refresh makes it
                members = {**everyone, subscriber.id: _decode(info)}
                data = {"topic": topic, "joined": members, "left": {}}
                subscriber.push(subscriber.codec.encode(event_frame(PRESENCE_EVENT, data)))
                continue
            # The same list for every subscriber that came in this window: encoded once.
            frame = firsts.get(subscriber.codec)
            if frame is None:
                data = {"topic": topic, "joined": everyone, "left": {}}
                frame = firsts[subscriber.codec] = subscriber.codec.encode(
                    event_frame(PRESENCE_EVENT, data)
                )
            subscriber.push(frame)

    async def stop(self) -> None:
        """Stop refreshing and reading; the members expire unless removed first."""
        tasks = [watch.task for watch in self._watches.values() if watch.task is not None]
        if self._refresher is not None:
            tasks.append(self._refresher)
        remover, self._remover = self._remover, None  # the next start runs in another loop
        if remover is not None and not remover.done():
            await asyncio.wait({remover}, timeout=1.0)  # the last leaves, bounded
            tasks.append(remover)
        for _, done in self._leaving.values():  # nobody waits past the stop
            if not done.done():
                done.set_result(None)
        self._leaving.clear()
        self._watches.clear()
        self._refresher = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _decode(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(raw)
    return decoded
