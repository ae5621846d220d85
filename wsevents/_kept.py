"""What a Python client keeps across reconnects: its session, its positions, its requests.

The handshake URL names the session (``wsevents-session``) and the
positions held in history topics (``wsevents-resume``); the requests sent
with an ``id`` wait here for their answers, to be sent again on the next
connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._envelope import SESSION_PARAMETER
from ._history import RESUME_PARAMETER, SUBSCRIBED_EVENT, Position

__all__ = ["Out", "handshake_url", "track_position"]


class Out:
    """A request sent with an ``id`` and not answered yet: sent again after a reconnect."""

    __slots__ = ("frame", "future", "sent")

    def __init__(self, frame: str | bytes, future: asyncio.Future[Any]) -> None:
        self.frame = frame
        self.future = future
        self.sent = 0  # the connection it was last sent on (0: none yet)


def handshake_url(url: str, session: str, positions: dict[str, Position]) -> str:
    """``url`` with ``wsevents-session`` and the positions held in ``wsevents-resume``.

    Each replaces a value the URL had.
    """
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in (RESUME_PARAMETER, SESSION_PARAMETER)
    ]
    query.append((SESSION_PARAMETER, session))
    if positions:
        held = {topic: [epoch, offset] for topic, (epoch, offset) in positions.items()}
        query.append((RESUME_PARAMETER, json.dumps(held, separators=(",", ":"))))
    return urlunsplit(parts._replace(query=urlencode(query)))


def track_position(positions: dict[str, Position], decoded: dict[str, Any], event: str) -> bool:
    """Note the position a push carries; return whether it is new (not held already)."""
    if event == SUBSCRIBED_EVENT:
        data = decoded.get("data")
        if isinstance(data, dict) and isinstance(data.get("topic"), str):
            positions[data["topic"]] = Position(str(data["epoch"]), int(data["offset"]))
        return True
    topic, offset = decoded.get("topic"), decoded.get("offset")
    if not isinstance(topic, str) or not isinstance(offset, int):
        return True
    epoch = str(decoded.get("epoch"))
    held = positions.get(topic)
    if held is not None and held.epoch == epoch and offset <= held.offset:
        return False
    positions[topic] = Position(epoch, offset)
    return True
