"""The calls of the Redis backplane's Lua scripts: history, presence, ``once`` requests.

A mixin of :class:`~wsevents.backplane.redis.RedisBackplane`, which runs each
call (``_script``) in a pipeline shared with the calls made meanwhile.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from .._history import Position
from .._tasks import within
from . import _scripts
from ._base import HistoryRead
from ._scripts import field, mapping, text
from .memory import EPOCH_TTL, new_epoch

__all__ = [
    "PRESENCE_LOG",
    "Call",
    "RedisStore",
    "answer",
    "call_all",
    "call_one",
    "evalsha_all",
    "evalsha_one",
    "fail_calls",
]

PRESENCE_LOG = 10_000  # changes a reader may be behind before it reads the members instead

# A script call waiting for its round trip: the script, its keys and arguments, its caller.
Call = tuple[Any, list[str], list[Any], "asyncio.Future[Any]"]


async def evalsha_one(
    client: Any, script: Any, keys: list[str], args: list[Any], timeout: float
) -> Any:
    """Run one script call by its SHA, as a command: its result, or the script's error
    (a ``ResponseError``, ``NoScriptError`` among them) returned as a pipeline gives it."""
    from redis.exceptions import ResponseError  # redis-py is optional: imported once used

    try:
        return await within(client.evalsha(script.sha, len(keys), *keys, *args), timeout)
    except ResponseError as exc:
        return exc


async def evalsha_all(client: Any, calls: list[Call], timeout: float) -> list[Any]:
    """Run each of ``calls`` by its script's SHA in one pipeline: the results, errors kept.

    One call alone goes as a command, not in a pipeline (a fifth of a round trip less).
    """
    if len(calls) == 1:
        script, keys, args, _answered = calls[0]
        return [await evalsha_one(client, script, keys, args, timeout)]
    pipeline = client.pipeline(transaction=False)
    for script, keys, args, _answered in calls:
        pipeline.evalsha(script.sha, len(keys), *keys, *args)
    results: list[Any] = await within(pipeline.execute(raise_on_error=False), timeout)
    return results


async def call_one(
    client: Any, script: Any, keys: list[str], args: list[Any], timeout: float
) -> Any:
    """One call from its caller's task, answered as :func:`call_all` answers each of its own."""
    from redis.exceptions import NoScriptError

    try:
        result = await evalsha_one(client, script, keys, args, timeout)
    except Exception as exc:
        raise ConnectionError(repr(exc)) from None
    if isinstance(result, NoScriptError):  # it did not run: safe to send again
        result = await within(script(keys=keys, args=args), timeout)
    if isinstance(result, Exception):
        raise result
    return result


async def call_all(client: Any, batch: list[Call], timeout: float) -> None:
    """Run each call of ``batch`` in one round trip; answer each caller.

    By SHA (not redis-py's pipelined scripts, which ask ``SCRIPT EXISTS``
    first, a second round trip every time); a call that Redis did not know
    the script of (it restarted, or was flushed) did not run, and goes again
    through redis-py's script, which loads it.
    """
    from redis.exceptions import NoScriptError  # redis-py is optional: imported once used

    batch = [call for call in batch if not call[3].done()]
    try:
        results = await evalsha_all(client, batch, timeout)
    except Exception as exc:
        fail_calls(batch, repr(exc))
        return
    for call, result in zip(batch, results, strict=True):
        script, keys, args, answered = call
        if isinstance(result, NoScriptError):  # it did not run: safe to send again
            try:
                result = await within(script(keys=keys, args=args), timeout)
            except Exception as exc:
                result = exc
        answer(answered, result)


def answer(answered: asyncio.Future[Any], result: Any) -> None:
    """Give a call's caller its result, or its exception, unless it stopped waiting."""
    if answered.done():
        return
    if isinstance(result, Exception):
        answered.set_exception(result)
    else:
        answered.set_result(result)


def fail_calls(calls: Iterable[Call], why: str) -> None:
    """Answer the callers of ``calls`` still waiting with a ``ConnectionError``."""
    for _script, _keys, _args, answered in calls:
        answer(answered, ConnectionError(why))


