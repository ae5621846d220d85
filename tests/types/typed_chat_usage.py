"""The chat's generated Python client in use: checked by mypy --strict, run against a live server.

tests/test_codegen.py writes ``chat_client.py`` beside it
(``wsevents client examples.chat.app:app --lang python``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from chat_client import ChatRoomClient, ErrorData, Pong, PresenceDiff, Said, Subscribed
from pydantic import ValidationError

from wsevents import EventError

T = TypeVar("T")


def first(future: asyncio.Future[T]) -> Callable[[T], None]:
    """A listener that keeps the first value it gets."""

    def keep(value: T) -> None:
        if not future.done():
            future.set_result(value)

    return keep


async def main(base: str) -> dict[str, object]:
    out: dict[str, object] = {}
    loop = asyncio.get_running_loop()
    heard: asyncio.Future[Said] = loop.create_future()
    joined: asyncio.Future[PresenceDiff] = loop.create_future()
    position: asyncio.Future[Subscribed] = loop.create_future()
    errors: asyncio.Future[ErrorData] = loop.create_future()
    async with ChatRoomClient(base, room="py lobby", query={"user": "py"}, reconnect=False) as chat:
        chat.on_said(first(heard))
        chat.on_wsevents_presence(first(joined))
        chat.on_wsevents_subscribed(first(position))
        chat.on_error(first(errors))
        pong: Pong = await chat.ping(n=41)
        out["pong"] = pong.n + 1
        await chat.say(text="hello from python")  # answered: the reply's data is null
        out["answer"] = None
        said = await asyncio.wait_for(heard, 5)
        out["said"] = [said.user, said.text]
        diff = await asyncio.wait_for(joined, 5)
        out["members"] = [info["user"] for info in diff.joined.values()]
        out["topic"] = (await asyncio.wait_for(position, 5)).topic
        try:
            await chat.say(text="")  # refused before sending: the model wants one character
        except ValidationError as error:
            out["refused"] = error.errors()[0]["type"]
        try:
            await chat.client.request("say", {"text": ""})  # past the model: the server refuses
        except EventError as error:
            out["invalid"] = [error.code, ChatRoomClient.errors["validation_error"]]
        try:
            await chat.client.request("nope")
        except EventError as error:
            out["unknown"] = error.code
        await chat.client.send("ping", {"n": "two"})  # no id: the error comes as a push
        out["pushed_error"] = (await asyncio.wait_for(errors, 5)).code
    return out
