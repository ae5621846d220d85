"""Connection: the public face of one client; the session behind it does the work."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Address, Headers, QueryParams, State
from starlette.requests import cookie_parser
from starlette.types import Scope

from ._asking import request
from ._broker import encode_push
from ._credentials import Check, check_expiry, check_user
from ._outcomes import ConnectionState
from ._topics import check_pattern
from .exceptions import CloseCode

if TYPE_CHECKING:
    from ._app import EventApp
    from ._history import Position
    from ._routing import Channel
    from ._session import Session

__all__ = ["Connection"]


class Connection:
    """One WebSocket client of a channel.

    Handlers receive it by annotating a parameter ``Connection``.

    Attributes:
        id: a unique id, for ``EventApp.send_to``.
        app: the :class:`EventApp` serving it.
        channel: the :class:`Channel` it connected to.
        params: the path parameters, converted.
        scope: the handshake's ASGI scope.
        subprotocol: the negotiated subprotocol, or ``None`` (JSON).
    """

    __wsevents_connection__ = True
    # Slots: a server holds many idle connections, and a dict each costs memory.
    __slots__ = (
        "_headers",
        "_session",
        "_state",
        "app",
        "channel",
        "id",
        "params",
        "scope",
        "subprotocol",
    )

    def __init__(
        self,
        app: EventApp,
        session: Session,
        scope: Scope,
        params: dict[str, Any],
        subprotocol: str | None,
    ) -> None:
        self.id = session.id
        self.app = app
        self.channel: Channel = session.channel
        self.scope = scope
        self.params = params
        self.subprotocol = subprotocol
        self._session = session
        self._state: State | None = None  # made on first use: most connections never need one
        self._headers: Headers | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.channel.address!r} {self._session.state.value}>"

    @property
    def state(self) -> State:
        """A namespace for your own per-connection data: ``conn.state.user = ...``."""
        if self._state is None:
            self._state = State()
        return self._state

    @property
    def headers(self) -> Headers:
        """The handshake's HTTP headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        """The query string's parameters."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def cookies(self) -> dict[str, str]:
        """The handshake's cookies."""
        return cookie_parser(self.headers.get("cookie", ""))

    @property
    def client(self) -> Address | None:
        """The client's ``(host, port)``, when the server knows it."""
        client = self.scope.get("client")
        return Address(*client) if client else None

    @property
    def topics(self) -> frozenset[str]:
        """The topics this connection is subscribed to."""
        return frozenset(self._session.topics)

    @property
    def session(self) -> str | None:
        """The session the client named in ``wsevents-session``, or ``None``.

        The wsevents clients pick a random one for their life and send it
        on every reconnect: ``once`` handlers are keyed by it.
        """
        return self._session.client_session

    @property
    def user(self) -> str | None:
        """The user this connection belongs to, or ``None``.

        Set by an ``on_connect`` hook (``conn.user = "u1"``) or by
        ``BearerAuth`` from a :class:`~wsevents.auth.Grant`; it cannot change
        after the handshake. :meth:`EventApp.send_to_user` and
        :meth:`EventApp.disconnect` find a user's connections by it.
        """
        return self._session.user

    @user.setter
    def user(self, user: str | None) -> None:
        if self._session.state is not ConnectionState.CONNECTING:
            raise RuntimeError("conn.user cannot change after the handshake")
        self._session.credentials_to_set().user = check_user(user)

    @property
    def expires_at(self) -> float | None:
        """When this connection's access ends (UNIX seconds), or ``None``: never.

        The process that holds the connection closes it with 4401 at that
        time, whoever set it; a handler may move it. Where ``BearerAuth`` set
        it, the client is asked for a fresh token first (``wsevents.refresh``).
        """
        credentials = self._session.credentials
        return None if credentials is None else credentials.expires_at

    @expires_at.setter
    def expires_at(self, expires_at: float | None) -> None:
        self._session.expire_at(check_expiry(expires_at))

    def refresh_with(self, check: Check, *, before: float = 30.0) -> None:
        """Ask the client for a fresh token ``before`` seconds ahead of :attr:`expires_at`.

        The server asks ``wsevents.refresh`` (data ``{"expires_at": t}``, the
        time left as its timeout) and gives the ``token`` of the answer to
        ``check``, which returns the new expiry (``None``: none) or raises
        ``Reject`` to refuse. A refusal, an error answer, no answer or a
        ``check`` that raises is logged once (never the token) and the
        connection closes at :attr:`expires_at`. ``BearerAuth`` calls this for
        a grant that expires; an auth hook of your own may too. Call it in an
        ``on_connect`` hook: the refresh runs in the connection's context.
        """
        if isinstance(before, bool) or not isinstance(before, (int, float)) or before < 0:
            raise ValueError(f"before must be a number of seconds >= 0, got {before!r}")
        credentials = self._session.credentials_to_set()
        credentials.check = check
        credentials.before = float(before)
        credentials.context = contextvars.copy_context()

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with, once it ended (``None`` while it is open)."""
        return self._session.close_code

    async def send(self, event: str, data: Any = None) -> None:
        """Send ``event`` with ``data`` to this client.

        ``data`` is validated against the model of an event the channel
        ``emits`` (a model instance or a dict), and sent as it is otherwise.
        A connection that has closed drops it. Frames sent during
        ``on_connect`` go out first, once the handshake is accepted.

        Raises:
            PayloadError: ``data`` does not match the declared model.
        """
        session = self._session
        await session.send_frame(encode_push(session, event, data))

    async def request(self, event: str, data: Any = None, *, timeout: float = 10.0) -> Any:
        """Ask this client ``event`` with ``data`` and return its answer's data.

        The client gets ``{"event": event, "data": data, "ask": "q1"}`` and
        answers with the same ``event`` and ``ask``. ``data`` is checked
        against the model of a request the channel ``asks`` (as ``send``
        checks ``emits``), and the answer validated by its ``reply`` (an
        instance of it is returned). The receive loop takes the answer
        whatever the connection's handlers do, so a handler may await it.

        Raises:
            PayloadError: ``data`` does not match the declared model.
            EventError: the client answered with an error frame (its code,
                message and details), with data that fails ``reply``
                (``validation_error``), or ``Limits.max_requests`` requests are
                open on this connection (``rate_limited``).
            RequestTimeout: no answer within ``timeout`` seconds (a ``TimeoutError``).
            ConnectionGone: the connection closed before the answer came.
        """
        return await request(self._session, event, data, timeout)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection once the frames already queued are sent.

        Raises:
            RuntimeError: the handshake is not accepted yet (raise ``Reject`` instead).
        """
        self._session.close(code, reason)

    async def subscribe(self, topic: str, *, presence: dict[str, Any] | None = None) -> None:
        """Subscribe to ``topic``, or to an MQTT pattern: ``rooms/+``, ``alerts/#``.

        The client hears what is published to matching topics in every
        process, once per message however many of its subscriptions match.
        A connection that has closed ignores it.

        On a topic that matches a ``History`` rule (an exact topic, not a
        pattern), the client first gets what it missed after the position it
        named in ``wsevents-resume``, then ``wsevents.subscribed`` with the
        topic's position, then live publications.

        On a topic that matches a ``Presence`` rule the connection is a member
        until it unsubscribes or disconnects, with ``presence`` (a JSON
        object, ``{}`` without one) as its info in :meth:`EventApp.presence`
        and in every subscriber's ``wsevents.presence`` diffs; subscribing
        again with another ``presence`` replaces it.

        Raises:
            TopicError: ``topic`` is not a valid topic or pattern, the
                connection holds ``Limits.max_subscriptions`` already, or
                ``presence`` is given for a wildcard or a topic that matches
                no ``Presence`` rule.
            TypeError: ``presence`` is not a JSON object.
            BackplaneUnavailable: a history topic's position could not be read
                in time (in ``on_connect``, the handshake is refused with 503).
        """
        await self._session.subscribe(check_pattern(topic), presence)

    async def unsubscribe(self, topic: str) -> None:
        """Stop hearing ``topic``; a topic not subscribed to is ignored."""
        await self._session.unsubscribe(topic)

    async def publish(self, topic: str, event: str, data: Any = None) -> Position | None:
        """Publish to every subscriber of ``topic``, this connection included.

        Returns the publication's position on a history topic (see
        :meth:`EventApp.publish`), else ``None``.
        """
        return await self.app.publish(topic, event, data)
