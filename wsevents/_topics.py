"""Topics: this process's subscriptions and the broker that fans publishes out.

Topic names and MQTT wildcard matching are pure functions in ``_wildcards``,
re-exported here; the backplanes use them too. History topics' ordering and
recovery are ``_streams``'s; the broker routes to it and encodes the frames.

Over 300 lines: the topic table and the broker's three paths into it (a local
publish, a message from the backplane, a subscription to a history topic),
which share the table and the frame encoding.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgpack
from pydantic_core import to_jsonable_python

from ._envelope import event_frame
from ._history import SUBSCRIBED_EVENT, History, Position, Publication, history_rule
from ._presence import Presence, Rooms
from ._streams import Held, Message, Streams
from ._wildcards import (
    MAX_TOPIC_LENGTH,
    check_pattern,
    check_topic,
    is_pattern,
    match_levels,
    matches,
)
from .exceptions import BackplaneUnavailable, TopicError

if TYPE_CHECKING:
    from ._routing import Channel
    from ._session import Session
    from .backplane import Backplane
    from .codecs import Codec

__all__ = [
    "MAX_TOPIC_LENGTH",
    "Broker",
    "Topics",
    "check_pattern",
    "check_topic",
    "is_pattern",
    "matches",
]

logger = logging.getLogger("wsevents")

M = TypeVar("M")


class Topics(Generic[M]):
    """Who subscribed to what, in this process: exact topics and wildcard patterns."""

    def __init__(self) -> None:
        self._exact: dict[str, set[M]] = {}
        self._patterns: dict[str, tuple[tuple[str, ...], set[M]]] = {}

    def add(self, subscription: str, member: M) -> bool:
        """Subscribe ``member``; return whether it is the subscription's first member."""
        if is_pattern(subscription):
            entry = self._patterns.get(subscription)
            if entry is None:
                self._patterns[subscription] = (tuple(subscription.split("/")), {member})
                return True
            entry[1].add(member)
            return False
        members = self._exact.get(subscription)
        if members is None:
            self._exact[subscription] = {member}
            return True
        members.add(member)
        return False

    def discard(self, subscription: str, member: M) -> bool:
        """Unsubscribe ``member``; return whether the subscription now has no member."""
        if is_pattern(subscription):
            entry = self._patterns.get(subscription)
            if entry is None or member not in entry[1]:
                return False
            entry[1].discard(member)
            if entry[1]:
                return False
            del self._patterns[subscription]
            return True
        members = self._exact.get(subscription)
        if members is None or member not in members:
            return False
        members.discard(member)
        if members:
            return False
        del self._exact[subscription]
        return True

    def members(self, topic: str) -> set[M]:
        """Return everyone whose subscriptions match ``topic``, each once (a new set)."""
        found = set(self._exact.get(topic, ()))
        if self._patterns:
            levels = topic.split("/")
            for pattern, members in self._patterns.values():
                if match_levels(pattern, levels):
                    found |= members
        return found

    def heard(self, topic: str) -> bool:
        """Whether anyone's subscriptions match ``topic`` (no set is made)."""
        if self._exact.get(topic):
            return True
        if self._patterns:
            levels = topic.split("/")
            return any(match_levels(pattern, levels) for pattern, _ in self._patterns.values())
        return False

    def subscriptions(self) -> list[str]:
        """Every topic and pattern with at least one member."""
        return [*self._exact, *self._patterns]

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)


