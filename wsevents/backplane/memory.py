"""MemoryBackplane: one process. Apps that share a ``memory://NAME`` hear each other."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from .._wildcards import matches
from ._base import Backplane, Receiver

__all__ = ["MemoryBackplane"]


class MemoryBackplane(Backplane):
    """An in-process backplane.

    ``memory://`` is private to one app; ``memory://NAME`` joins the hub NAME,
    shared by every backplane of this process with that URL, across event
    loops and threads.
    """

    _hubs: ClassVar[dict[str, list[MemoryBackplane]]] = {}

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.name = url.partition("://")[2]
        self._subscriptions: set[str] = set()
        self._receive: Receiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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

    async def start(self, receive: Receiver) -> None:
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
        for peer in list(self._hub):
            receive, loop = peer._receive, peer._loop
            if receive is None or loop is None or loop.is_closed():
                continue
            if any(matches(subscription, topic) for subscription in peer._subscriptions):
                # Delivered on the peer's own loop, never inside the publisher's call.
                loop.call_soon_threadsafe(receive, topic, payload)
