"""The registry: everything an app declared, frozen, for the runtime and the AsyncAPI builder.

``EventApp`` collects registrations (channels, hooks, exception handlers)
and hands out a :class:`Registry`, a frozen snapshot of them, made again
after each new registration. The runtime serves handshakes from it (path
matching, origins, codecs, hooks, exception handlers) and the AsyncAPI
builder describes it; neither reads the app itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._routing import Channel, Hook
from .codecs import CodecSet

if TYPE_CHECKING:
    from ._history import History
    from ._members import Presence
    from .exceptions import EventError

__all__ = ["ExceptionHandler", "Registry"]

ExceptionHandler = Callable[[Any, Any], "EventError | Awaitable[EventError]"]
"""``(conn, exc)`` to the error frame for ``exc``; sync or async."""


@dataclass(frozen=True, eq=False)
class Registry:
    """What an app declared, frozen.

    Attributes:
        channels: the channels, in the order given.
        codecs: the codecs and their negotiation.
        connect_hooks, disconnect_hooks: the app-wide hooks, in the order they run.
        exception_handlers: exception class to its handler.
        allowed_origins: normalized origins, or ``None`` to check none.
        title, version, description, servers: the document's.
        topics: the ``History`` and ``Presence`` rules.
    """

    channels: tuple[Channel, ...]
    codecs: CodecSet
    connect_hooks: tuple[Hook, ...] = ()
    disconnect_hooks: tuple[Hook, ...] = ()
    exception_handlers: Mapping[type[BaseException], ExceptionHandler] = field(default_factory=dict)
    allowed_origins: frozenset[str] | None = None
    title: str = "WebSocket API"
    version: str = "0.1.0"
    description: str | None = None
    servers: dict[str, Any] | None = None
    topics: tuple[History | Presence, ...] = ()
    _static: dict[str, Channel] = field(default_factory=dict, init=False, repr=False)
    _dynamic: list[Channel] = field(default_factory=list, init=False, repr=False)
    _handler_for: dict[type[BaseException], ExceptionHandler | None] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        for channel in self.channels:
            if channel.is_static:
                self._static[channel.address] = channel
            else:
                self._dynamic.append(channel)

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols a client may offer, one per codec."""
        return list(self.codecs.by_subprotocol)

    def match(self, path: str) -> tuple[Channel, dict[str, Any]] | None:
        """Return the channel serving ``path`` and its converted parameters."""
        channel = self._static.get(path)
        if channel is not None:
            return channel, {}
        for channel in self._dynamic:
            params = channel.match(path)
            if params is not None:
                return channel, params
        return None

    def exception_handler_for(self, exc_type: type[BaseException]) -> ExceptionHandler | None:
        """The handler registered for ``exc_type`` or its nearest base class."""
        try:
            return self._handler_for[exc_type]
        except KeyError:
            handlers = self.exception_handlers
            found = next((handlers[t] for t in exc_type.__mro__ if t in handlers), None)
            self._handler_for[exc_type] = found  # a memo: the registry itself never changes
            return found
