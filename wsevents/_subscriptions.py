"""Every subscription of this process, one record per (topic, subscriber): the one owner.

A :class:`Subscription` holds all that one subscriber's subscription to one
topic or pattern is: the topic, the position it holds in a history topic
(and what waits while its replay is read), and its presence info on a topic
with a ``Presence`` rule. :class:`Subscriptions` keeps the records, and the
table of who hears what (:class:`~wsevents._topics.Topics`) beside them; it
is the only place either changes. Subscribers are seen through
:class:`Subscriber`, and the app's telemetry through :class:`Tracing`,
protocols of what the topics part needs: nothing of the runtime is imported
here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ._topics import Topics

if TYPE_CHECKING:
    from ._history import Position
    from ._ordering import Message
    from .codecs import Codec

__all__ = ["Carrier", "Declared", "Subscriber", "Subscription", "Subscriptions", "Tracing"]


class Declared(Protocol):
    """A server-to-client event a channel declared: how its data is validated and dumped."""

    def dump(self, data: Any) -> Any:
        """Validate ``data`` against the declaration and make it JSON-compatible."""


class Subscriber(Protocol):
    """What the topics part needs of a subscriber (a connection, in the runtime)."""

    @property
    def id(self) -> str:
        """Its connection id: ``exclude`` and presence name it by this."""

    @property
    def codec(self) -> Codec:
        """The codec its frames are encoded in."""

    @property
    def emitted(self) -> Mapping[str, Declared]:
        """The events its channel declares, by name: pushes are validated against them."""

    def push(self, frame: str | bytes) -> bool:
        """Send an encoded frame without waiting; return whether the publisher should yield."""

    def push_replay(self, frame: str | bytes) -> None:
        """Queue a frame of a history replay (it does not count against the send queue)."""

    def resume_position(self, topic: str) -> Position | None:
        """The position it asked to resume ``topic`` from at its handshake, once."""


Carrier = dict[str, str]  # W3C Trace Context, as it travels inside a publication


class Tracing(Protocol):
    """What the topics part needs of the app's telemetry, where it is on (section 13)."""

    async def publish(
        self,
        publish: Callable[..., Awaitable[Any]],
        topic: str,
        event: str,
        data: Any,
        exclude: Any,
    ) -> Position | None:
        """Run ``publish(topic, event, data, exclude, carrier)`` in the publish's span."""

    def deliver(
        self, topic: str, event: str, trace: Carrier | None, recipients: int
    ) -> AbstractContextManager[Any]:
        """The span of one publication's delivery to ``recipients`` here (none untraced)."""


class Subscription:
    """One subscriber's subscription to one topic or pattern.

    Attributes:
        subscriber: who subscribed.
        topic: the topic or pattern.
        kept: an exact subscription to a history topic: it holds a position.
        epoch, offset: that position (the last publication it was sent).
        buffer: while its replay is read, what arrived meanwhile (a message,
            or ``None`` for an epoch change); ``None`` once the replay went out.
        presence: its info as a member of the topic (encoded), or ``None``.
    """

    __slots__ = ("buffer", "epoch", "kept", "offset", "presence", "subscriber", "topic")

    def __init__(self, subscriber: Subscriber, topic: str) -> None:
        self.subscriber = subscriber
        self.topic = topic
        self.kept = False
        self.epoch = ""
        self.offset = 0
        self.buffer: list[tuple[Position, Message | None]] | None = None
        self.presence: bytes | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.subscriber.id} {self.topic!r}>"

    def hold(self) -> None:
        """Start holding a position: buffer what arrives until the replay went out."""
        self.kept = True
        self.buffer = []

    def takes(self, position: Position) -> bool:
        """Whether ``position`` is the next this subscription should get; if so, it holds it."""
        if position.epoch != self.epoch or position.offset <= self.offset:
            return False
        self.offset = position.offset
        return True

    def behind(self, position: Position) -> bool:
        """Whether it stands before ``position`` (or in another epoch); if so, it moves there."""
        if self.epoch == position.epoch and self.offset >= position.offset:
            return False
        self.epoch, self.offset = position
        return True


class Subscriptions:
    """This process's subscriptions: the records, and who hears what."""

    def __init__(self) -> None:
        self._records: dict[Subscriber, dict[str, Subscription]] = {}
        self._table: Topics[Subscriber] = Topics()

    def add(self, subscriber: Subscriber, topic: str) -> tuple[Subscription, bool]:
        """Record a new subscription; return it and whether it is the topic's first here."""
        record = Subscription(subscriber, topic)
        self._records.setdefault(subscriber, {})[topic] = record
        return record, self._table.add(topic, subscriber)

    def remove(self, record: Subscription) -> bool:
        """Forget ``record``; return whether its topic has no subscriber here now.

        A record already forgotten (the subscriber left meanwhile) changes nothing.
        """
        records = self._records.get(record.subscriber)
        if records is None or records.get(record.topic) is not record:
            return False
        del records[record.topic]
        if not records:
            del self._records[record.subscriber]
        return self._table.discard(record.topic, record.subscriber)

    def get(self, subscriber: Subscriber, topic: str) -> Subscription | None:
        """``subscriber``'s subscription to exactly ``topic``, if it has one."""
        records = self._records.get(subscriber)
        return None if records is None else records.get(topic)

    def current(self, record: Subscription) -> bool:
        """Whether ``record`` is still held (not unsubscribed, its subscriber not gone)."""
        return self.get(record.subscriber, record.topic) is record

    def of(self, subscriber: Subscriber) -> list[Subscription]:
        """Every subscription of ``subscriber``."""
        return list((self._records.get(subscriber) or {}).values())

    def topics_of(self, subscriber: Subscriber) -> frozenset[str]:
        """The topics and patterns ``subscriber`` subscribed to itself.

        Not the system's own ``$`` topics the runtime subscribes it to (a
        connection's user's): no client can name one.
        """
        return frozenset(t for t in self._records.get(subscriber) or () if t[0] != "$")

    def count(self, subscriber: Subscriber) -> int:
        """How many subscriptions ``subscriber`` made itself (``$`` topics are not counted)."""
        return sum(1 for t in self._records.get(subscriber) or () if t[0] != "$")

    def members(self, topic: str) -> set[Subscriber]:
        """Everyone whose subscriptions match ``topic``, each once."""
        return self._table.members(topic)

    def exact(self, topic: str) -> list[Subscription]:
        """The subscriptions to exactly ``topic``."""
        return [self._records[subscriber][topic] for subscriber in self._table.exact(topic)]

    def heard(self, topic: str) -> bool:
        """Whether anyone here hears ``topic``."""
        return self._table.heard(topic)

    def subscriptions(self) -> list[str]:
        """Every topic and pattern with at least one subscriber here."""
        return self._table.subscriptions()

    def members_of_every_topic(self) -> dict[str, list[Subscription]]:
        """The subscriptions with presence info, by topic."""
        found: dict[str, list[Subscription]] = {}
        for records in self._records.values():
            for topic, record in records.items():
                if record.presence is not None:
                    found.setdefault(topic, []).append(record)
        return found
