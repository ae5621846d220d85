"""The backplane interface."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

from .._history import Position

__all__ = ["Backplane", "HistoryRead", "Receiver"]

Receiver = Callable[[str, bytes, "Position | None"], None]
"""Called with ``(topic, payload, position)`` for every message the backplane
delivers; ``position`` is the publication's in its topic's history, ``None``
for a publication without history."""

Resumed = Callable[[], None]
"""Called when the transport came back after it was lost (history may have moved on)."""


class HistoryRead(NamedTuple):
    """A topic's current position, and kept publications as ``(offset, payload)``, oldest first."""

    position: Position
    entries: list[tuple[int, bytes]]


class Backplane(ABC):
    """Carries published payloads between the processes of an app.

    Implementations never raise out of ``publish``, ``subscribe`` or
    ``unsubscribe`` because the transport is away: they log, count and carry
    on, and restore their subscriptions when it comes back.
    """

    def __init__(self) -> None:
        self.stats: dict[str, int] = {
            "reconnects": 0,
            "publish_failures": 0,
            "publish_overflows": 0,
            # Publications sent, and how many processes' subscriptions they reached
            # (Redis' PUBLISH reply): the second over the first is the fan-out per
            # publication, the number of processes holding the topic.
            "published": 0,
            "publish_receivers": 0,
            "received": 0,  # messages heard from the other processes (and this one)
        }
        self._ready = asyncio.Event()

    def _new_ready(self) -> None:
        """A fresh ``ready`` event for ``start``: an event waited on in one loop is
        bound to it, and every lifespan (every test client) may run in another."""
        self._ready = asyncio.Event()

    #: Seconds a ``once`` request's claim holds without renewal: a request whose
    #: process died runs again after this (section 12).
    once_lease = 15.0

    #: Told how long each round trip of its publish pipeline took, in seconds,
    #: where one is set (the app's telemetry sets it); a transport without
    #: round trips never calls it.
    round_trip: Callable[[float], None] | None = None

    #: Whether its calls wait on a transport (so a caller bounds them in time);
    #: an in-process backplane answers at once and never fails for a while.
    waits = True

    @property
    def shared(self) -> bool:
        """Whether anyone else can hear this backplane (else a publish is local only)."""
        return True

    @property
    def ready(self) -> bool:
        """Whether the transport is up and has acknowledged every subscription."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :attr:`ready`; return it."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @abstractmethod
    async def start(self, receive: Receiver, resumed: Resumed | None = None) -> None:
        """Start delivering to ``receive``; return without waiting for the transport.

        ``resumed`` is called each time the transport is back after a loss.
        """

    @abstractmethod
    async def stop(self) -> None:
        """Stop; bounded in time even when the transport is away."""

    @abstractmethod
    async def subscribe(self, subscription: str) -> None:
        """Hear ``subscription``: a topic, or an MQTT pattern with ``+`` and ``#``."""

    @abstractmethod
    async def unsubscribe(self, subscription: str) -> None:
        """Stop hearing ``subscription``."""

    @abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None:
        """Send ``payload`` to every subscriber of ``topic``, this process's included."""

    @abstractmethod
    async def send(self, topic: str, payload: bytes) -> int:
        """Publish ``payload`` now, confirmed: return how many subscriptions heard it.

        For messages whose sender must know whether anyone heard them (a
        server request to the process holding a connection: none means that
        process is gone). Each delivery counts: a process whose topic and
        pattern subscriptions both match hears it, and counts, twice.

        Raises whatever the transport raised.
        """

    # -- history: section 10 of the design --------------------------------------------

    @abstractmethod
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
        """Keep ``payload`` as ``topic``'s next publication and publish it, as one step.

        The offset is given in the same step as the live publication, so that
        every process hears a topic's publications in offset order. The topic
        keeps at least its last ``size`` publications, each ``ttl`` seconds.
        ``key`` names this publication: a retry with the same key, after a
        failure that left it unknown whether the first try landed, returns
        the first try's position instead of keeping it twice, for
        ``retry_for`` seconds (the caller stops retrying before). The caller
        delivers its own publication itself; hearing it back is allowed (the
        offset tells it apart), not required.

        Raises whatever the transport raised: the caller retries and gives up.
        """

    @abstractmethod
    async def read(self, topic: str, *, after: int | None, limit: int, ttl: float) -> HistoryRead:
        """Return ``topic``'s position and up to ``limit`` kept publications after offset ``after``.

        ``after=None``: from the oldest kept. A topic with no position yet gets
        one here (a new epoch at offset 0): reading fixes the epoch. The
        entries are read in the same step as the position.
        """

    @abstractmethod
    async def new_epoch_if_behind(self, topic: str, delivered: Position) -> Position:
        """Start a new epoch for ``topic`` if it stands before ``delivered`` in the same epoch.

        Called by a process that delivered ``delivered``, yet finds the topic
        behind it in the same epoch: the store lost publications (a restart
        from a snapshot older than them), so offsets would be given twice.
        Returns the topic's position afterwards.
        """

    # -- once requests: section 12 of the design ---------------------------------------

    @abstractmethod
    async def once_claim(self, key: str, owner: str, lease: float) -> tuple[str, bytes | None]:
        """Claim the request ``key`` for a run by ``owner``, in one step.

        Returns ``("run", None)``: claimed, for ``lease`` seconds unless
        renewed; ``("done", answer)``: a run's answer is kept; ``("running",
        None)``: another run holds it. Raises whatever the transport raised.
        """

    @abstractmethod
    async def once_keep(self, key: str, owner: str, answer: bytes, window: float) -> None:
        """Keep a run's ``answer`` for ``window`` seconds (another run's, kept first, stays)."""

    @abstractmethod
    async def once_renew(self, key: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s claim by ``lease`` seconds; ``False``: it is not ``owner``'s."""

    @abstractmethod
    async def once_release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim, if it still holds it: the request may run again."""

    # -- presence: section 11 of the design --------------------------------------------

    @abstractmethod
    async def presence_set(
        self, topic: str, members: dict[str, bytes], ttl: float, *, refresh: bool = False
    ) -> int:
        """Make each of ``members`` (id to info) a member of ``topic`` for ``ttl`` seconds.

        A member already there is refreshed; one that is new, or whose info
        changed, is logged as joined. With ``refresh``, a member already there
        keeps its info (a refresh carries what may have changed since; the
        store then reads no info for it). Members whose time ran out are
        removed and logged as left, with their info, on the way. Returns the
        number of the last change, these included.
        """

    @abstractmethod
    async def presence_remove(self, topic: str, members: list[str]) -> None:
        """Remove ``members`` from ``topic``; each one that was there is logged as left."""

    @abstractmethod
    async def presence_changes(
        self, topic: str, after: int
    ) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        """The changes to ``topic``'s members after change number ``after``.

        Returns the number of the last change and, oldest first, each change
        as ``(kind, member, info)`` (kind ``"j"`` joined, ``"l"`` left), or
        ``None`` where the log cannot give them all (trimmed, or lost with
        the store): the caller reads the members instead. Expired members
        are removed first.
        """

    @abstractmethod
    async def presence_members(self, topic: str) -> tuple[int, dict[str, bytes]]:
        """``topic``'s members (id to info) and the number of the last change, in one step."""

    @abstractmethod
    async def presence_count(self, topic: str) -> int:
        """How many members ``topic`` has, without reading them."""
