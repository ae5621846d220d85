"""One history topic's delivery order in this process: which publication goes next (pure).

Publications of a history topic carry their :class:`~wsevents._history.Position`.
An :class:`Order` delivers each only right after the one before it: one that
comes early (Redis pub/sub dropped the one between) waits while the gap is
read from the history; one seen before is dropped. Its methods answer what
to do, as a list of steps: ``(position, message)`` to deliver that
publication, or ``(position, None)`` to tell the topic's subscribers that
they now stand at ``position`` without having recovered what came before
(``wsevents.subscribed`` with ``recovered: false``). Reading the gap is the
caller's (:mod:`wsevents._streams`): :attr:`Order.gap` says what is missing,
:meth:`Order.filled` takes what the history gave.
"""

from __future__ import annotations

from typing import Any

from ._history import Position

__all__ = ["MAX_EARLY", "Message", "Order", "Step"]

Message = dict[str, Any]
"""A publication as the broker packs it: ``t`` topic, ``e`` event, ``d`` data, ``x`` excluded."""

Step = tuple[Position, "Message | None"]
"""Deliver ``message`` at ``position``; ``None``: the subscribers stand there, not recovered."""

MAX_EARLY = 10_000  # publications kept waiting for a gap to fill, per topic


class Order:
    """The position this process delivered of one history topic, and what waits for a gap."""

    __slots__ = ("early", "epoch", "offset", "old_epochs")

    def __init__(self, position: Position) -> None:
        self.epoch, self.offset = position
        self.early: dict[int, Message] = {}
        self.old_epochs: set[str] = set()

    def __repr__(self) -> str:
        return f"<Order {self.epoch}:{self.offset}, {len(self.early)} early>"

    @property
    def position(self) -> Position:
        """The last position delivered."""
        return Position(self.epoch, self.offset)

    def delivered(self, position: Position) -> bool:
        """Whether ``position`` was delivered already (an echo of this process's own)."""
        return position.epoch == self.epoch and position.offset <= self.offset

    def arrived(self, position: Position, message: Message) -> list[Step]:
        """Take a publication; return what to deliver now, in order."""
        steps: list[Step] = []
        if position.epoch != self.epoch:
            if position.epoch in self.old_epochs:
                return steps  # a straggler of an epoch already left
            steps += self.new_epoch(Position(position.epoch, 0))
        offset = position.offset
        if offset <= self.offset or offset in self.early:
            return steps  # delivered already, or waiting already
        if offset == self.offset + 1 and not self.early:
            self.offset = offset
            steps.append((position, message))
            return steps
        if len(self.early) >= MAX_EARLY:
            steps += self.skip_gap()
        self.early[offset] = message
        steps += self._drain()
        return steps

    def ready(self) -> list[Step]:
        """Drop what the position moved past meanwhile; return what can go now."""
        for stale in [offset for offset in self.early if offset <= self.offset]:
            del self.early[stale]
        return self._drain()

    @property
    def gap(self) -> tuple[int, int] | None:
        """``(after, first)``: the offsets between them are missing; ``None``: nothing waits.

        Call :meth:`ready` first: then nothing that waits is next.
        """
        return (self.offset, min(self.early)) if self.early else None

    def filled(self, found: Position, entries: list[tuple[int, Message]], first: int) -> list[Step]:
        """Take what the history gave for the gap before ``first``; return what to deliver.

        ``found`` is the topic's position the read returned: another epoch
        means the history was lost (a new start, every subscriber told).
        """
        if found.epoch != self.epoch:
            return self.new_epoch(found)
        # Publications arrive while the read is out (a publish confirmed late):
        # take from it only what is still missing before ``first``.
        for offset, message in entries:
            if self.offset < offset < first and offset not in self.early:
                self.early[offset] = message
        steps = self._drain()
        if self.offset < first - 1:
            steps += self.skip_gap()  # trimmed: the history cannot give it all
        return steps

    def skip_gap(self) -> list[Step]:
        """The gap cannot be filled: tell every subscriber, and go on from what waits."""
        if not self.early:
            return []
        self.offset = min(self.early) - 1
        return [(self.position, None), *self._drain()]

    def new_epoch(self, position: Position) -> list[Step]:
        """The topic's history was lost: start over at ``position``, every subscriber told."""
        self.old_epochs.add(self.epoch)
        self.epoch, self.offset = position
        self.early.clear()
        return [(position, None)]

    def caught_up(self, found: Position, entries: list[tuple[int, Message]]) -> list[Step]:
        """Compare with the history after a reconnect: take what was missed, in order."""
        if found.epoch != self.epoch:
            return self.new_epoch(found)
        steps: list[Step] = []
        kept = [(offset, message) for offset, message in entries if offset <= found.offset]
        for offset, message in kept:  # a gap at their start waits, to be filled or skipped
            steps += self.arrived(Position(self.epoch, offset), message)
        if not kept and self.offset < found.offset:
            self.offset = found.offset  # all expired: nothing to deliver
            steps.append((found, None))
        return steps

    def _drain(self) -> list[Step]:
        steps: list[Step] = []
        early = self.early
        while early:
            message = early.pop(self.offset + 1, None)
            if message is None:
                break
            self.offset += 1
            steps.append((Position(self.epoch, self.offset), message))
        return steps
