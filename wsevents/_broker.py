"""The broker: subscriptions, publishes and their fan-out, the backplane's messages.

:class:`Broker` owns this process's subscriptions (:class:`~wsevents._subscriptions.Subscriptions`,
one record per topic and subscriber) and every path into them: a subscribe
or an unsubscribe, a local publish, a message from the backplane, a
history topic's publication in its turn. Subscribers are seen through the
:class:`~wsevents._subscriptions.Subscriber` protocol, and connections are
found by id through a lookup the runtime gives: nothing of the runtime is
imported here.

Over 300 lines: the three paths into the table (a subscription, a local
publish, a message from the backplane) share it and the frame encoding.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgpack
from pydantic_core import to_jsonable_python

from ._envelope import event_frame
from ._history import History, Position, history_frame, subscribed_frame
from ._members import Presence
from ._ordering import Message, Step
from ._presence import Rooms
from ._streams import Streams
from ._subscriptions import Carrier, Subscriber, Subscription, Subscriptions, Tracing
from ._wildcards import is_pattern
from .exceptions import TopicError

if TYPE_CHECKING:
    from .backplane import Backplane
    from .codecs import Codec

__all__ = ["Broker", "encode_push"]

logger = logging.getLogger("wsevents")

SEEN_MESSAGES = 10_000
YIELD_AFTER = 64  # a publish to this many local subscribers lets the others run after it

Find = Callable[[str], "Subscriber | None"]
PushAll = Callable[[list[tuple[Any, "str | bytes"]]], bool]
# Takes a message that is no publication from the backplane: (message, ours, heard before).
Heard = Callable[[dict[str, Any], bool, bool], None]


class Broker:
    """Publishing and subscriptions for one app: local fan-out, the backplane, ``send_to``.

    A publish is delivered here first, to this process's subscribers, then
    handed to the backplane for the others; what comes back from the
    backplane that this process sent is dropped, and so is anything seen
    twice (a message can match both a topic and a pattern subscription).

    Args:
        backplane: where publications travel between processes.
        node_id: this process's id (connection ids start with it).
        declarations: every channel's declared events, by event name: a
            publication is validated against each before anyone gets it.
        find: the open connection with an id, in this process.
        history, presence: the app's ``History`` and ``Presence`` rules.
        push_all: push a frame to each of many subscribers (the runtime's sends
            them from one task); whether the publisher should yield.
    """

    def __init__(
        self,
        backplane: Backplane,
        node_id: str,
        declarations: Iterable[dict[str, Any]],
        find: Find,
        history: tuple[History, ...] = (),
        presence: tuple[Presence, ...] = (),
        *,
        push_all: PushAll,
    ) -> None:
        self.backplane = backplane
        self._push_all = push_all
        self.node_id = node_id
        self.subscriptions = Subscriptions()
        self._declarations = list(declarations)
        self._find = find
        self._counter = itertools.count()
        self._packer = msgpack.Packer()  # one, reused: packb makes a Packer per call
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent message ids, oldest first
        self.streams = Streams(backplane, history, self._deliver_steps, _unpack)
        self.rooms = Rooms(backplane, presence, self.subscriptions)
        # Who takes the messages that are not publications, by a key they carry:
        # server requests (q) and answers (a), disconnects (k).
        self._routes: dict[str, Heard] = {}
        # The app's telemetry, where it is on: spans for publishes and deliveries.
        self.tracing: Tracing | None = None

    def route(self, key: str, heard: Heard) -> None:
        """Hand the backplane's messages that carry ``key`` to ``heard``, not to subscribers."""
        self._routes[key] = heard

    async def send(self, topic: str, message: dict[str, Any]) -> int:
        """Publish ``message`` to ``topic`` now; return how many subscriptions heard it.

        Raises what the backplane raised.
        """
        return await self.backplane.send(topic, self._pack(message))

    def history_rule(self, topic: str) -> History | None:
        """The ``History`` rule of ``topic``, if it has one."""
        return self.streams.rule_of(topic)

    @property
    def node_topic(self) -> str:
        """The backplane topic on which this process hears ``send_to``."""
        return f"$node/{self.node_id}"

    async def start(self, ready_timeout: float) -> bool:
        """Start the backplane; wait up to ``ready_timeout`` for it; return whether it is ready."""
        await self.backplane.start(self._receive, self.streams.resumed)
        await self.backplane.subscribe(self.node_topic)
        for subscription in self.subscriptions.subscriptions():
            await self.backplane.subscribe(subscription)
        return await self.backplane.wait_ready(ready_timeout)

    async def stop(self) -> None:
        """Stop the backplane."""
        await self.rooms.stop()
        await self.streams.stop()
        await self.backplane.stop()

    # -- subscriptions -------------------------------------------------------------------

    async def subscribe(
        self, subscriber: Subscriber, topic: str, presence: Any = None, *, limit: int
    ) -> None:
        """Subscribe to a topic or pattern (checked by the caller).

        On a history topic the subscriber gets what it missed since the
        position it resumes from, then ``wsevents.subscribed``, then what came
        meanwhile. On a topic with a ``Presence`` rule it becomes a member with
        ``presence`` as its info; subscribing again replaces the info.

        Raises:
            TopicError: over ``limit`` subscriptions, or ``presence=`` where no
                rule allows it.
            BackplaneUnavailable: a history topic's history could not be read.
        """
        pattern = is_pattern(topic)
        rooms = self.rooms
        # No rule and no info (the common case): no member, nothing to check.
        member = rooms.check(topic, presence, pattern) if rooms.rules or presence else None
        subscriptions = self.subscriptions
        record = subscriptions.get(subscriber, topic)
        if record is not None:
            if member is not None:
                await self._join_room(record, *member)
            return
        if subscriptions.count(subscriber) >= limit:
            raise TopicError(f"cannot subscribe to {topic!r}: the limit is {limit} subscriptions")
        record, first = subscriptions.add(subscriber, topic)
        if pattern or self.history_rule(topic) is None:
            if first:
                await self.backplane.subscribe(topic)
        else:
            try:
                await self._subscribe_history(record, first)
            except BaseException:
                await self._remove(record)
                raise
        if member is not None and subscriptions.current(record):
            await self._join_room(record, *member)

    async def _join_room(self, record: Subscription, rule: Presence, info: bytes) -> None:
        again = record.presence is not None
        record.presence = info
        await self.rooms.join(record, rule, again)

    async def _subscribe_history(self, record: Subscription, first: bool) -> None:
        """Replay what ``record``'s subscriber missed, then live, from the replay's position on.

        What is published while the replay is read waits in the record.
        """
        topic, subscriber = record.topic, record.subscriber
        record.hold()
        if first:
            await self.backplane.subscribe(topic)
        resume = subscriber.resume_position(topic)
        replay, position, recovered = await self.streams.recover(topic, resume)
        record.epoch, record.offset = position
        for at, message in replay:
            subscriber.push_replay(self._frame_for(subscriber, topic, at, message))
        self._subscribed(subscriber, topic, position, recovered)
        buffered, record.buffer = record.buffer or [], None
        for at, waiting in buffered:
            if waiting is None:  # the epoch changed meanwhile
                if record.behind(at):
                    self._subscribed(subscriber, topic, at, False)
            elif record.takes(at):
                subscriber.push(self._frame_for(subscriber, topic, at, waiting))

    async def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        """Stop ``subscriber`` hearing ``topic``; a topic not subscribed to is ignored."""
        record = self.subscriptions.get(subscriber, topic)
        if record is not None:
            await self._remove(record)

    async def leave_all(self, subscriber: Subscriber) -> None:
        """Drop every subscription of ``subscriber`` (its connection ended)."""
        for record in self.subscriptions.of(subscriber):
            await self._remove(record)

    def topics_of(self, subscriber: Subscriber) -> frozenset[str]:
        """The topics and patterns ``subscriber`` subscribed to (not the system's ``$`` ones)."""
        return self.subscriptions.topics_of(subscriber)

    async def _remove(self, record: Subscription) -> None:
        """Forget ``record``; the backplane forgets its topic with its last subscriber here."""
        topic = record.topic
        last = self.subscriptions.remove(record)
        if record.presence is not None:
            await self.rooms.leave(record)
        if record.kept and not self.subscriptions.heard(topic):
            self.streams.forget(topic)
        if last:
            await self.backplane.unsubscribe(topic)

    # -- reads ---------------------------------------------------------------------------

    # -- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        event: str,
        data: Any,
        exclude: Iterable[str] | None,
        trace: Carrier | None = None,
    ) -> Position | None:
        """Deliver to this process's subscribers of ``topic``, then to the other processes.

        A history topic's publication is kept first: it returns its position,
        or raises ``BackplaneUnavailable`` and reaches nobody. ``topic`` is
        checked by the caller (a user's system topic is not the app's to name).
        With telemetry on, the publish runs in its span, whose context
        ``trace`` (a W3C carrier) travels with the publication.
        """
        tracing = self.tracing
        if tracing is not None and trace is None:
            return await tracing.publish(self.publish, topic, event, data, exclude)
        skip = _ids(exclude)
        # Validate against every declaration first, so that a PayloadError reaches
        # the caller before anyone got anything; the dumps are reused below.
        payloads: dict[object, Any] = {}
        for emitted in self._declarations:
            emit = emitted.get(event)
            if emit is not None and emit not in payloads:
                payloads[emit] = emit.dump(data)
        rule = self.history_rule(topic)
        if rule is not None:
            return await self._publish_kept(rule, topic, event, data, skip, trace)
        let_others_run = self._deliver(topic, event, data, skip, payloads, trace)
        if self.backplane.shared:
            message = {"t": topic, "e": event, "d": to_jsonable_python(data), "x": sorted(skip)}
            if trace:
                message["p"] = trace
            await self.backplane.publish(topic, self._pack(message))
        if let_others_run:
            # Let the others run before the next publish: the writers, when some
            # queue is half full (a burst from one handler must not overflow
            # readers that keep up), and the backplane's sender, which would
            # otherwise send a burst to the other processes only once it is over.
            await asyncio.sleep(0)
        return None

    async def _publish_kept(
        self,
        rule: History,
        topic: str,
        event: str,
        data: Any,
        skip: set[str],
        trace: Carrier | None,
    ) -> Position:
        message = {"t": topic, "e": event, "d": to_jsonable_python(data), "x": sorted(skip)}
        if trace:  # kept with it: a live delivery links to it, a replay makes no span
            message["p"] = trace
        payload = self._pack(message)
        position = await self.streams.append(rule, topic, payload, message["i"])
        if self.streams.arrived(topic, position, message, self.subscriptions.heard(topic)):
            await asyncio.sleep(0)  # as publish: writers, and a fan-out that starts next turn
        return position

    async def send_to(self, connection_id: str, event: str, data: Any) -> None:
        """Deliver to one connection, here or in the process whose node id starts its id."""
        subscriber = self._find(connection_id)
        if subscriber is not None:
            subscriber.push(encode_push(subscriber, event, data))
            return
        node = connection_id.partition("-")[0]
        if node and node != self.node_id and self.backplane.shared:
            message = {"c": connection_id, "e": event, "d": to_jsonable_python(data)}
            await self.backplane.publish(f"$node/{node}", self._pack(message))

    def _remember(self, message_id: str) -> None:
        self._seen[message_id] = None
        if len(self._seen) > SEEN_MESSAGES:
            self._seen.popitem(last=False)  # O(1): a dict's oldest is not

    def _pack(self, message: dict[str, Any]) -> bytes:
        message["i"] = f"{self.node_id}:{next(self._counter)}"
        return self._packer.pack(message)  # type: ignore[no-any-return]

    def _deliver(
        self,
        topic: str,
        event: str,
        data: Any,
        skip: set[str],
        payloads: dict[object, Any] | None = None,
        trace: Carrier | None = None,
    ) -> bool:
        """Send or queue the event to local subscribers; return whether the publisher
        should let the others run (a queue is half full, or ``YIELD_AFTER`` got it).

        ``payloads`` holds the data already dumped for a declaration (``Emit``);
        ``trace`` the publication's trace context, where its publisher traced it.
        """
        members = self.subscriptions.members(topic)
        pushes: list[tuple[Subscriber, str | bytes]] = []
        frames: dict[tuple[object, Codec], str | bytes] = {}
        payloads = {} if payloads is None else payloads
        # The frame of the last (declarations, codec) met: most topics have one of each.
        last_emitted: object = None
        last_codec: object = None
        frame: str | bytes = ""
        for subscriber in members:
            if skip and subscriber.id in skip:
                continue
            emitted, codec = subscriber.emitted, subscriber.codec
            if emitted is not last_emitted or codec is not last_codec:
                emit = emitted.get(event)
                key = (emit, codec)
                found = frames.get(key)
                if found is None:
                    if emit not in payloads:
                        payloads[emit] = (
                            to_jsonable_python(data) if emit is None else emit.dump(data)
                        )
                    found = frames[key] = codec.encode(event_frame(event, payloads[emit]))
                frame, last_emitted, last_codec = found, emitted, codec
            pushes.append((subscriber, frame))
        if not pushes:
            return len(members) >= YIELD_AFTER
        tracing = self.tracing
        if tracing is None:
            backlog = self._push_all(pushes)
        else:
            with tracing.deliver(topic, event, trace, len(pushes)):
                backlog = self._push_all(pushes)
        return backlog or len(members) >= YIELD_AFTER

    def _deliver_steps(self, topic: str, steps: list[Step]) -> bool:
        """Do what a history topic's order says: deliver publications, or tell where it
        stands; return whether the publisher should let the others run (as ``_deliver``)."""
        let_others_run = False
        for position, message in steps:
            if message is None:
                self._announce(topic, position)
            elif self._deliver_at(topic, position, message):
                let_others_run = True
        return let_others_run

    def _deliver_at(self, topic: str, position: Position, message: Message) -> bool:
        """Push one publication of a history topic, in its turn, to this process's subscribers;
        return whether the publisher should let the others run (as ``_deliver``)."""
        skip = message.get("x") or ()
        frames: dict[tuple[object, Codec], str | bytes] = {}
        pushes: list[tuple[Subscriber, str | bytes]] = []
        get, event = self.subscriptions.get, message["e"]
        last_emitted: object = None  # as in _deliver: most topics have one of each
        last_codec: object = None
        frame: str | bytes = ""
        for subscriber in self.subscriptions.members(topic):
            if skip and subscriber.id in skip:
                continue
            record = get(subscriber, topic)  # None: heard through a pattern
            if record is not None and record.kept:
                if record.buffer is not None:
                    record.buffer.append((position, message))
                    continue
                if not record.takes(position):
                    continue
            emitted, codec = subscriber.emitted, subscriber.codec
            if emitted is not last_emitted or codec is not last_codec:
                emit = emitted.get(event)
                found = frames.get((emit, codec))
                if found is None:
                    found = frames[emit, codec] = history_frame(
                        codec, emit, topic, position, message
                    )
                frame, last_emitted, last_codec = found, emitted, codec
            pushes.append((subscriber, frame))
        if not pushes:
            return False
        tracing = self.tracing
        if tracing is None:
            backlog = self._push_all(pushes)
        else:
            with tracing.deliver(topic, message["e"], message.get("p"), len(pushes)):
                backlog = self._push_all(pushes)
        return backlog or len(pushes) >= YIELD_AFTER

    def _announce(self, topic: str, position: Position) -> None:
        """Tell every exact subscriber of ``topic`` it now stands at ``position``, not recovered."""
        for record in self.subscriptions.exact(topic):
            if not record.kept:
                continue
            if record.buffer is not None:
                record.buffer.append((position, None))
            elif record.behind(position):
                self._subscribed(record.subscriber, topic, position, False)

    @staticmethod
    def _frame_for(
        subscriber: Subscriber, topic: str, position: Position, message: Message
    ) -> str | bytes:
        emit = subscriber.emitted.get(message["e"])
        return history_frame(subscriber.codec, emit, topic, position, message)

    @staticmethod
    def _subscribed(
        subscriber: Subscriber, topic: str, position: Position, recovered: bool | None
    ) -> None:
        subscriber.push(subscribed_frame(subscriber.codec, topic, position, recovered))

    def _receive(self, topic: str, payload: bytes, position: Position | None) -> None:
        """Take a message from the backplane: never raises into the backplane."""
        try:
            if position is not None and self.streams.delivered(topic, position):
                return  # our own publication, or one heard twice: no need to unpack it
            message = _unpack(payload)
            if position is not None:  # ordered and de-duplicated by its offset
                self.streams.arrived(topic, position, message, self.subscriptions.heard(topic))
                return
            message_id = message["i"]
            ours, seen = message_id.startswith(self.node_id + ":"), message_id in self._seen
            for key, heard in self._routes.items():
                if key in message:  # a server request or its answer, a disconnect
                    if not seen:
                        self._remember(message_id)
                    heard(message, ours, seen)
                    return
            if ours or seen:
                return
            self._remember(message_id)
            if "c" in message:
                subscriber = self._find(message["c"])
                if subscriber is not None:
                    subscriber.push(encode_push(subscriber, message["e"], message["d"]))
            else:
                skip = set(message["x"])
                self._deliver(
                    message["t"], message["e"], message["d"], skip, trace=message.get("p")
                )
        except Exception:
            logger.exception("dropped a backplane message on %r that could not be delivered", topic)


def encode_push(subscriber: Subscriber, event: str, data: Any) -> str | bytes:
    """A push for one subscriber, validated against its channel's declaration."""
    emit = subscriber.emitted.get(event)
    payload = to_jsonable_python(data) if emit is None else emit.dump(data)
    return subscriber.codec.encode(event_frame(event, payload))


def _unpack(payload: bytes) -> Message:
    message: Message = msgpack.unpackb(payload, raw=False)
    return message


def _ids(exclude: Iterable[str] | None) -> set[str]:
    if exclude is None:
        return set()
    return {exclude} if isinstance(exclude, str) else set(exclude)
