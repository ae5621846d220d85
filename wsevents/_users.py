"""Every connection of a user, in every process: ``send_to_user`` and ``disconnect``.

A connection's user is found the way a topic's subscribers are: once its
handshake is accepted, a connection with a ``user`` is subscribed, in the
broker, to that user's system topic ``$user/<digest>`` (no client can name
a ``$`` topic, and ``conn.topics`` does not show it). So the backplane
carries a user's messages only to the processes that hold one of that
user's connections, as it does a topic's, and nothing keeps a table of
every connection anywhere:

- ``send_to_user`` is a publish to the user's topic;
- ``disconnect(user=...)`` a message on it with a key of its own (``k``: the
  close code and reason, ``u``: the user), which each process that holds a
  connection of the user hears and acts on;
- ``disconnect(connection_id)`` goes to the node topic of the process that
  holds the connection (``$node/<node>``), as ``send_to`` does.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._credentials import check_user
from ._outcomes import ConnectionState
from .exceptions import BackplaneUnavailable, CloseCode

if TYPE_CHECKING:
    from ._broker import Broker
    from ._session import Session

__all__ = ["USER_TOPIC_PREFIX", "Users", "user_topic"]

USER_TOPIC_PREFIX = "$user/"
MAX_REASON_BYTES = 123  # what a WebSocket close frame can carry

_OPEN = ConnectionState.OPEN


def user_topic(user: str) -> str:
    """The system topic of ``user``'s connections: a digest, so any string can name a user."""
    return USER_TOPIC_PREFIX + hashlib.blake2b(user.encode(), digest_size=16).hexdigest()


class Users:
    """``send_to_user`` and ``disconnect`` for one app, through its broker.

    Args:
        broker: the app's broker: subscriptions, publishes, the backplane.
        find: the open session with an id, in this process.
    """

    def __init__(self, broker: Broker, find: Callable[[str], Session | None]) -> None:
        self._broker = broker
        self._find = find
        broker.route("k", self.heard)

    async def join(self, session: Session) -> None:
        """A connection was accepted: if it has a user, it hears that user's topic."""
        user = session.user
        if user is not None:
            # A system topic: not counted against the client's Limits.max_subscriptions.
            await self._broker.subscribe(session, user_topic(user), limit=sys.maxsize)

    async def send_to_user(self, user: str, event: str, data: Any) -> None:
        """Deliver to every connection of ``user``, in every process."""
        if check_user(user) is None:
            raise TypeError("send_to_user needs a user, got None")
        await self._broker.publish(user_topic(user), event, data, None)

    async def disconnect(
        self, connection_id: str | None, user: str | None, code: int, reason: str
    ) -> None:
        """Close a connection, or every connection of a user, wherever they are."""
        if connection_id is None and user is None:
            raise ValueError("disconnect needs a connection_id, a user, or both")
        if connection_id is not None and not isinstance(connection_id, str):
            raise TypeError(f"connection_id must be a string, got {connection_id!r}")
        check_user(user)
        code, reason = _close(code, reason)
        broker = self._broker
        if connection_id is not None:
            session = self._find(connection_id)
            if session is not None:
                _end(session, user, code, reason)
                return
            node = connection_id.partition("-")[0]
            if not node or node == broker.node_id or not broker.backplane.shared:
                return  # nobody holds it
            topic = f"$node/{node}"
            message = {"k": [code, reason], "c": connection_id, "u": user}
        else:
            assert user is not None
            topic = user_topic(user)
            for subscriber in list(broker.subscriptions.members(topic)):
                _end(subscriber, user, code, reason)  # type: ignore[arg-type]
            if not broker.backplane.shared:
                return
            message = {"k": [code, reason], "u": user}
        try:
            await broker.send(topic, message)
        except Exception as exc:  # what the transport raised: the others were not told
            raise BackplaneUnavailable(
                f"the other processes could not be told to disconnect ({exc!r})"
            ) from None

    def heard(self, message: dict[str, Any], ours: bool, seen: bool) -> None:
        """A disconnect from another process: close the connections it names, here."""
        if ours or seen:
            return  # this process closed its own when it sent it
        code, reason = message["k"]
        user: str | None = message.get("u")
        connection_id = message.get("c")
        if connection_id is not None:
            session = self._find(connection_id)
            if session is not None:
                _end(session, user, code, reason)
            return
        if user is None:
            return
        for subscriber in list(self._broker.subscriptions.members(user_topic(user))):
            _end(subscriber, user, code, reason)  # type: ignore[arg-type]


def _end(session: Session, user: str | None, code: int, reason: str) -> None:
    """Close ``session`` if it is open and, where ``user`` is named, that user's."""
    if session.state is _OPEN and (user is None or session.user == user):
        session.close(code, reason)


def _close(code: object, reason: object) -> tuple[int, str]:
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, got {code!r}")
    if code != CloseCode.NORMAL_CLOSURE and not 3000 <= code <= 4999:
        raise ValueError(f"code must be 1000 or an application code (3000 to 4999), got {code}")
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a string, got {reason!r}")
    if len(reason.encode()) > MAX_REASON_BYTES:
        raise ValueError(f"reason must be at most {MAX_REASON_BYTES} bytes in UTF-8")
    return int(code), reason
