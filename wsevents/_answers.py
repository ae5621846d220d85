"""Clients answering server requests: ``client.answer(event, fn)`` (DESIGN.md section 12).

A server request is ``{"event", "data", "ask"}``; the answer is the same
``event`` and ``ask`` with the answerer's return value as ``data``, or an
error frame with that ``ask``: the code of an ``EventError`` the answerer
raised, ``internal_error`` for anything else (logged, never its text), and
``unknown_event`` where nobody answers the event. The Python client and
``EventTestClient`` share this.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_core import to_jsonable_python

from ._envelope import ASK, ask_frame
from .exceptions import ErrorCode, EventError

__all__ = ["Answerer", "Answerers", "ask_of"]

logger = logging.getLogger("wsevents.client")

Answerer = Callable[[Any], Any]
"""Gets a server request's data; returns the answer (or an awaitable of it)."""


def ask_of(decoded: Any) -> str | None:
    """The ``ask`` of a decoded frame from the server, or ``None``: not a server request."""
    if type(decoded) is dict:
        ask = decoded.get(ASK)
        if type(ask) is str:
            return ask
    return None


class Answerers:
    """The functions that answer server requests, by event."""

    __slots__ = ("_by_event",)

    def __init__(self) -> None:
        self._by_event: dict[str, Answerer] = {}

    def add(self, event: str, answerer: Answerer) -> None:
        """Answer ``event`` with ``answerer`` (replacing the one it had)."""
        if not callable(answerer):
            raise TypeError(f"the answerer of {event!r} must be callable, got {answerer!r}")
        self._by_event[event] = answerer

    def answers(self, event: str) -> bool:
        """Whether some function answers ``event``."""
        return event in self._by_event

    def remove(self, event: str) -> None:
        """Stop answering ``event``: its requests get ``unknown_event``."""
        self._by_event.pop(event, None)

    async def answer_to(
        self, decoded: dict[str, Any], ask: str, send: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        """Answer a decoded server request with ``send``; one without an event is dropped."""
        event = decoded.get("event")
        if not isinstance(event, str) or not event:
            logger.warning("the server sent a request without an event: %r", decoded)
            return
        await send(await self.answer(event, decoded.get("data"), ask))

    async def answer(self, event: str, data: Any, ask: str) -> dict[str, Any]:
        """The answer frame for a server request: call the answerer (awaited if async)."""
        answerer = self._by_event.get(event)
        if answerer is None:
            return _unknown(event, ask)
        try:
            result = answerer(data)
            if inspect.isawaitable(result):
                result = await result
            return ask_frame(event, to_jsonable_python(result), ask)
        except EventError as exc:
            return _error(exc.code, exc.message, exc.details, ask)
        except Exception:
            logger.exception("the answerer of %r failed", event)
            return _error(ErrorCode.INTERNAL_ERROR.value, "internal error", None, ask)


def _unknown(event: str, ask: str) -> dict[str, Any]:
    code = ErrorCode.UNKNOWN_EVENT.value
    return _error(code, f"this client answers no request {event!r}", None, ask)


def _error(code: str, message: str, details: Any, ask: str) -> dict[str, Any]:
    data = {"code": code, "message": message, "details": to_jsonable_python(details)}
    return {"event": "error", "data": data, ASK: ask}
