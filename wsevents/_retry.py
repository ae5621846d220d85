"""Waits between retries, and log lines that do not flood: shared by every part (pure).

:class:`Backoff` is the one schedule of retries (exponential, with jitter,
capped) that the Redis backplane and the Python client follow; :class:`Tally`
counts what failed and says when to log it: the first, then every thousandth.
"""

from __future__ import annotations

import random

__all__ = ["Backoff", "Tally"]


class Backoff:
    """Waits that start at ``first`` seconds and double up to ``longest``, with jitter.

    Each wait is drawn from the upper half of the current step (full backoff
    with half jitter): never above ``longest``, never below half the step, so
    that many clients retrying at once spread out and none waits too little.
    """

    __slots__ = ("first", "longest", "step")

    def __init__(self, first: float, longest: float) -> None:
        if first <= 0 or longest < first:
            raise ValueError(f"a backoff needs 0 < first <= longest, got {first!r}, {longest!r}")
        self.first = first
        self.longest = longest
        self.step = first

    def next(self) -> float:
        """The next wait, in seconds; the step after it doubles."""
        wait = self.step * random.uniform(0.5, 1.0)
        self.step = min(self.step * 2, self.longest)
        return wait

    def reset(self) -> None:
        """Start again from ``first`` (after a success)."""
        self.step = self.first


class Tally:
    """Counts of failures by kind, and whether one is worth a log line.

    A failure that repeats every few milliseconds (Redis away, a topic whose
    removal keeps failing) is logged the first time, then every thousandth.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, kind: str, count: int = 1) -> bool:
        """Count ``count`` failures of ``kind``; return whether to log this one."""
        before = self.counts.get(kind, 0)
        after = self.counts[kind] = before + count
        return before == 0 or after // 1000 > before // 1000

    def __getitem__(self, kind: str) -> int:
        return self.counts.get(kind, 0)
