"""The backplane interface."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ["Backplane", "Receiver"]

Receiver = Callable[[str, bytes], None]
"""Called with ``(topic, payload)`` for every message the backplane delivers."""


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
        }
        self._ready = asyncio.Event()

    def _new_ready(self) -> None:
        """A fresh ``ready`` event for ``start``: an event waited on in one loop is
        bound to it, and every lifespan (every test client) may run in another."""
        self._ready = asyncio.Event()

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
    async def start(self, receive: Receiver) -> None:
        """Start delivering to ``receive``; return without waiting for the transport."""

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
