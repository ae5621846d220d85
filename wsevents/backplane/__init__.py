"""Backplanes: how a publish reaches the subscribers of every process.

A backplane carries bytes between the processes (or machines) of one app; it
knows nothing of codecs or connections. Membership lives in each process:
an app subscribes on the backplane only to the topics and patterns it has
local subscribers for, and filters and de-duplicates what it receives, so a
backplane may deliver more than asked (a broader pattern) but must not lose
what it was asked for while connected.

Pick one by URL with :func:`create_backplane`: ``memory://`` (one process,
the default), ``memory://NAME`` (apps in one process that share NAME hear
each other: for tests), ``redis://host:port/db`` and ``rediss://...``
(Redis pub/sub through ``redis.asyncio``; ``pip install wsevents[redis]``), or
``redis+sentinel://host:port,host:port/SERVICE[/db]`` (the master Sentinel
names for SERVICE, followed across a failover), or
``redis+cluster://host:port,host:port`` (Redis Cluster, through sharded pub/sub).
"""

from __future__ import annotations

from ._base import Backplane, Receiver
from .memory import MemoryBackplane

__all__ = ["Backplane", "MemoryBackplane", "Receiver", "create_backplane"]


def create_backplane(url: str) -> Backplane:
    """Return the backplane for ``url``.

    Raises:
        ValueError: the URL's scheme is not one wsevents knows.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryBackplane(url)
    if scheme in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        from .redis import RedisBackplane

        return RedisBackplane(url)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .cluster import RedisClusterBackplane

        return RedisClusterBackplane(url)
    raise ValueError(
        f"unknown backplane url {url!r}: expected memory://, redis://host:port/db, rediss://"
        ", redis+sentinel://host:port,host:port/SERVICE or redis+cluster://host:port,host:port"
    )
