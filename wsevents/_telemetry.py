"""OpenTelemetry spans and metrics (DESIGN.md section 13), through the API only.

Imported only when ``EventApp(telemetry=...)`` turns it on: with it off,
nothing of OpenTelemetry is imported and the runtime holds ``None`` where it
would hold a :class:`Telemetry`. The application installs the SDK and its
exporters; wsevents uses the global tracer and meter providers, or the ones
it was given.

Metrics are read from the app's :class:`~wsevents._stats.Stats` when a reader
collects them (observable instruments), so the Prometheus text endpoint and
OpenTelemetry report the same counts from one source. Their attributes hold
declared names only (a channel's address, a registered event, an error or
close code), never a topic or a path a client chose.

Over 300 lines: every span and instrument wsevents makes, with the rules
they share (names, attributes, what is an error), in one module that is
imported only when telemetry is on.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from ._calls import Handled
    from ._envelope import RequestId
    from ._history import Position
    from ._onepass import Trace
    from ._stats import Stats
    from ._subscriptions import Carrier

__all__ = ["Telemetry"]

Publish = Callable[..., Awaitable["Position | None"]]


def _version() -> str:
    """wsevents' version, as instrumentation scopes name it."""
    try:
        return importlib.metadata.version("wsevents")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return ""


SYSTEM = "wsevents"
SERVER_FAULTS = frozenset({500, 503})  # refusals that are the server's fault: status ERROR
FAULT_CODES = frozenset({"internal_error", "unavailable"})  # error frames that are the server's
# W3C Trace Context on the wire and through the backplane, whatever the app's own
# global propagator is (B3, Jaeger): the protocol names traceparent and tracestate.
W3C = TraceContextTextMapPropagator()
ROOT = Context()  # a span started in it starts a trace


def qualified_name(kind: type) -> str:
    """An exception type as ``error.type`` names it: module and qualified name."""
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def record_raised(span: Span, exception: BaseException) -> str:
    """Record what was raised in ``span``: its type only (``error.type``, an ``exception``
    event), never its message, which may hold what a client sent. Returns the type's name."""
    name = qualified_name(type(exception))
    span.set_attribute("error.type", name)
    span.add_event("exception", {"exception.type": name})
    return name


def carried(carrier: Carrier) -> Context:
    """The context a W3C carrier holds (a publication's, a request's from another process)."""
    return W3C.extract(carrier, context=ROOT)


_TRACEPARENT_CHARACTERS = frozenset("0123456789abcdef-")


def parent_of(traceparent: str, tracestate: str | None) -> Context:
    """The context a frame's ``traceparent`` and ``tracestate`` name; the root for a bad one.

    A version ``00`` traceparent without tracestate, the common case, is read
    here in a few steps (lowercase hex, the dashes where they go, no id of
    zeros), as W3C Trace Context states it; any other goes through the
    API's propagator, which reads later versions and tracestate.
    """
    if (
        tracestate is not None
        or len(traceparent) != 55
        or not traceparent.startswith("00-")
        or traceparent[35] != "-"
        or traceparent[52] != "-"
        or not _TRACEPARENT_CHARACTERS.issuperset(traceparent)
        or "-" in traceparent[3:35]
        or "-" in traceparent[36:52]
        or "-" in traceparent[53:]
    ):
        carrier = {"traceparent": traceparent}
        if tracestate is not None:
            carrier["tracestate"] = tracestate
        return carried(carrier)
    trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
    if not trace_id or not span_id:
        return ROOT
    flags = TraceFlags(int(traceparent[53:], 16))
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent), ROOT)


