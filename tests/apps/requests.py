"""An app for the server request tests across processes: ``uvicorn tests.apps.requests:app``.

The backplane comes from ``WSEVENTS_BACKPLANE``. A client names its
subscriptions in the query string (``?sub=room&sub=ro+``) and asks the app
to make server requests of other connections (``ask_one``, ``ask_all``);
each outcome comes back described as plain data.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

from wsevents import (
    Channel,
    Connection,
    ConnectionGone,
    EventApp,
    EventError,
    RequestTimeout,
)

node = Channel("/node")


class Confirm(BaseModel):
    question: str


class Confirmed(BaseModel):
    yes: bool


node.asks("confirm", model=Confirm, reply=Confirmed)


class AskOne(BaseModel):
    id: str
    timeout: float = 5.0


class AskAll(BaseModel):
    topic: str
    timeout: float = 5.0


def describe(outcome: Any) -> dict[str, Any]:
    """What became of one server request, as plain data."""
    if isinstance(outcome, EventError):
        return {"error": outcome.code}
    if isinstance(outcome, RequestTimeout):
        return {"timeout": isinstance(outcome, TimeoutError)}
    if isinstance(outcome, ConnectionGone):
        return {"gone": True}
    if isinstance(outcome, BaseException):
        return {"raised": type(outcome).__name__}
    return {"ok": outcome.model_dump() if isinstance(outcome, Confirmed) else outcome}


@node.on_connect
async def subscribe(conn: Connection) -> None:
    for subscription in conn.query_params.getlist("sub"):
        await conn.subscribe(subscription)


@node.on("whoami", reply=str)
async def whoami(conn: Connection) -> str:
    return conn.id


@node.on("ask_one", model=AskOne, reply=dict[str, Any])
async def ask_one(conn: Connection, data: AskOne) -> dict[str, Any]:
    started = time.monotonic()
    try:
        outcome = await conn.app.request(
            data.id, "confirm", Confirm(question="sure?"), timeout=data.timeout
        )
    except Exception as exc:
        outcome = exc
    return {**describe(outcome), "seconds": time.monotonic() - started}


@node.on("ask_all", model=AskAll, reply=dict[str, Any])
async def ask_all(conn: Connection, data: AskAll) -> dict[str, Any]:
    started = time.monotonic()
    outcomes = await conn.app.request_all(
        data.topic, "confirm", {"question": "all?"}, timeout=data.timeout
    )
    return {
        "outcomes": {key: describe(value) for key, value in outcomes.items()},
        "seconds": time.monotonic() - started,
    }


# -- once handlers ------------------------------------------------------------------------

RUNS: list[str] = []  # the once handlers' runs in this process


class Charge(BaseModel):
    amount: int
    seconds: float = 0.0


@node.on("charge", model=Charge, reply=dict[str, Any], once=True)
async def charge(conn: Connection, data: Charge) -> dict[str, Any]:
    """Runs at most once per request, whichever process it reaches."""
    RUNS.append(f"charge {data.amount}")
    await asyncio.sleep(data.seconds)
    if data.amount < 0:
        raise EventError("declined", "a negative amount")
    return {"amount": data.amount, "node": conn.app.node_id, "runs_here": len(RUNS)}


@node.on("runs", reply=list[str])
async def runs() -> list[str]:
    return RUNS


app = EventApp([node], title="Requests", version="1", backplane=os.environ["WSEVENTS_BACKPLANE"])
