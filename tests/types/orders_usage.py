"""The typed Python client of examples/orders answering the server's request: mypy --strict."""

from __future__ import annotations

import asyncio

from orders_client import Confirmed, OrdersClient, Placed, Question

import wsevents


async def main(base_url: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with OrdersClient(base_url) as orders:
        asked: list[str] = []

        @orders.answer_confirm
        async def confirm(question: Question) -> Confirmed:
            asked.append(question.question)
            return Confirmed(yes=True)

        placed: Placed = await orders.place(item="teapot", quantity=2)
        out["placed"] = [placed.item, placed.quantity]
        out["asked"] = asked

        def refuse(question: Question) -> Confirmed:
            return Confirmed(yes=False)

        orders.answer_confirm(refuse)  # a plain function answers too
        try:
            await orders.place(item="kettle")
        except wsevents.EventError as exc:
            out["refused"] = exc.code
    return out


if __name__ == "__main__":
    print(asyncio.run(main("ws://127.0.0.1:8000")))
