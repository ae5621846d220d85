"""The patterns the processes of a Redis Cluster hold, known to every one of them.

Sharded pub/sub has no patterns (DESIGN.md section 14): a publication whose
topic matches a pattern some process holds goes out once more, cluster-wide,
with ``PUBLISH``. So each process must know every process's patterns: they
are kept in a sorted set (member ``process\\npattern``, scored by when it
expires unless renewed), and a change is said at once on cluster-wide pub/sub
(``+`` or ``-`` then the member), on a channel named as the set.

A subscription must hold when ``subscribe`` returns, as on one Redis: a
publication made after it, by any process, must reach it. So every process
says it is alive in a second sorted set, answers a ``+`` notice (``=`` then
its name and the member) once it knows the pattern, and ``subscribe`` waits
for the answers of the processes alive (a dead one, until it expires, costs
``command_timeout`` once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from time import time
from typing import Any

from .._wildcards import matches

__all__ = ["Patterns"]

Command = Callable[..., Awaitable[Any]]  # (key, *command): run on the key's owner


class Patterns:
    """Every pattern some process holds, and whether one matches a topic.

    Args:
        prefix: the backplane's key prefix.
        process: this process's name in the registry.
        ttl: seconds a process's patterns are kept without being renewed.
        command: runs one command on the node that owns a key.
    """

    def __init__(
        self, prefix: str, process: str, ttl: float, command: Command, timeout: float
    ) -> None:
        self.key = f"{prefix}$patterns"  # the sorted set, and the channel of the notices
        self._alive = f"{prefix}$processes"  # every process, pattern or not
        self._timeout = timeout
        self._answers: dict[str, tuple[set[str], asyncio.Future[None]]] = {}
        self.known = False  # said alive, and read the registry, once at least
        self._process = process
        self._ttl = ttl
        self._command = command
        self._held: dict[str, set[str]] = {}  # pattern -> the processes holding it
        self._matching: dict[str, bool] = {}  # topic -> whether a held pattern matches it
        self._noticed: list[str] = []  # notices heard while the registry is read

    def matched(self, topic: str) -> bool:
        """Whether a pattern some process holds matches ``topic``: cached until one changes."""
        found = self._matching.get(topic)
        if found is None:
            found = any(matches(pattern, topic) for pattern in self._held)
            if len(self._matching) > 10_000:
                self._matching.clear()
            self._matching[topic] = found
        return found

    def holders(self, topic: str) -> int:
        """How many pattern subscriptions, over every process, match ``topic``."""
        return sum(len(held) for pattern, held in self._held.items() if matches(pattern, topic))

    def _expiry(self) -> int:
        return int((time() + self._ttl) * 1000)

    async def hold(self, pattern: str, held: bool) -> None:
        """Say cluster-wide that this process holds ``pattern``, or no longer does; once
        held, wait (``timeout`` at most) until every process alive knows it."""
        member = f"{self._process}\n{pattern}"
        if not held:
            await self._command(self.key, "ZREM", self.key, member)
            self.notice("-" + member)
            await self._command(self.key, "PUBLISH", self.key, "-" + member)
            return
        await self._command(self.key, "ZADD", self.key, self._expiry(), member)
        self.notice("+" + member)
        found = await self._command(
            self._alive, "ZRANGE", self._alive, int(time() * 1000), "+inf", "BYSCORE"
        )
        others = {name.decode() for name in found} - {self._process}
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answers[member] = (others, answered)
        try:
            await self._command(self.key, "PUBLISH", self.key, "+" + member)
            if others:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(answered, self._timeout)
        finally:
            del self._answers[member]

    def notice(self, notice: str) -> str | None:
        """A notice heard (or said); what to answer it with, where it wants an answer."""
        if notice[0] == "=":  # another process knows one of ours
            who, _, member = notice[1:].partition("\n")
            waiting = self._answers.get(member)
            if waiting is not None:
                waiting[0].discard(who)
                if not waiting[0] and not waiting[1].done():
                    waiting[1].set_result(None)
            return None
        _apply(self._held, notice)
        self._matching.clear()
        self._noticed.append(notice)
        if notice[0] == "+" and not notice[1:].startswith(self._process + "\n"):
            return f"={self._process}\n{notice[1:]}"
        return None

    async def answer(self, answer: str) -> None:
        """Tell the process that holds a new pattern that this one knows it."""
        with suppress(Exception):  # unanswered, it waits its timeout, no more
            await self._command(self.key, "PUBLISH", self.key, answer)

    async def renew(self, ours: list[str]) -> None:
        """Say this process is alive, renew its patterns, forget the expired, and read
        everyone's."""
        now = int(time() * 1000)
        await self._command(self._alive, "ZADD", self._alive, self._expiry(), self._process)
        await self._command(self._alive, "ZREMRANGEBYSCORE", self._alive, "-inf", now)
        if ours:
            pairs: list[Any] = []
            for pattern in ours:
                pairs += [self._expiry(), f"{self._process}\n{pattern}"]
            await self._command(self.key, "ZADD", self.key, *pairs)
        await self._command(self.key, "ZREMRANGEBYSCORE", self.key, "-inf", now)
        await self.read()
        self.known = True

    async def read(self) -> None:
        """Every pattern some process holds; the notices heard meanwhile are kept."""
        self._noticed = []
        members = await self._command(self.key, "ZRANGE", self.key, 0, -1)
        held: dict[str, set[str]] = {}
        for member in members:
            _apply(held, "+" + member.decode())
        for notice in self._noticed:
            _apply(held, notice)
        self._held = held
        self._matching.clear()


def _apply(held: dict[str, set[str]], notice: str) -> None:
    process, _, pattern = notice[1:].partition("\n")
    holders = held.setdefault(pattern, set())
    if notice[0] == "+":
        holders.add(process)
    else:
        holders.discard(process)
        if not holders:
            del held[pattern]