class Telemetry:
    """The tracer and the meter of one app, and what it reports through them.

    Args:
        stats: the app's counters, read when metrics are collected.
        connections_open: how many connections this process holds now.
        backplane_stats: the backplane's counters.
        tracer_provider, meter_provider: the providers to use (``None``: the global ones).
    """

    def __init__(
        self,
        stats: Stats,
        connections_open: Callable[[], int],
        backplane_stats: Callable[[], Mapping[str, int]],
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        self._stats = stats
        self._connections_open = connections_open
        self._backplane_stats = backplane_stats
        version = _version()
        self.tracer = trace.get_tracer(SYSTEM, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SYSTEM, version, meter_provider=meter_provider)
        counter, gauge = meter.create_observable_counter, meter.create_observable_up_down_counter
        for create, name, callback, unit, description in (
            (counter, "wsevents.events", self._events, "{event}",
             "Client events handled, by channel, event and outcome (ok or the code)."),
            (gauge, "wsevents.connections", self._connections, "{connection}",
             "Open WebSocket connections in this process."),
            (counter, "wsevents.closes", self._closes, "{connection}",
             "Connections the server closed, by close code."),
            (counter, "wsevents.slow_consumers", self._slow_consumers, "{connection}",
             "Clients closed for reading too slowly."),
            (counter, "wsevents.requests", self._requests, "{request}",
             "Server requests made of clients, by outcome."),
            (counter, "wsevents.backplane.publish.failures", self._publish_failures,
             "{publication}", "Publications the backplane could not send to the other processes."),
        ):  # fmt: skip
            create(name, callbacks=[callback], unit=unit, description=description)
        self._by_event: dict[tuple[str, str], dict[str, str]] = {}
        self._handler_duration = meter.create_histogram(
            "wsevents.handler.duration",
            unit="s",
            description="How long client events took to handle and answer, by channel and event.",
        )
        self._publish_duration = meter.create_histogram(
            "wsevents.backplane.publish.duration",
            unit="s",
            description="Round trips of the backplane's publish pipeline.",
        )
        self._publications = meter.create_counter(
            "wsevents.publications", unit="{publication}", description="Publishes made here."
        )
        self._deliveries = meter.create_counter(
            "wsevents.deliveries",
            unit="{frame}",
            description="Publications pushed to this process's subscribers, one per subscriber.",
        )

    # -- spans ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def handshake(self, address: str) -> Iterator[Span]:
        """The span of one handshake to the channel at ``address``, current while it runs.

        The ``on_connect`` hooks run in it, so spans they make are its children.
        """
        attributes = {"messaging.system": SYSTEM, "wsevents.channel": address}
        with self._current(f"wsevents connect {address}", SpanKind.SERVER, attributes) as span:
            yield span

    def accepted(self, span: Span, connection_id: str) -> None:
        """The handshake was accepted: its connection's id."""
        span.set_attribute("wsevents.connection.id", connection_id)

    @staticmethod
    def refused(status: int) -> None:
        """The handshake under way was refused with HTTP ``status``."""
        span = trace.get_current_span()
        span.set_attribute("http.response.status_code", status)
        if status in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR))

    async def event(
        self,
        channel: str,
        event: str,
        connection_id: str,
        request_id: RequestId,
        trace_context: Trace | None,
        handling: Awaitable[Handled | None],
    ) -> None:
        """Await ``handling`` (one client event's) in its span, current while its handler runs.

        A child of the frame's trace context, or the start of a trace where
        it carries none (or a malformed one). Times the handling for
        ``wsevents.handler.duration``. The span is started and made current
        by hand, not in two context managers: this runs once per frame.
        """
        attributes: dict[str, str] = {
            "messaging.system": SYSTEM,
            "wsevents.channel": channel,
            "wsevents.event": event,
            "wsevents.connection.id": connection_id,
        }
        if request_id is not None:
            attributes["wsevents.request.id"] = str(request_id)
        start = perf_counter()
        span = self.tracer.start_span(
            f"wsevents {event}",
            context=ROOT if trace_context is None else parent_of(*trace_context),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        token = context_api.attach(trace.set_span_in_context(span, ROOT))
        try:
            self.handled(span, await handling)
        finally:
            context_api.detach(token)
            span.end()  # a cancelled handling too: no exception recorded, no text
        self._handler_duration.record(
            perf_counter() - start, self._event_attributes(channel, event)
        )

    def _event_attributes(self, channel: str, event: str) -> dict[str, str]:
        """The attributes of one event's measurements, made once (the SDK hashes them)."""
        key = (channel, event)
        found = self._by_event.get(key)
        if found is None:
            found = self._by_event[key] = {"wsevents.channel": channel, "wsevents.event": event}
        return found

    @staticmethod
    def handled(span: Span, handled: Handled | None) -> None:
        """Record how an event's handling ended: its error code, what was raised (its type).

        Status ERROR only for the server's faults (``internal_error``,
        ``unavailable``), never for a client's bad input.
        """
        if handled is None:
            return
        code, exception, once = handled
        if once is not None:
            span.set_attribute("wsevents.once.answer", once)
        if code is None:
            return
        span.set_attribute("wsevents.error.code", code)
        if exception is not None:
            record_raised(span, exception)
        elif code in FAULT_CODES:
            span.set_attribute("error.type", code)
        if code in FAULT_CODES:
            span.set_status(Status(StatusCode.ERROR))

    async def publish(
        self, publish: Publish, topic: str, event: str, data: Any, exclude: Any
    ) -> Position | None:
        """Run ``publish`` in a PRODUCER span, ended once the backplane has the publication.

        Its context goes with the publication, as a W3C carrier (never the
        ambient context of whoever delivers it).
        """
        attributes = {"messaging.system": SYSTEM, "wsevents.event": event, "wsevents.topic": topic}
        with self._current("wsevents publish", SpanKind.PRODUCER, attributes) as span:
            try:
                carrier = self.carrier()
                position: Position | None = await publish(topic, event, data, exclude, carrier)
            except Exception as exc:  # the app's data or topic, or the backplane: ours
                record_raised(span, exc)
                span.set_status(Status(StatusCode.ERROR))
                raise
        self._publications.add(1)
        return position

    def deliver(
        self, topic: str, event: str, trace_context: Carrier | None, recipients: int
    ) -> contextlib.AbstractContextManager[Any]:
        """The CONSUMER span of one publication's delivery to this process's subscribers.

        A child of the publish, and linked to it; none for a publication whose
        publisher did not trace it (it is counted all the same).
        """
        self._deliveries.add(recipients)
        if not trace_context:
            return contextlib.nullcontext()
        context = carried(trace_context)
        producer = trace.get_current_span(context).get_span_context()
        return self.tracer.start_as_current_span(
            "wsevents deliver",
            context=context,
            kind=SpanKind.CONSUMER,
            links=[Link(producer)] if producer.is_valid else None,
            attributes={
                "messaging.system": SYSTEM,
                "wsevents.event": event,
                "wsevents.topic": topic,
                "wsevents.recipients": recipients,
            },
        )

    @contextlib.contextmanager
    def ask(
        self, channel: str, event: str, connection_id: str, trace_context: Carrier | None
    ) -> Iterator[Carrier]:
        """The CLIENT span of one server request, until its answer; yields what the frame carries.

        A child of ``trace_context`` (another process asked), else of the
        current span. Its outcome: ``answered``, or the type of what the
        request raised (a client's error answer or silence is not the
        server's fault: no ERROR status).
        """
        context = None if trace_context is None else carried(trace_context)
        attributes = {
            "messaging.system": SYSTEM,
            "wsevents.channel": channel,
            "wsevents.event": event,
            "wsevents.connection.id": connection_id,
        }
        with self._current(f"wsevents ask {event}", SpanKind.CLIENT, attributes, context) as span:
            try:
                yield self.carrier()
            except Exception as exc:
                name = record_raised(span, exc)
                span.set_attribute("wsevents.outcome", getattr(exc, "code", name))
                raise
            span.set_attribute("wsevents.outcome", "answered")

    def _current(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], context: Context | None = None
    ) -> contextlib.AbstractContextManager[Span]:
        """A span current while the ``with`` lasts; what escapes it is recorded by the caller,
        by its type (the SDK would write the exception's message)."""
        return self.tracer.start_as_current_span(
            name,
            context=context,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def carrier() -> Carrier:
        """The current trace context, as a W3C carrier."""
        carrier: Carrier = {}
        W3C.inject(carrier)
        return carrier

    def round_trip(self, seconds: float) -> None:
        """One round trip of the backplane's publish pipeline took ``seconds``."""
        self._publish_duration.record(seconds)

    # -- metrics, read from the counters -------------------------------------------------

    def _events(self, options: CallbackOptions) -> Iterable[Observation]:
        for (channel, event, outcome), count in self._stats.event_outcomes().items():
            attributes = {
                "wsevents.channel": channel,
                "wsevents.event": event,
                "wsevents.outcome": outcome,
            }
            yield Observation(count, attributes)

    def _connections(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._connections_open())

    def _closes(self, options: CallbackOptions) -> Iterable[Observation]:
        for code, count in self._stats.closed.items():
            yield Observation(count, {"wsevents.close.code": int(code)})

    def _slow_consumers(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._stats.slow_consumers_dropped)

    def _requests(self, options: CallbackOptions) -> Iterable[Observation]:
        for outcome, count in self._stats.requests.items():
            yield Observation(count, {"wsevents.outcome": outcome})

    def _publish_failures(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._backplane_stats().get("publish_failures", 0))