class Broker:
    """Publishing for one app: local fan-out, the backplane, ``send_to``.

    A publish is delivered here first, to this process's subscribers, then
    handed to the backplane for the others; what comes back from the
    backplane that this process sent is dropped, and so is anything seen
    twice (a message can match both a topic and a pattern subscription).
    """

    def __init__(
        self,
        backplane: Backplane,
        node_id: str,
        channels: list[Channel],
        history: tuple[History, ...] = (),
        presence: tuple[Presence, ...] = (),
    ) -> None:
        self.backplane = backplane
        self.node_id = node_id
        self.topics: Topics[Session] = Topics()
        self.sessions: dict[str, Session] = {}  # this process's open connections, by id
        self._channels = channels
        self._counter = itertools.count()
        self._seen: dict[str, None] = {}  # recent message ids, oldest first
        self.streams = Streams(backplane, history, self._deliver_at, _unpack, self._subscribed)
        self.rooms = Rooms(backplane, presence)

    def history_rule(self, topic: str) -> History | None:
        """The ``History`` rule of ``topic``, if it has one."""
        rules = self.streams.rules
        return history_rule(rules, topic) if rules else None

    @property
    def node_topic(self) -> str:
        """The backplane topic on which this process hears ``send_to``."""
        return f"$node/{self.node_id}"

    async def start(self, ready_timeout: float) -> bool:
        """Start the backplane; wait up to ``ready_timeout`` for it; return whether it is ready."""
        await self.backplane.start(self._receive, self.streams.resumed)
        await self.backplane.subscribe(self.node_topic)
        for subscription in self.topics.subscriptions():
            await self.backplane.subscribe(subscription)
        return await self.backplane.wait_ready(ready_timeout)

    async def stop(self) -> None:
        """Stop the backplane."""
        await self.rooms.stop()
        await self.streams.stop()
        await self.backplane.stop()

    async def join(self, subscription: str, session: Session) -> None:
        """Subscribe ``session``; the backplane hears the subscription from its first member on."""
        if self.topics.add(subscription, session):
            await self.backplane.subscribe(subscription)

    async def leave(self, subscription: str, session: Session) -> None:
        """Unsubscribe ``session``; the backplane forgets the subscription with its last member."""
        last = self.topics.discard(subscription, session)
        if self.rooms.rules:
            await self.rooms.leave(subscription, session)
        if subscription in self.streams.held:
            self.streams.drop(subscription, session, last=not self.topics.heard(subscription))
        if last:
            await self.backplane.unsubscribe(subscription)

    async def join_history(self, topic: str, session: Session, resume: Position | None) -> None:
        """Subscribe ``session`` to a history topic: replay after ``resume``, then live.

        What is published while the replay is read waits in the session's
        hold, and goes after the replay, from the replay's position on.

        Raises:
            BackplaneUnavailable: the history could not be read in time.
        """
        streams = self.streams
        held = streams.hold(topic, session)
        try:
            await self.join(topic, session)
            replay, position, recovered = await streams.recover(topic, session, held, resume)
        except BaseException:
            await self.leave(topic, session)  # and its hold
            raise
        for at, message in replay:
            session.push_replay(self._frame_for(session, topic, at, message))
        self._subscribed(session, topic, position, recovered)
        for at, waiting in streams.release(topic, session):
            if waiting is None:  # the epoch changed meanwhile
                if held.epoch != at.epoch or held.offset < at.offset:
                    held.epoch, held.offset = at
                    self._subscribed(session, topic, at, False)
            elif held.takes(at):
                session.push(self._frame_for(session, topic, at, waiting))

    async def presence(self, topic: str) -> dict[str, dict[str, Any]]:
        """Every member of ``topic``, in every process."""
        check_topic(topic)
        members: dict[str, dict[str, Any]] = await self._presence_read(self.rooms.members(topic))
        return members

    async def presence_count(self, topic: str) -> int:
        """How many members ``topic`` has, without reading them."""
        check_topic(topic)
        counted: int = await self._presence_read(self.rooms.count(topic))
        return counted

    async def _presence_read(self, read: Any) -> Any:
        try:
            return await read
        except TopicError:
            raise
        except Exception as exc:  # what the transport raised, or its deadline
            raise BackplaneUnavailable(f"the backplane did not answer ({exc!r})") from None

    async def history(self, topic: str, since: Position | None, limit: int) -> list[Publication]:
        """At most ``limit`` kept publications of ``topic`` after ``since``, oldest first."""
        check_topic(topic)
        rule = self.history_rule(topic)
        if rule is None:
            raise TopicError(f"{topic!r} matches no History rule: it keeps no history")
        found = await self.streams.read(rule, topic, None if since is None else since.offset, limit)
        if since is not None and since.epoch != found.position.epoch:  # from the oldest kept
            found = await self.streams.read(rule, topic, None, limit)
        epoch = found.position.epoch
        publications = []
        for offset, payload in found.entries:
            message = _unpack(payload)
            publications.append(Publication(message["e"], message["d"], topic, epoch, offset))
        return publications

    async def publish(
        self, topic: str, event: str, data: Any, exclude: Iterable[str] | None
    ) -> Position | None:
        """Deliver to this process's subscribers of ``topic``, then to the other processes.

        A history topic's publication is kept first: it returns its position,
        or raises ``BackplaneUnavailable`` and reaches nobody.
        """
        check_topic(topic)
        skip = _ids(exclude)
        # Validate against every declaration first, so that a PayloadError reaches
        # the caller before anyone got anything; the dumps are reused below.
        payloads: dict[object, Any] = {}
        for channel in self._channels:
            emit = channel.emitted.get(event)
            if emit is not None and emit not in payloads:
                payloads[emit] = emit.dump(data)
        rule = self.history_rule(topic)
        if rule is not None:
            return await self._publish_kept(rule, topic, event, data, skip)
        let_others_run = self._deliver(topic, event, data, skip, payloads)
        if self.backplane.shared:
            message = {"t": topic, "e": event, "d": to_jsonable_python(data), "x": sorted(skip)}
            await self.backplane.publish(topic, self._pack(message))
        if let_others_run:
            # Let the others run before the next publish: the writers, when some
            # queue is half full (a burst from one handler must not overflow
            # readers that keep up), and the backplane's sender, which would
            # otherwise send a burst to the other processes only once it is over.
            await asyncio.sleep(0)
        return None

    async def _publish_kept(
        self, rule: History, topic: str, event: str, data: Any, skip: set[str]
    ) -> Position:
        message = {"t": topic, "e": event, "d": to_jsonable_python(data), "x": sorted(skip)}
        payload = self._pack(message)
        key, backplane = message["i"], self.backplane
        position: Position = await self.streams.call(
            rule,
            "publishing to",
            topic,
            lambda: backplane.append(
                topic,
                payload,
                key=key,
                size=rule.size,
                ttl=rule.ttl,
                retry_for=rule.publish_timeout + 1.0,  # retries stop before
            ),
        )
        self.streams.arrived(topic, position, message, self.topics.heard(topic))
        return position

    async def send_to(self, connection_id: str, event: str, data: Any) -> None:
        """Deliver to one connection, here or in the process whose node id starts its id."""
        conn = self.sessions.get(connection_id)
        if conn is not None:
            conn.push(conn.encode_event(event, data))
            return
        node = connection_id.partition("-")[0]
        if node and node != self.node_id and self.backplane.shared:
            message = {"c": connection_id, "e": event, "d": to_jsonable_python(data)}
            await self.backplane.publish(f"$node/{node}", self._pack(message))

    def _pack(self, message: dict[str, Any]) -> bytes:
        message["i"] = f"{self.node_id}:{next(self._counter)}"
        return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]

    def _deliver(
        self,
        topic: str,
        event: str,
        data: Any,
        skip: set[str],
        payloads: dict[object, Any] | None = None,
    ) -> bool:
        """Send or queue the event to local subscribers; return whether the publisher
        should let the others run (a queue is half full, or ``YIELD_AFTER`` got it).

        ``payloads`` holds the data already dumped for a declaration (``Emit``).
        """
        members = self.topics.members(topic)
        backlog = False
        frames: dict[tuple[object, Codec], str | bytes] = {}
        payloads = {} if payloads is None else payloads
        # The frame of the last (channel, codec) met: most topics have one of each.
        last_channel: object = None
        last_codec: object = None
        frame: str | bytes = ""
        for conn in members:
            if skip and conn.id in skip:
                continue
            channel, codec = conn.channel, conn.codec
            if channel is not last_channel or codec is not last_codec:
                emit = channel.emitted.get(event)
                key = (emit, codec)
                found = frames.get(key)
                if found is None:
                    if emit not in payloads:
                        payloads[emit] = (
                            to_jsonable_python(data) if emit is None else emit.dump(data)
                        )
                    found = frames[key] = codec.encode(event_frame(event, payloads[emit]))
                frame, last_channel, last_codec = found, channel, codec
            if conn.push(frame):
                backlog = True
        return backlog or len(members) >= YIELD_AFTER

    def _deliver_at(
        self,
        topic: str,
        position: Position,
        message: Message,
        held: dict[Session, Held] | None,
    ) -> None:
        """Push one publication of a history topic, in its turn, to this process's subscribers."""
        skip = message.get("x") or ()
        frames: dict[tuple[object, Codec], str | bytes] = {}
        for conn in self.topics.members(topic):
            if conn.id in skip:
                continue
            hold = held.get(conn) if held is not None else None
            if hold is not None:
                if hold.buffer is not None:
                    hold.buffer.append((position, message))
                    continue
                if not hold.takes(position):
                    continue
            emit = conn.channel.emitted.get(message["e"])
            frame = frames.get((emit, conn.codec))
            if frame is None:
                frame = frames[emit, conn.codec] = _history_frame(
                    conn.codec, emit, topic, position, message
                )
            conn.push(frame)

    @staticmethod
    def _frame_for(
        session: Session, topic: str, position: Position, message: Message
    ) -> str | bytes:
        emit = session.channel.emitted.get(message["e"])
        return _history_frame(session.codec, emit, topic, position, message)

    def _subscribed(
        self, session: Session, topic: str, position: Position, recovered: bool | None
    ) -> None:
        data = {
            "topic": topic,
            "epoch": position.epoch,
            "offset": position.offset,
            "recovered": recovered,
        }
        session.push(session.codec.encode(event_frame(SUBSCRIBED_EVENT, data)))

    def _receive(self, topic: str, payload: bytes, position: Position | None) -> None:
        """Take a message from the backplane: never raises into the backplane."""
        try:
            if position is not None and self.streams.delivered(topic, position):
                return  # our own publication, or one heard twice: no need to unpack it
            message = _unpack(payload)
            if position is not None:  # ordered and de-duplicated by its offset
                self.streams.arrived(topic, position, message, self.topics.heard(topic))
                return
            message_id = message["i"]
            if message_id.startswith(self.node_id + ":") or message_id in self._seen:
                return
            self._seen[message_id] = None
            if len(self._seen) > SEEN_MESSAGES:
                del self._seen[next(iter(self._seen))]
            if "c" in message:
                conn = self.sessions.get(message["c"])
                if conn is not None:
                    conn.push(conn.encode_event(message["e"], message["d"]))
            else:
                self._deliver(message["t"], message["e"], message["d"], set(message["x"]))
        except Exception:
            logger.exception("dropped a backplane message on %r that could not be delivered", topic)


SEEN_MESSAGES = 10_000
YIELD_AFTER = 64  # a publish to this many local subscribers lets the others run after it


def _history_frame(
    codec: Codec, emit: Any, topic: str, position: Position, message: Message
) -> str | bytes:
    """A push of a history topic: the envelope and its position, in ``codec``."""
    event, data = message["e"], message["d"]
    frame = event_frame(event, data if emit is None else emit.dump(data))
    frame["topic"], frame["epoch"], frame["offset"] = topic, position.epoch, position.offset
    return codec.encode(frame)


def _unpack(payload: bytes) -> Message:
    message: Message = msgpack.unpackb(payload, raw=False)
    return message


def _ids(exclude: Iterable[str] | None) -> set[str]:
    if exclude is None:
        return set()
    return {exclude} if isinstance(exclude, str) else set(exclude)
