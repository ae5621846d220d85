"""MemoryBackplane: one process. Apps that share a ``memory://NAME`` hear each other.

Over 300 lines: pub/sub, history and presence of the in-process backplane in
one class, kept beside each other as the Redis backplane keeps them."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
from collections import OrderedDict, deque
from math import inf
from time import monotonic
from typing import Any, ClassVar

from .._history import Position
from .._wildcards import matches
from ._base import Backplane, HistoryRead, Receiver, Resumed

__all__ = ["EPOCH_TTL", "MemoryBackplane", "new_epoch"]

EPOCH_TTL = 30 * 86400.0
"""How long a topic's epoch and offset outlive its last publication, in seconds.

Longer than any history ``ttl``: a client whose position equals a quiet
topic's recovers with nothing to replay, though its publications expired.
"""


def new_epoch() -> str:
    """A fresh epoch: eight random URL-safe characters."""
    return secrets.token_urlsafe(6)


class _Log:
    """One topic's history in this process: its position and its kept publications."""

    __slots__ = ("entries", "epoch", "offset", "touched")

    def __init__(self, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: deque[tuple[int, bytes, float]] = deque()  # offset, payload, expiry
        self.touched = now

    def expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][2] <= now:
            entries.popleft()


class _Histories:
    """Every topic's history for one hub (or one private backplane), safe across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: dict[str, _Log] = {}
        # Append keys already kept, oldest first: their position and until when.
        self.results: OrderedDict[str, tuple[Position, float]] = OrderedDict()

    def log(self, topic: str, now: float) -> _Log:
        log = self.logs.get(topic)
        if log is None or now - log.touched > EPOCH_TTL:
            log = self.logs[topic] = _Log(now)
        log.touched = now
        log.expire(now)
        return log


class _Room:
    """One topic's members in this process (or hub), and the log of their changes."""

    __slots__ = ("due", "log", "members", "seq")

    def __init__(self) -> None:
        self.members: dict[str, tuple[bytes, float]] = {}  # id: info, expiry
        # Change numbers never repeat, not even in a room made again for the topic: a
        # reader holding an old room's number reads the members instead of a wrong log.
        self.seq = next(_ROOM_BASES) << 32
        self.log: deque[tuple[int, str, str, bytes]] = deque(maxlen=PRESENCE_LOG)
        self.due = inf  # no member expires before this

    def change(self, kind: str, member: str, info: bytes) -> None:
        self.seq += 1
        self.log.append((self.seq, kind, member, info))

    def sweep(self, now: float) -> None:
        if now < self.due:
            return
        for member in [m for m, (_, expiry) in self.members.items() if expiry <= now]:
            self.change("l", member, self.members.pop(member)[0])
        self.due = min((expiry for _, expiry in self.members.values()), default=inf)