class RedisStore:
    """History, presence and ``once`` claims kept in Redis, through its scripts."""

    prefix: str
    # '1' where the master may fail over to a replica that lacks the last writes
    # (Sentinel): the history scripts then start a new epoch after a failover.
    failover_guard: str = "0"

    def register_scripts(self, register: Callable[[str], Any]) -> None:
        """Register every script with redis-py, which knows each by its SHA."""
        self._append = register(_scripts.APPEND)
        self._read = register(_scripts.READ)
        self._renew = register(_scripts.RENEW)
        self._presence_set = register(_scripts.PRESENCE_SET)
        self._presence_remove = register(_scripts.PRESENCE_REMOVE)
        self._presence_changes = register(_scripts.PRESENCE_CHANGES)
        self._presence_members = register(_scripts.PRESENCE_MEMBERS)
        self._presence_count = register(_scripts.PRESENCE_COUNT)
        self._once_claim = register(_scripts.ONCE_CLAIM)
        self._once_keep = register(_scripts.ONCE_KEEP)
        self._once_renew = register(_scripts.ONCE_RENEW)
        self._once_release = register(_scripts.ONCE_RELEASE)

    def _keyed(self, topic: str) -> str:
        """``topic`` as it appears in key and channel names (Redis Cluster tags it)."""
        return topic

    def _result_key(self, topic: str, key: str) -> str:
        """The key that remembers an append's result for a while."""
        return f"{self.prefix}result:{key}"

    def _publish_mode(self, topic: str) -> str:
        """How the APPEND script publishes: 'p' PUBLISH; 's' SPUBLISH; 'sp' both."""
        return "p"

    @abstractmethod
    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script in Redis."""

    # -- history -----------------------------------------------------------------------

    def _history_keys(self, topic: str) -> list[str]:
        keyed = self._keyed(topic)
        return [f"{self.prefix}meta:{keyed}", f"{self.prefix}history:{keyed}"]

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
        keys = [*self._history_keys(topic), self._result_key(topic, key)]
        args: list[bytes | str | int] = [
            payload,
            size,
            max(1, int(ttl * 1000)),
            self.prefix + self._keyed(topic),
            new_epoch(),
            int(EPOCH_TTL),
            max(1, int(retry_for * 1000)),
            self.failover_guard,
            self._publish_mode(topic),
            self.prefix + topic,
        ]
        offset, epoch = await self._script(self._append, keys, args)
        return Position(text(epoch), int(offset))

    async def read(self, topic: str, *, after: int | None, limit: int, ttl: float) -> HistoryRead:
        # Entry IDs are "<offset>-0": "<after>-1" is the first ID after offset ``after``.
        start = "-" if after is None else f"{after}-1"
        args: list[bytes | str | int] = [
            start,
            limit,
            new_epoch(),
            int(EPOCH_TTL),
            self.failover_guard,
        ]
        offset, epoch, rows = await self._script(self._read, self._history_keys(topic), args)
        entries = [(int(text(row[0]).partition("-")[0]), field(row[1])) for row in rows]
        return HistoryRead(Position(text(epoch), int(offset)), entries)

    async def new_epoch_if_behind(self, topic: str, delivered: Position) -> Position:
        args: list[bytes | str | int] = [
            delivered.epoch,
            delivered.offset,
            new_epoch(),
            int(EPOCH_TTL),
            self.failover_guard,
        ]
        offset, epoch = await self._script(self._renew, self._history_keys(topic), args)
        return Position(text(epoch), int(offset))

    # -- presence ----------------------------------------------------------------------

    def _presence_keys(self, topic: str) -> list[str]:
        base = f"{self.prefix}presence:{self._keyed(topic)}:"
        return [base + "z", base + "h", base + "log", base + "seq"]

    async def presence_set(
        self, topic: str, members: dict[str, bytes], ttl: float, *, refresh: bool = False
    ) -> int:
        args: list[bytes | str | int] = [
            max(1, int(ttl * 1000)),
            max(60, int(ttl * 3)),
            "r" if refresh else "j",
        ]
        for member, info in members.items():
            args += [member, info]
        return int(await self._script(self._presence_set, self._presence_keys(topic), args))

    async def presence_remove(self, topic: str, members: list[str]) -> None:
        await self._script(self._presence_remove, self._presence_keys(topic), list(members))

    async def presence_changes(
        self, topic: str, after: int
    ) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        args: list[bytes | str | int] = [after, PRESENCE_LOG]
        seq, rows = await self._script(self._presence_changes, self._presence_keys(topic), args)
        if not rows and rows != []:  # false: the log cannot tell
            return int(seq), None
        changes = []
        for _id, fields in rows:
            entry = mapping(fields)
            changes.append((text(entry[b"k"]), text(entry[b"m"]), bytes(entry[b"i"])))
        return int(seq), changes

    async def presence_members(self, topic: str) -> tuple[int, dict[str, bytes]]:
        seq, flat = await self._script(self._presence_members, self._presence_keys(topic), [])
        found = mapping(flat)
        return int(seq), {text(member): bytes(info) for member, info in found.items()}

    async def presence_count(self, topic: str) -> int:
        return int(await self._script(self._presence_count, self._presence_keys(topic)[:1], []))

    # -- once requests: section 12 -------------------------------------------------------

    async def once_claim(self, key: str, owner: str, lease: float) -> tuple[str, bytes | None]:
        found = await self._script(
            self._once_claim, [f"{self.prefix}once:{key}"], [owner, max(1, int(lease * 1000))]
        )
        kind = text(found[0])
        return kind, (bytes(found[1]) if kind == "done" else None)

    async def once_keep(self, key: str, owner: str, answer: bytes, window: float) -> None:
        args: list[Any] = [owner, answer, max(1, int(window * 1000))]
        await self._script(self._once_keep, [f"{self.prefix}once:{key}"], args)

    async def once_renew(self, key: str, owner: str, lease: float) -> bool:
        args: list[Any] = [owner, max(1, int(lease * 1000))]
        return bool(await self._script(self._once_renew, [f"{self.prefix}once:{key}"], args))

    async def once_release(self, key: str, owner: str) -> None:
        await self._script(self._once_release, [f"{self.prefix}once:{key}"], [owner])
