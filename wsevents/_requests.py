"""Server requests across processes: ``EventApp.request`` and ``request_all`` (section 12).

They travel through the backplane as ``send_to`` does:

- a request for a connection that another process holds goes to that
  process's node topic (``$node/<node>``, the connection id's first part)
  with a key of its own (``q``) and the asking node (``r``); the answer comes
  back on the asking node's topic (``a``, the outcome in ``o``). The
  backplane counts who heard the request: nobody means that process is gone,
  and the asker hears ``ConnectionGone`` at once.
- ``request_all`` goes to the topic itself, which every process with a
  subscriber hears. Each delivery is answered once with the connections
  that process asks (``w``; none for a process that heard it twice, through
  a topic and a pattern subscription), then each connection's outcome as it
  comes (``m``). The asker knows how many deliveries to wait for from the
  backplane's count, and returns when every delivery is answered and every
  connection named has its outcome, or at ``timeout``.

An outcome on the wire is ``[kind, payload, channel]``: the answer's data and
the channel whose ``asks`` declaration validates it, or what ``conn.request``
raised.

Over 300 lines: both ends of both kinds of request (asking, and answering
for another process) share the wire format of outcomes kept here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from ._asking import request, timed_out, validated
from ._retry import Tally
from ._tasks import deadline
from ._wildcards import check_topic
from .exceptions import (
    ConnectionGone,
    EventError,
    PayloadError,
    RequestTimeout,
)

if TYPE_CHECKING:
    from ._broker import Broker
    from ._routing import Channel
    from ._session import Session
    from ._telemetry import Telemetry

__all__ = ["Requests"]

logger = logging.getLogger("wsevents")

OK, ERROR, TIMEOUT, GONE, PAYLOAD = "ok", "error", "timeout", "gone", "payload"

Outcome = list[Any]  # [kind, payload, channel name]


class _All:
    """One ``request_all``: the outcomes so far, who is still out, the deliveries answered."""

    __slots__ = ("answered", "done", "expected", "out", "results")

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}  # RequestTimeout until the outcome comes
        self.out: set[str] = set()
        self.expected: int | None = None  # deliveries, once the backplane counted them
        self.answered = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def asking(self, connection_id: str, event: str, timeout: float | None) -> None:
        if connection_id not in self.results:
            self.results[connection_id] = timed_out(connection_id, event, timeout)
            self.out.add(connection_id)

    def outcome(self, connection_id: str, result: Any) -> None:
        self.results[connection_id] = result
        self.out.discard(connection_id)
        self.check()

    def delivery_answered(self) -> None:
        self.answered += 1
        self.check()

    def check(self) -> None:
        if self.expected is None or self.answered < self.expected or self.out:
            return
        if not self.done.done():
            self.done.set_result(None)


class Requests:
    """This process's server requests of connections anywhere, and its answers for others.

    Args:
        broker: where the messages travel (``send``) and come from (its
            ``route``).
        find: the open session with an id, in this process.
        channels: the app's channels as they are now (an answer from another
            process is validated by the asking channel's ``reply``).
    """

    def __init__(
        self,
        broker: Broker,
        find: Callable[[str], Session | None],
        channels: Callable[[], Iterable[Channel]],
        tracing: Telemetry | None = None,
    ) -> None:
        self.tracing = tracing  # the app's telemetry, where it is on
        self._broker = broker
        self._find = find
        self._channels = channels
        self._keys = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._all: dict[str, _All] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = Tally()
        broker.route("q", self.heard)
        broker.route("a", self.heard)

    async def stop(self) -> None:
        """Cancel the answers this process is still getting for other processes."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _key(self) -> str:
        return f"{self._broker.node_id}:{next(self._keys)}"

    # -- asking ------------------------------------------------------------------------

    async def request(self, connection_id: str, event: str, data: Any, timeout: float) -> Any:
        """``conn.request`` for a connection any process holds (``EventApp.request``)."""
        session = self._find(connection_id)
        if session is not None:
            return await request(session, event, data, timeout)
        broker = self._broker
        node = connection_id.partition("-")[0]
        if not node or node == broker.node_id or not broker.backplane.shared:
            raise ConnectionGone(f"no process holds connection {connection_id!r}")
        key = self._key()
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[key] = waiter
        message = {**self._question(key, event, data, timeout), "c": connection_id}
        try:
            async with deadline(timeout):
                heard = await self._send(f"$node/{node}", message)
                if heard == 0:
                    raise ConnectionGone(f"no live process holds connection {connection_id!r}")
                outcome = await waiter  # where nobody can tell (heard None): until timeout
        except TimeoutError:
            raise timed_out(connection_id, event, timeout) from None
        finally:
            self._waiting.pop(key, None)
        return self._result(outcome, event, connection_id)

    def _question(self, key: str, event: str, data: Any, timeout: float) -> dict[str, Any]:
        """A request to another process: its key, event, data, who waits, and for how long.

        With telemetry on, the current trace context too: the holder's span is its child.
        """
        question = {
            "q": key,
            "e": event,
            "d": to_jsonable_python(data),
            "r": self._broker.node_id,
            "to": timeout,
        }
        if self.tracing is not None:
            question["p"] = self.tracing.carrier()
        return question

    async def request_all(
        self, topic: str, event: str, data: Any, timeout: float
    ) -> dict[str, Any]:
        """Ask every subscriber of ``topic`` in every process; each one's data or exception."""
        check_topic(topic)
        broker = self._broker
        asking = _All()
        key = self._key()
        self._all[key] = asking
        sessions = self._local(topic)
        for session in sessions:
            asking.asking(session.id, event, timeout)
        local = [
            asyncio.ensure_future(self._ask_here(session, event, data, timeout, asking))
            for session in sessions
        ]
        message = {**self._question(key, event, data, timeout), "t": topic}
        try:
            async with deadline(timeout):
                heard = await self._send(topic, message) if broker.backplane.shared else 0
                asking.expected = heard or 0
                asking.check()
                await asyncio.gather(*local, asking.done)
        except TimeoutError:
            pass  # those still out keep their RequestTimeout
        finally:
            self._all.pop(key, None)
            for task in local:
                task.cancel()
        return asking.results

    async def _ask_here(
        self, session: Session, event: str, data: Any, timeout: float, asking: _All
    ) -> None:
        try:
            result = await request(session, event, data, timeout)
        except (EventError, RequestTimeout, ConnectionGone, PayloadError) as exc:
            result = exc
        asking.outcome(session.id, result)

    def _local(self, topic: str) -> list[Session]:
        found = (self._find(member.id) for member in self._broker.subscriptions.members(topic))
        return [session for session in found if session is not None]

    async def _send(self, topic: str, message: dict[str, Any]) -> int | None:
        """Send now; how many heard it, or ``None`` where the backplane could not tell."""
        try:
            return await self._broker.send(topic, message)
        except Exception as exc:
            if self._failures.add("send"):
                logger.warning("a server request could not go through the backplane: %r", exc)
            return None

    # -- what the backplane brings -------------------------------------------------------

    def heard(self, message: dict[str, Any], ours: bool, seen: bool) -> None:
        """Take a request or an answer from the backplane (never raises into it)."""
        if "a" in message:
            self._answer_heard(message)
        elif "c" in message:  # a request of one connection, which this process holds
            if not seen:
                self._spawn(self._answer_one(message))
        elif ours:  # our own request_all, heard back: that delivery needs no answer
            asking = self._all.get(message["q"])
            if asking is not None:
                asking.delivery_answered()
        elif seen:  # heard twice: the second delivery is answered with nobody to ask
            self._spawn(self._reply(message["r"], {"a": message["q"], "e": "", "w": []}))
        else:
            self._spawn(self._answer_all(message))

    def _answer_heard(self, message: dict[str, Any]) -> None:
        key = message["a"]
        if "o" in message:
            waiter = self._waiting.get(key)
            if waiter is not None and not waiter.done():
                waiter.set_result(message["o"])
            return
        asking = self._all.get(key)
        if asking is None:
            return  # returned already
        if "w" in message:  # the connections that process asks: out until they answer
            for connection_id in message["w"]:
                asking.asking(connection_id, message["e"], None)
            asking.delivery_answered()
            return
        connection_id, *outcome = message["m"]
        try:
            result = self._result(outcome, message["e"], connection_id)
        except Exception as exc:
            result = exc
        asking.outcome(connection_id, result)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, node: str, message: dict[str, Any]) -> None:
        await self._send(f"$node/{node}", message)

    async def _answer_one(self, message: dict[str, Any]) -> None:
        session = self._find(message["c"])
        if session is None:
            outcome: Outcome = [GONE, None, None]
        else:
            outcome = await _outcome(session, message)
        await self._reply(message["r"], {"a": message["q"], "o": outcome})

    async def _answer_all(self, message: dict[str, Any]) -> None:
        sessions = self._local(message["t"])
        origin, key, event = message["r"], message["q"], message["e"]
        await self._reply(origin, {"a": key, "e": event, "w": [session.id for session in sessions]})

        async def ask(session: Session) -> None:
            outcome = await _outcome(session, message)
            await self._reply(origin, {"a": key, "e": event, "m": [session.id, *outcome]})

        await asyncio.gather(*(ask(session) for session in sessions))

    # -- outcomes ------------------------------------------------------------------------

    def _result(self, outcome: Outcome, event: str, connection_id: str) -> Any:
        """An outcome from another process: the answer's data (validated here), or raise."""
        kind, payload, channel_name = outcome
        if kind == OK:
            return self._validated(channel_name, event, payload)
        if kind == ERROR:
            raise EventError(*payload)
        if kind == TIMEOUT:
            raise timed_out(connection_id, event, payload)
        if kind == PAYLOAD:
            raise PayloadError(payload)
        raise ConnectionGone(f"connection {connection_id} closed")

    def _validated(self, channel_name: str | None, event: str, data: Any) -> Any:
        """Validated here again, by the asking channel: the answer as ``conn.request`` gives it."""
        for channel in self._channels():
            if channel.name == channel_name:
                return validated(channel.asked.get(event), event, data)
        return data


async def _outcome(session: Session, question: dict[str, Any]) -> Outcome:
    """Ask ``session`` here, for another process: what became of it, as it travels."""
    channel = session.channel.name
    event, timeout = question["e"], question["to"]
    try:
        value = await request(session, event, question["d"], timeout, question.get("p"))
    except EventError as exc:
        return [ERROR, [exc.code, exc.message, to_jsonable_python(exc.details)], channel]
    except RequestTimeout:
        return [TIMEOUT, timeout, channel]
    except ConnectionGone:
        return [GONE, None, channel]
    except PayloadError as exc:
        return [PAYLOAD, str(exc), channel]
    return [OK, to_jsonable_python(value), channel]
