"""Redis behind Sentinel: ``redis+sentinel://host:port[,host:port...]/SERVICE[/db]``.

The master of SERVICE is the one the sentinels name (DESIGN.md section 14).
redis-py's Sentinel clients ask them where it is whenever they connect, so a
connection lost in a failover comes back to the new master. What they do not
see is a master that was cut off but is still alive (the sentinels promoted
its replica, and its clients' connections still work): so the backplane asks
the sentinels every ``sentinel_check`` seconds, and when the master moved it
drops its connections, the listener's included (:meth:`Sentinels.moved`).

redis-py's ``Sentinel.discover_master`` moves the sentinel that answered to
the head of its list; two at once (the listener's connect, a publish's, the
watch) can leave one sentinel twice in it and another not at all: never
asked again, and never closed (its connections left to the garbage
collector). Here one look at a time asks them, and :meth:`Sentinels.close`
closes the clients it was given, whatever order the list is in.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any
from urllib.parse import SplitResult, unquote

__all__ = ["SENTINEL_SCHEMES", "Sentinels", "address_of"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
FORM = "redis+sentinel://[[user]:password@]host:port[,host:port...]/SERVICE[/db]"


def address_of(host: str, form: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port``) of a URL that names several, as a pair."""
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"expected host:port, got {host!r}: {form}")
    return name.strip("[]"), int(port)


class Sentinels:
    """The sentinels of one URL: clients of the master they name, and a look at where it is.

    Args:
        parts: the URL, split.
        options: its query's options that the backplane did not take; the
            sentinels' own ``sentinel_password`` is taken here, and any other
            is refused.
        common: the connection options every client gets (timeouts, retries).
        check: seconds between two looks at where the master is.
    """

    def __init__(
        self, parts: SplitResult, options: dict[str, str], common: dict[str, Any], check: float
    ) -> None:
        from redis.asyncio.sentinel import Sentinel

        class OneLookAtATime(Sentinel):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
                self.looking = asyncio.Lock()

            async def discover_master(self, service_name: str) -> Any:
                async with self.looking:
                    return await super().discover_master(service_name)

        auth, _, hosts = parts.netloc.rpartition("@")
        username, _, password = auth.partition(":")
        path = [segment for segment in parts.path.split("/") if segment]
        if not hosts or not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(f"expected {FORM}, got {parts.geturl()!r}")
        sentinel_password = options.pop("sentinel_password", None)
        if options:
            raise ValueError(f"unknown option(s) {sorted(options)} in a redis+sentinel:// URL")
        self.service = unquote(path[0])
        self.check = check
        ssl = parts.scheme.lower().startswith("rediss")
        self._master: dict[str, Any] = {
            **common,
            "db": int(path[1]) if len(path) == 2 else 0,
            "username": unquote(username) or None,
            "password": unquote(password) or None,
            "ssl": ssl,
        }
        timeout = common["socket_connect_timeout"]
        self._sentinel = OneLookAtATime(
            [address_of(host, FORM) for host in hosts.split(",")],
            sentinel_kwargs={
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                "password": sentinel_password,
                "ssl": ssl,
            },
        )
        self._clients = tuple(self._sentinel.sentinels)
        self.master: tuple[str, int] | None = None  # where it was when last asked

    def client(self, **options: Any) -> Any:
        """A client of the master: each connection it makes asks the sentinels where it is."""
        return self._sentinel.master_for(self.service, **self._master, **options)

    async def moved(self) -> bool:
        """Ask the sentinels where the master is; whether it moved since they were last asked.

        Raises what redis-py raises when no sentinel names one (during a failover).
        """
        address = await self._sentinel.discover_master(self.service)
        known, self.master = self.master, address
        return known is not None and known != address

    async def close(self) -> None:
        """Close the connections to the sentinels, each whatever the others did."""
        for sentinel in self._clients:
            with suppress(Exception):
                await sentinel.aclose()
