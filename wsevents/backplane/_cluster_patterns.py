"""The patterns the processes of a Redis Cluster hold, known to every one of them.

Sharded pub/sub has no patterns (DESIGN.md section 14): a publication whose
topic matches a pattern some process holds goes out once more, cluster-wide,
with ``PUBLISH``. So each process must know every process's patterns: they
are kept in a sorted set (member ``process\\npattern``, scored by when it
expires unless renewed), and a change is said at once on cluster-wide pub/sub
(``+`` or ``-`` then the member), on a channel named as the set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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

    def __init__(self, prefix: str, process: str, ttl: float, command: Command) -> None:
        self.key = f"{prefix}$patterns"  # the sorted set, and the channel of the notices
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

    def _expiry(self) -> int:
        return int((time() + self._ttl) * 1000)

    async def hold(self, pattern: str, held: bool) -> None:
        """Say cluster-wide that this process holds ``pattern``, or no longer does."""
        member = f"{self._process}\n{pattern}"
        if held:
            await self._command(self.key, "ZADD", self.key, self._expiry(), member)
        else:
            await self._command(self.key, "ZREM", self.key, member)
        notice = ("+" if held else "-") + member
        self.notice(notice)
        await self._command(self.key, "PUBLISH", self.key, notice)

    def notice(self, notice: str) -> None:
        """A change another process (or this one) said."""
        _apply(self._held, notice)
        self._matching.clear()
        self._noticed.append(notice)

    async def renew(self, ours: list[str]) -> None:
        """Renew this process's patterns, forget the expired, and read everyone's."""
        if ours:
            pairs: list[Any] = []
            for pattern in ours:
                pairs += [self._expiry(), f"{self._process}\n{pattern}"]
            await self._command(self.key, "ZADD", self.key, *pairs)
        await self._command(self.key, "ZREMRANGEBYSCORE", self.key, "-inf", int(time() * 1000))
        await self.read()

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
