"""A trace drawn as a waterfall, in HTML the browser tests screenshot (docs/trace.png).

Each row is one span (or the browser's own measure of its request): a bar
from its start to its end on one time axis, in milliseconds from the click,
coloured by the process that made it, labelled with its name, kind and the
attributes that say what it did. Drawn from the spans an in-memory exporter
collected, never by hand.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["Row", "waterfall"]

COLOURS = {"browser": "#6b7280", "process 1": "#2563eb", "process 2": "#059669"}


@dataclass(frozen=True)
class Row:
    """One bar: who made it, what it is, when it started and ended (ns since the epoch)."""

    where: str
    name: str
    detail: str
    start_ns: int
    end_ns: int


def waterfall(title: str, rows: list[Row], note: str) -> str:
    """The HTML page of ``rows`` on one axis; its ``#trace`` element is the picture."""
    origin = min(row.start_ns for row in rows)
    end = max(row.end_ns for row in rows)
    span_ms = max((end - origin) / 1e6, 0.001)
    bars = []
    for row in rows:
        left = (row.start_ns - origin) / 1e6 / span_ms * 100
        width = max((row.end_ns - row.start_ns) / 1e6 / span_ms * 100, 0.4)
        took = (row.end_ns - row.start_ns) / 1e6
        colour = COLOURS.get(row.where, "#9333ea")
        after = min(left + width, 88)
        bars.append(
            f'<div class="row"><div class="label"><b>{html.escape(row.name)}</b>'
            f"<span>{html.escape(row.where)} · {html.escape(row.detail)}</span></div>"
            f'<div class="lane"><div class="bar" style="left:{left:.2f}%;width:{width:.2f}%;'
            f'background:{colour}"></div><div class="took" style="left:{after:.2f}%">'
            f"{took:.2f} ms</div></div></div>"
        )
    ticks = "".join(
        f'<div class="tick" style="left:{fraction * 100:.0f}%">{fraction * span_ms:.1f} ms</div>'
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 14px/1.35 system-ui, sans-serif; color: #111; background: #fff; }}
#trace {{ width: 980px; padding: 18px 40px 14px 22px; }}
h1 {{ font-size: 16px; margin: 0 0 12px; }}
.row {{ display: flex; align-items: center; height: 40px; border-top: 1px solid #eee; }}
.label {{ width: 330px; display: flex; flex-direction: column; }}
.label span {{ color: #555; font-size: 12px; }}
.lane {{ position: relative; flex: 1; height: 100%; }}
.bar {{ position: absolute; top: 11px; height: 18px; border-radius: 3px; }}
.took {{ position: absolute; top: 11px; padding-left: 6px; font-size: 12px; color: #333; }}
.axis {{ position: relative; margin-left: 330px; height: 20px; border-top: 1px solid #999; }}
.tick {{ position: absolute; font-size: 11px; color: #555; transform: translateX(-50%); }}
p {{ font-size: 12px; color: #444; margin: 10px 0 0; }}
</style></head><body><div id="trace"><h1>{html.escape(title)}</h1>{"".join(bars)}
<div class="axis">{ticks}</div><p>{html.escape(note)}</p></div></body></html>"""
