"""W3C Trace Context in the frames a Python client sends (DESIGN.md section 13).

Where the OpenTelemetry API is installed, each frame the client sends carries
the current context in the envelope's top-level ``traceparent`` and
``tracestate``, as the global propagator writes them (nothing where no span
is current), for the server's telemetry to follow. Without the API, frames
go as they are and nothing is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["TRACE_KEYS", "inject"]

TRACE_KEYS = ("traceparent", "tracestate")


@functools.cache
def _injector() -> Callable[[dict[str, Any]], None] | None:
    """The global propagator's ``inject``, looked for once; ``None`` without the API."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return None
    return propagate.inject


def inject(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the current trace context in its ``traceparent`` and ``tracestate``."""
    injector = _injector()
    if injector is not None:
        carrier: dict[str, Any] = {}
        injector(carrier)
        for key in TRACE_KEYS:
            if key in carrier:
                message[key] = carrier[key]
    return message
