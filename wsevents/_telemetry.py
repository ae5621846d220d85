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
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from ._stats import Stats

__all__ = ["Telemetry"]


def _version() -> str:
    """wsevents' version, as instrumentation scopes name it."""
    try:
        return importlib.metadata.version("wsevents")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return ""


SYSTEM = "wsevents"
SERVER_FAULTS = frozenset({500, 503})  # refusals that are the server's fault: status ERROR


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

    # -- spans ---------------------------------------------------------------------------

    @contextmanager
    def handshake(self, address: str) -> Iterator[Span]:
        """The span of one handshake to the channel at ``address``, current while it runs.

        The ``on_connect`` hooks run in it, so spans they make are its children.
        """
        attributes = {"messaging.system": SYSTEM, "wsevents.channel": address}
        with self.tracer.start_as_current_span(
            f"wsevents connect {address}",
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,  # an exception's text may hold what a client sent
            set_status_on_exception=False,
        ) as span:
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
