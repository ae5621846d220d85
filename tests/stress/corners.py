"""Names that meet: a registry to break the naming rules of the document and the typed clients."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wsevents import Channel, EventApp


class ErrorData(BaseModel):
    """The app's own model, named like the protocol's."""

    reason: str


class PingRequest(BaseModel):
    """Named like the payload title the document gives the `ping` request."""

    n: int


class Odd(BaseModel):
    """Fields named like what a generated method takes, or what pydantic owns."""

    self_: int = Field(alias="self")
    timeout: float = 1.0
    model_name: str = Field(default="x", alias="model-name")
    kind: Literal["odd"] = "odd"
    n1: int = Field(default=0, alias="1")


def build() -> EventApp:
    moves = Channel("/games/{query}/{base_url:int}", name="Moves")

    @moves.on("ping", model=PingRequest, reply=ErrorData)
    async def ping(data: PingRequest) -> ErrorData:
        return ErrorData(reason=str(data.n))

    @moves.on("1st-move", model=Odd, reply=Odd)
    async def first(data: Odd) -> Odd:
        return data

    @moves.on("class", model=list[Odd])
    async def klass(data: list[Odd]) -> None: ...

    moves.emits("error-ish", model=ErrorData)
    moves.emits("ping", model=PingRequest)

    return EventApp([moves, Channel("/nothing")], title="Corners", version="0")
