"""Orders charged once, confirmed by the buyer: ``uvicorn examples.orders.app:app``.

Requests both ways (docs/requests.md). The client places an order with
``place``; before charging, the server asks the client to confirm
(``confirm``, a server request the client answers). ``place`` is a ``once``
handler: a client whose connection drops sends the request again after it
reconnects, with the same session and ``id``, and gets the first run's
answer; the buyer is asked and charged once. Set
``WSEVENTS_BACKPLANE=redis://127.0.0.1:6379/0`` to keep that promise across
processes and machines.
"""

from __future__ import annotations

import itertools
import os

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.routing import Mount

from wsevents import Channel, Connection, ConnectionGone, EventApp, EventError, RequestTimeout

orders = Channel("/orders", title="Orders", description="Place orders; each is charged once.")


class Place(BaseModel):
    """An order to place."""

    item: str = Field(min_length=1, max_length=100, examples=["teapot"])
    quantity: int = Field(default=1, ge=1, le=100)


class Placed(BaseModel):
    """A placed order, charged."""

    order: int
    item: str
    quantity: int


class Question(BaseModel):
    """What the server asks the buyer."""

    question: str


class Confirmed(BaseModel):
    """The buyer's answer."""

    yes: bool


orders.asks("confirm", model=Question, reply=Confirmed, summary="Ask the buyer to confirm.")

NUMBERS = itertools.count(1)
CHARGED: list[Placed] = []  # the app's database, in a real app


@orders.on(
    "place",
    model=Place,
    reply=Placed,
    once=True,
    errors={"not_confirmed": "the buyer said no, or did not answer in time"},
)
async def place(conn: Connection, data: Place) -> Placed:
    """Place an order: the buyer confirms it, then it is charged, once per request."""
    question = Question(question=f"Buy {data.quantity} x {data.item}?")
    try:
        answer = await conn.request("confirm", question, timeout=30.0)
    except (RequestTimeout, ConnectionGone):  # kept: a resend gets this answer too
        raise EventError("not_confirmed", "the buyer did not answer") from None
    if not answer.yes:
        raise EventError("not_confirmed", "the buyer said no")
    placed = Placed(order=next(NUMBERS), item=data.item, quantity=data.quantity)
    CHARGED.append(placed)
    return placed


events = EventApp(
    [orders],
    title="Orders",
    version="1.0.0",
    description="Orders charged once, confirmed by the buyer.",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    request_window=300.0,
)

app = Starlette(routes=[Mount("/ws", app=events)], lifespan=events.lifespan)
