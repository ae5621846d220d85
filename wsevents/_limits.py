"""Per-connection limits (DESIGN.md section 6)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Per-connection limits, each enforced with a close code or an error frame.

    Args:
        max_message_bytes: a larger frame closes the connection with 1009.
        rate: events per second a connection may send (token bucket); ``None``
            turns rate limiting off.
        burst: the bucket's size.
        send_queue: frames queued for a client that reads slower than we send;
            a connection whose queue is full is closed with 1013.
        send_timeout: seconds a send to a client that stopped reading may take
            (checked four times a second, so up to a quarter of a second more).
        idle_timeout: seconds without a frame from the client before it is
            closed with 1000; ``None`` for never.
        concurrency: frames handled at once per connection; replies stay
            correlated by id. The receive loop keeps reading while handlers
            run: answers to server requests are taken at once.
        receive_queue: frames that wait, in order, while ``concurrency``
            handlers run; a client that sends more is closed with 1008. At
            most ``receive_queue`` times ``max_message_bytes`` wait per
            connection.
        max_requests: server requests (``conn.request``) open at once on one
            connection; one more raises ``EventError("rate_limited")``.
        max_subscriptions: topics one connection may subscribe to.
        max_connections: open connections the app accepts; the next handshake
            is refused with 503. ``None`` for no limit.
        handshake_timeout: seconds the ``on_connect`` hooks may take before the
            handshake is refused with 503.
    """

    max_message_bytes: int = 1_048_576
    rate: float | None = 100.0
    burst: int = 200
    send_queue: int = 256
    send_timeout: float = 5.0
    idle_timeout: float | None = None
    concurrency: int = 1
    receive_queue: int = 64
    max_requests: int = 32
    max_subscriptions: int = 128
    max_connections: int | None = None
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "burst",
            "send_queue",
            "concurrency",
            "receive_queue",
            "max_requests",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_subscriptions < 0:
            raise ValueError(f"max_subscriptions must be >= 0, got {self.max_subscriptions!r}")
        if self.max_connections is not None and self.max_connections < 0:
            raise ValueError(f"max_connections must be >= 0, got {self.max_connections!r}")
        for name in ("rate", "send_timeout", "idle_timeout", "handshake_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