class MemoryBackplane(Backplane):
    """An in-process backplane.

    ``memory://`` is private to one app; ``memory://NAME`` joins the hub NAME,
    shared by every backplane of this process with that URL, across event
    loops and threads.
    """

    waits = False
    _hubs: ClassVar[dict[str, list[MemoryBackplane]]] = {}
    _hub_histories: ClassVar[dict[str, _Histories]] = {}
    _hub_rooms: ClassVar[dict[str, dict[str, _Room]]] = {}
    # Once requests, by key: ("R", owner) while a run holds it, ("D", answer) after,
    # each with the monotonic time it lapses.
    _hub_onces: ClassVar[dict[str, dict[str, tuple[str, Any, float]]]] = {}
    _hub_lock = threading.Lock()

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.name = url.partition("://")[2]
        self._subscriptions: set[str] = set()
        self._receive: Receiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.name:
            with self._hub_lock:
                self._histories = self._hub_histories.setdefault(self.name, _Histories())
                self._rooms = self._hub_rooms.setdefault(self.name, {})
                self._onces = self._hub_onces.setdefault(self.name, {})
        else:
            self._histories = _Histories()
            self._rooms = {}
            self._onces = {}
        self._sweep_at = 1024  # the size of the once store at which lapsed entries go
        self.stats["once_lapsed"] = 0  # once claims and answers dropped once their time passed

    def __repr__(self) -> str:
        return f"MemoryBackplane({self.name!r})"

    @property
    def _hub(self) -> list[MemoryBackplane]:
        if not self.name:
            return [self] if self._receive is not None else []
        return self._hubs.get(self.name, [])

    @property
    def shared(self) -> bool:
        return len(self._hub) > 1

    async def start(self, receive: Receiver, resumed: Resumed | None = None) -> None:
        self._new_ready()
        self._receive = receive
        self._loop = asyncio.get_running_loop()
        if self.name:
            self._hubs.setdefault(self.name, []).append(self)
        self._ready.set()

    async def stop(self) -> None:
        if self.name and self in self._hubs.get(self.name, []):
            self._hubs[self.name].remove(self)
            if not self._hubs[self.name]:
                del self._hubs[self.name]
        self._receive = None
        self._ready.clear()

    async def subscribe(self, subscription: str) -> None:
        self._subscriptions.add(subscription)

    async def unsubscribe(self, subscription: str) -> None:
        self._subscriptions.discard(subscription)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.send(topic, payload)

    async def send(self, topic: str, payload: bytes) -> int:
        self.stats["published"] += 1
        receivers = self._fan_out(topic, payload, None)
        self.stats["publish_receivers"] += receivers
        return receivers

    def _fan_out(
        self, topic: str, payload: bytes, position: Position | None, *, others: bool = False
    ) -> int:
        """Hand the payload to every peer subscribed to ``topic``; return how many."""
        receivers = 0
        for peer in list(self._hub):
            if others and peer is self:
                continue
            receive, loop = peer._receive, peer._loop
            if receive is None or loop is None or loop.is_closed():
                continue
            if any(matches(subscription, topic) for subscription in peer._subscriptions):
                # Delivered on the peer's own loop, never inside the publisher's call.
                loop.call_soon_threadsafe(peer._heard, receive, topic, payload, position)
                receivers += 1
        return receivers

    def _heard(
        self, receive: Receiver, topic: str, payload: bytes, position: Position | None
    ) -> None:
        self.stats["received"] += 1
        receive(topic, payload, position)

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
        histories = self._histories
        with histories.lock:
            now = monotonic()
            results = histories.results
            known = results.get(key)
            if known is not None and known[1] > now:
                return known[0]
            log = histories.log(topic, now)
            offset = log.offset = log.offset + 1
            position = Position(log.epoch, offset)
            entries = log.entries
            entries.append((offset, payload, now + ttl))
            while len(entries) > size:
                entries.popleft()
            results[key] = (position, now + retry_for)  # expired ones are ignored when read
            if len(results) > _RESULTS_KEPT:
                results.popitem(last=False)  # O(1); a dict's first is not, after many
            # In the lock: every peer hears a topic's publications in offset order.
            # Not this backplane's app: it delivers what it appended itself.
            if self.name:  # a private one has no peers
                self._fan_out(topic, payload, position, others=True)
        return position

    async def read(self, topic: str, *, after: int | None, limit: int, ttl: float) -> HistoryRead:
        histories = self._histories
        with histories.lock:
            log = histories.log(topic, monotonic())
            start = 0 if after is None else after
            entries = [(offset, payload) for offset, payload, _ in log.entries if offset > start]
            return HistoryRead(Position(log.epoch, log.offset), entries[:limit])

    async def new_epoch_if_behind(self, topic: str, delivered: Position) -> Position:
        histories = self._histories
        with histories.lock:
            log = histories.log(topic, monotonic())
            if log.epoch == delivered.epoch and log.offset < delivered.offset:
                log = histories.logs[topic] = _Log(monotonic())
            return Position(log.epoch, log.offset)

    # Presence: under the histories' lock, which every backplane of a hub shares.

    def _once(self, key: str) -> tuple[str, Any, float] | None:
        held = self._onces.get(key)
        if held is not None and held[2] <= monotonic():
            del self._onces[key]
            self.stats["once_lapsed"] += 1
            return None
        return held

    def _sweep_onces(self) -> None:
        """Drop what lapsed, each time the store has doubled: nothing is kept past its time."""
        onces = self._onces
        if len(onces) < self._sweep_at:
            return
        now = monotonic()
        lapsed = [key for key, held in onces.items() if held[2] <= now]
        for key in lapsed:
            del onces[key]
        self.stats["once_lapsed"] += len(lapsed)
        self._sweep_at = max(2 * len(onces), 1024)

    async def once_claim(self, key: str, owner: str, lease: float) -> tuple[str, bytes | None]:
        with self._hub_lock:
            self._sweep_onces()
            held = self._once(key)
            if held is None:
                self._onces[key] = ("R", owner, monotonic() + lease)
                return "run", None
            return ("done", held[1]) if held[0] == "D" else ("running", None)

    async def once_keep(self, key: str, owner: str, answer: bytes, window: float) -> None:
        with self._hub_lock:
            held = self._once(key)
            if held is None or held[0] != "D":
                self._onces[key] = ("D", answer, monotonic() + window)

    async def once_renew(self, key: str, owner: str, lease: float) -> bool:
        with self._hub_lock:
            held = self._once(key)
            if held is None or held[:2] != ("R", owner):
                return False
            self._onces[key] = ("R", owner, monotonic() + lease)
            return True

    async def once_release(self, key: str, owner: str) -> None:
        with self._hub_lock:
            held = self._once(key)
            if held is not None and held[:2] == ("R", owner):
                del self._onces[key]

    def _room(self, topic: str) -> _Room:
        room = self._rooms.get(topic)
        if room is None:
            room = self._rooms[topic] = _Room()
        room.sweep(monotonic())
        return room

    def _existing(self, topic: str) -> _Room | None:
        """The topic's room, if it has one: reading makes none (a room ends with its members)."""
        room = self._rooms.get(topic)
        if room is not None:
            room.sweep(monotonic())
        return room

    async def presence_set(
        self, topic: str, members: dict[str, bytes], ttl: float, *, refresh: bool = False
    ) -> int:
        with self._histories.lock:
            room = self._room(topic)
            expiry = monotonic() + ttl
            room.due = min(room.due, expiry)
            for member, info in members.items():
                old = room.members.get(member)
                if old is not None and refresh:
                    info = old[0]
                room.members[member] = (info, expiry)
                if old is None or old[0] != info:
                    room.change("j", member, info)
            return room.seq

    async def presence_remove(self, topic: str, members: list[str]) -> None:
        with self._histories.lock:
            room = self._room(topic)
            for member in members:
                old = room.members.pop(member, None)
                if old is not None:
                    room.change("l", member, old[0])
            if not room.members:  # a reader of its log reads the (no) members instead
                del self._rooms[topic]

    async def presence_changes(
        self, topic: str, after: int
    ) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        with self._histories.lock:
            room = self._existing(topic)
            if room is None:
                return 0, None  # no member now: read the members
            if after == room.seq:
                return room.seq, []
            if after > room.seq or not room.log or room.log[0][0] > after + 1:
                return room.seq, None  # trimmed: read the members
            changes = [(kind, m, info) for seq, kind, m, info in room.log if seq > after]
            if not room.members:
                del self._rooms[topic]
            return room.seq, changes

    async def presence_members(self, topic: str) -> tuple[int, dict[str, bytes]]:
        with self._histories.lock:
            room = self._existing(topic)
            if room is None:
                return 0, {}
            return room.seq, {member: info for member, (info, _) in room.members.items()}

    async def presence_count(self, topic: str) -> int:
        with self._histories.lock:
            room = self._existing(topic)
            return 0 if room is None else len(room.members)


_RESULTS_KEPT = 10_000  # append keys remembered per hub, for retries
PRESENCE_LOG = 10_000  # changes kept per topic; a reader further behind reads the members
_ROOM_BASES = itertools.count(1)
