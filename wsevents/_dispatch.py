"""From a frame's payload to a handler to call, or to the error frame to answer with.

Pure: no I/O, no event loop. A :class:`Router` gives each codec the channel's
decoding table once (:meth:`~wsevents.codecs.Codec.envelope_decoder`); the
connection core (:mod:`wsevents._protocol`) offers each frame to the codec's
one-pass decoder (:attr:`Router.text_pass`, :attr:`Router.binary_pass`), which
answers ``(event, data, id)``, maps the event to its handler
(:attr:`Router.handlers`), and calls :meth:`Router.route` for the frames the
pass does not take.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from pydantic import ValidationError

from ._envelope import ASK, BadEnvelope, RequestId, parse_answer, parse_envelope
from ._onepass import Trace
from ._routing import Channel, Handler
from .codecs import Codec, Decoding, EnvelopeDecoder
from .exceptions import DecodeError, DuplicateKeyError, ErrorCode

__all__ = [
    "Answer",
    "Call",
    "Refusal",
    "Router",
    "byte_size",
    "decoding_table",
    "readable_id",
    "trace_of",
    "validation_details",
]

logger = logging.getLogger("wsevents")

Call = tuple[Handler, Any, RequestId, "Trace | None"]
"""A handler to call: ``(handler, validated data, request id, trace context)``."""


class Refusal(NamedTuple):
    """An error frame to answer a frame with.

    ``event`` is set for a registered event (the telemetry gives it a span),
    ``trace`` where the frame carried trace context.
    """

    code: str
    message: str
    details: Any
    request_id: RequestId
    event: str | None = None
    trace: Trace | None = None


class Answer(NamedTuple):
    """A frame with ``ask``: a client's answer to a server request, never a request."""

    ask: str
    event: str | None
    data: Any


# How an ``ask`` key starts in each codec: a frame without it is no answer.
_ASK_TEXT = f'"{ASK}"'
_ASK_BINARY = bytes([0xA0 | len(ASK)]) + ASK.encode()


class Router:
    """Route the frames of one connection: its channel, and the codec of each frame type."""

    __slots__ = (
        "binary_decoder",
        "binary_pass",
        "channel",
        "handlers",
        "revision",
        "text_decoder",
        "text_pass",
    )

    def __init__(self, channel: Channel, text_decoder: Codec, binary_decoder: Codec) -> None:
        self.channel = channel
        self.handlers = channel.handlers
        self.revision = channel.revision  # a handler added later makes a new router
        self.text_decoder = text_decoder
        self.binary_decoder = binary_decoder
        table = decoding_table(channel)
        # The codec's one-pass decoders for this channel's events (None: none applies).
        self.text_pass: EnvelopeDecoder | None = text_decoder.envelope_decoder(table)
        self.binary_pass: EnvelopeDecoder | None = binary_decoder.envelope_decoder(table)

    def route(self, payload: str | bytes) -> Call | Refusal | Answer:
        """Decode a frame, read its envelope, find its handler and validate its data.

        The general path: the caller offers the frame to :attr:`text_pass` or
        :attr:`binary_pass` first, which answer the same, faster, or ``None``
        (a frame with ``ask`` among them: it is an :class:`Answer`).
        """
        decoder = self.text_decoder if payload.__class__ is str else self.binary_decoder
        try:
            decoded = decoder.decode(payload)
        except DuplicateKeyError as exc:
            code = ErrorCode.BAD_ENVELOPE if exc.top_level else ErrorCode.BAD_FRAME
            ambiguous = exc.top_level and exc.key == "id"
            request_id = None if ambiguous else readable_id(exc.decoded)
            return Refusal(code, str(exc), None, request_id)
        except DecodeError as exc:
            return Refusal(ErrorCode.BAD_FRAME, str(exc), None, None)
        except Exception:  # a user codec that raised something else
            logger.warning("codec %r failed to decode a frame", decoder, exc_info=True)
            return Refusal(ErrorCode.BAD_FRAME, "frame could not be decoded", None, None)
        if type(decoded) is dict and ASK in decoded:
            return Answer(*parse_answer(decoded))
        try:
            event, data, request_id = parse_envelope(decoded)
        except BadEnvelope as exc:
            return Refusal(ErrorCode.BAD_ENVELOPE, exc.message, None, exc.request_id)
        handler = self.channel.handlers.get(event)
        if handler is None:
            message = f"no handler for event {event!r}"
            return Refusal(ErrorCode.UNKNOWN_EVENT, message, None, request_id)
        trace = trace_of(decoded) if "traceparent" in decoded else None
        if handler.validate is not None:
            try:
                data = handler.validate(data)
            except ValidationError as exc:
                message = f"invalid data for event {event!r}"
                details = validation_details(exc)
                return Refusal(
                    ErrorCode.VALIDATION_ERROR, message, details, request_id, event, trace
                )
        return handler, data, request_id, trace

    def answer(self, payload: str | bytes) -> Answer | None:
        """The frame as an answer, if it is one (it has an ``ask`` key); else ``None``.

        Looks for the key's bytes first: most frames are not decoded here.
        """
        if payload.__class__ is str:
            if _ASK_TEXT not in payload:
                return None
            decoder = self.text_decoder
        else:
            if _ASK_BINARY not in payload:
                return None
            decoder = self.binary_decoder
        try:
            decoded = decoder.decode(payload)
        except Exception:
            return None  # the general path answers it
        if type(decoded) is dict and ASK in decoded:
            return Answer(*parse_answer(decoded))
        return None

    def rate_limited(self, payload: str | bytes) -> Refusal:
        """The refusal of a frame over the rate limit: not routed, its ``id`` read where it can be.

        Its event too, where it is registered, and its trace context: the
        telemetry gives it a span.
        """
        decoder = self.text_decoder if payload.__class__ is str else self.binary_decoder
        event = request_id = trace = None
        try:
            decoded = decoder.decode(payload)
            name, _, request_id = parse_envelope(decoded)
        except Exception:
            pass
        else:
            if name in self.handlers:
                event = name
                trace = trace_of(decoded)
        return Refusal(ErrorCode.RATE_LIMITED, "too many events", None, request_id, event, trace)


def decoding_table(channel: Channel) -> dict[str, Decoding]:
    """What a codec needs to read the channel's frames: each event's type and validator."""
    return {
        event: Decoding(handler.model, handler.validate)
        for event, handler in channel.handlers.items()
    }


def trace_of(envelope: dict[str, Any]) -> Trace | None:
    """An envelope's W3C trace context, where its ``traceparent`` is a string.

    Checked by the telemetry that uses it: a malformed one is ignored there.
    """
    traceparent, tracestate = envelope.get("traceparent"), envelope.get("tracestate")
    if type(traceparent) is not str:
        return None
    return traceparent, tracestate if type(tracestate) is str else None


def readable_id(decoded: Any) -> RequestId:
    """The ``id`` of a decoded frame, where it can be read."""
    try:
        return parse_envelope(decoded)[2]
    except BadEnvelope as exc:
        return exc.request_id


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as ``{loc, msg, type}``: never the input, which may hold secrets."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def byte_size(payload: str | bytes) -> int:
    """The size of a frame's payload in bytes."""
    if isinstance(payload, str):
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(payload)
