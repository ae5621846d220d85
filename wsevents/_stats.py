"""Counters: what ``EventApp.stats()`` returns and ``metrics_url`` serves."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

__all__ = ["Stats", "render_prometheus"]


class Stats:
    """The app's counters; incremented on the hot path, so plain attributes and dicts."""

    def __init__(self) -> None:
        self.connections_total = 0
        self.handshakes_refused: Counter[int] = Counter()  # by HTTP status
        # Error frames of registered events, by (channel address, event, error code).
        self.events: Counter[tuple[str, str, str]] = Counter()
        # Frames handled without error, by channel address then event: each
        # connection adds to its channel's (a defaultdict adds faster than a Counter).
        self.events_ok: dict[str, defaultdict[str, int]] = {}
        self.errors: Counter[str] = Counter()  # by error code
        self.closed: Counter[int] = Counter()  # closes the app decided, by close code
        self.slow_consumers_dropped = 0
        self.rate_limited = 0
        # Server requests (conn.request), by outcome: answered, error, invalid, timeout, gone.
        self.requests: Counter[str] = Counter()
        self.answers_dropped = 0  # answers nobody waited for: late, or an unknown ask
        # Refreshes of expiring credentials (wsevents.refresh), by outcome:
        # refreshed, refused, failed (the check raised).
        self.refreshes: Counter[str] = Counter()
        # Connections the watchdog looked at, one per connection per look (4 a second).
        self.watchdog_looks = 0

    def ok_counter(self, channel: str) -> defaultdict[str, int]:
        """The counts of frames handled without error on ``channel`` (its address), by event."""
        counter = self.events_ok.get(channel)
        if counter is None:
            counter = self.events_ok[channel] = defaultdict(int)
        return counter

    def error_sent(self, code: str, event: str | None, channel: str = "") -> None:
        """Count an error frame, by code, and by channel and event too for a registered one."""
        self.errors[code] += 1
        if event is not None:
            self.events[channel, event, code] += 1

    def event_outcomes(self) -> dict[tuple[str, str, str], int]:
        """Every handled frame's count, by (channel address, event, ``ok`` or error code)."""
        outcomes: dict[tuple[str, str, str], int] = dict(self.events)
        for channel, counter in self.events_ok.items():
            for event, count in counter.items():
                outcomes[channel, event, "ok"] = count
        return outcomes

    def snapshot(self, connections_open: int, backplane: dict[str, int]) -> dict[str, Any]:
        """Return every counter as plain data."""
        events: dict[str, dict[str, int]] = {}
        for (_, event, outcome), count in sorted(self.event_outcomes().items()):
            by_outcome = events.setdefault(event, {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + count
        return {
            "connections_open": connections_open,
            "connections_total": self.connections_total,
            "handshakes_refused": dict(sorted(self.handshakes_refused.items())),
            "events": events,
            "errors": dict(sorted(self.errors.items())),
            "closed_by_server": dict(sorted(self.closed.items())),
            "slow_consumers_dropped": self.slow_consumers_dropped,
            "rate_limited": self.rate_limited,
            "requests": dict(sorted(self.requests.items())),
            "answers_dropped": self.answers_dropped,
            "refreshes": dict(sorted(self.refreshes.items())),
            "watchdog_looks": self.watchdog_looks,
            "backplane": dict(backplane),
        }


def _label(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{text}"'


_SERIES = (  # (snapshot key, metric name, type, help, label names)
    ("connections_open", "connections_open", "gauge", "Open WebSocket connections.", ()),
    ("connections_total", "connections_total", "counter", "Accepted WebSocket connections.", ()),
    ("handshakes_refused", "handshakes_refused_total", "counter",
     "Refused handshakes, by HTTP status.", ("status",)),
    ("events", "events_total", "counter",
     "Client events handled, by event and outcome.", ("event", "outcome")),
    ("errors", "errors_total", "counter", "Error frames sent, by code.", ("code",)),
    ("closed_by_server", "closed_by_server_total", "counter",
     "Connections the server closed, by close code.", ("code",)),
    ("slow_consumers_dropped", "slow_consumers_dropped_total", "counter",
     "Clients closed for reading too slowly.", ()),
    ("rate_limited", "rate_limited_total", "counter", "Frames refused by the rate limit.", ()),
    ("requests", "server_requests_total", "counter",
     "Server requests made of clients, by outcome.", ("outcome",)),
    ("answers_dropped", "answers_dropped_total", "counter",
     "Answers to server requests that nobody waited for (late or unknown).", ()),
    ("refreshes", "refreshes_total", "counter",
     "Refreshes of expiring credentials, by outcome.", ("outcome",)),
    ("watchdog_looks", "watchdog_looks_total", "counter",
     "Connections the watchdog looked at (those with a send under way or an expiry).", ()),
)  # fmt: skip


def _samples(value: Any, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    if not names:
        return [("", value)]
    samples = []
    for key, inner in value.items():
        label = f"{names[0]}={_label(key)}"
        for rest, count in _samples(inner, names[1:]):
            samples.append((f"{label},{rest}" if rest else label, count))
    return samples


def render_prometheus(snapshot: dict[str, Any]) -> str:
    """Render a :meth:`Stats.snapshot` in Prometheus' text exposition format."""
    lines: list[str] = []
    series = [*_SERIES]
    for key in snapshot["backplane"]:
        help_text = f"Backplane {key.replace('_', ' ')}."
        series.append((key, f"backplane_{key}_total", "counter", help_text, ()))
    for key, name, kind, help_text, labels in series:
        value = snapshot["backplane"][key] if name.startswith("backplane_") else snapshot[key]
        lines += [f"# HELP wsevents_{name} {help_text}", f"# TYPE wsevents_{name} {kind}"]
        for label, count in _samples(value, labels):
            lines.append(
                f"wsevents_{name}{{{label}}} {count}" if label else f"wsevents_{name} {count}"
            )
    return "\n".join(lines) + "\n"
