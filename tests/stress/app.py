from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel
from typing_extensions import NotRequired, TypedDict

from wsevents import Channel, Connection, EventApp

from . import shop, store

T = TypeVar("T")


class Colour(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class Tree(BaseModel):
    """A recursive model."""

    label: str
    children: list[Tree] = []


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = Field(default=9, ge=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Adopt(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    colour: Colour = Colour.RED
    nickname: str | None = Field(default=None, max_length=20, description="Optional nickname.")


class Receipt(BaseModel):
    at: datetime.datetime
    order_id: uuid.UUID
    total: decimal.Decimal
    signature: bytes
    shape: tuple[int, str]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Tags(RootModel[list[str]]):
    """A root model: its data is a list."""


class Address(TypedDict):
    street: str
    zip: NotRequired[str]


class Renamed(BaseModel):
    """Fields whose wire names are not Python names."""

    model_config = ConfigDict(populate_by_name=True)

    first_name: str = Field(alias="first-name")
    klass: str = Field(alias="class", default="a")
    kind: Literal["renamed"] = "renamed"
    address: Address | None = None
    picked: int = Field(default=0, validation_alias=AliasChoices("picked", "chosen"))


class Nested(BaseModel):
    tree: Tree
    points: list[Point]
    tags: dict[str, int]


def build() -> EventApp:
    catalogue = Channel("/catalogue/{section}", title="Catalogue", tags=["shop"])
    pets = Channel("/pets/{id:int}/{token:uuid}", description="Pets, by id.")
    shared = Channel("/shared/{rest:path}", name="shared-models")

    @catalogue.on("items.list", model=Page[shop.Item], reply=Page[store.Item], tags=["read"])
    async def list_items(data: Page[shop.Item]) -> Page[store.Item]:
        """List items.

        Takes one page of shop items and answers with store items.
        """
        return Page[store.Item](items=[])

    @catalogue.on("items/add", model=shop.Item, reply=store.Item)
    async def add(data: shop.Item) -> store.Item:
        return store.Item(name=data.sku)

    @catalogue.on("numbers", model=list[int], reply=int)
    async def numbers(data: list[int]) -> int:
        return sum(data)

    @catalogue.on("point", model=Point, reply=Point)
    async def point(data: Point) -> Point:
        return data

    @catalogue.on("nudge")
    async def nudge(conn: Connection) -> None:
        """An event without a payload."""

    @catalogue.on("items_add", model=Annotated[int, Field(gt=0, description="How many.")])
    async def clash(data: int) -> None:
        """Its key clashes with 'items/add' once sanitized."""

    @catalogue.on("delete", model=Renamed, reply=Renamed)
    async def delete(data: Renamed) -> Renamed:
        """An event named with a keyword, fields with aliases."""
        return data

    @catalogue.on("tags", model=Tags, reply=Tags)
    async def tags(data: Tags) -> Tags:
        return data

    catalogue.emits("items.changed", model=Page[shop.Item], summary="The catalogue changed.")
    catalogue.emits("anything")

    @pets.on("adopt", model=Adopt, reply=Receipt)
    async def adopt(data: Adopt, id: int) -> Receipt:
        raise NotImplementedError

    @pets.on("tree", model=Tree, reply=Nested)
    async def tree(data: Tree) -> Nested:
        raise NotImplementedError

    @pets.on("maybe", model=Adopt | None)
    async def maybe(data: Adopt | None) -> None:
        return None

    pets.emits("adopted", model=Receipt)
    pets.emits("tree", model=Tree)  # the same name both ways
    pets.asks("adopt", model=Adopt, reply=Receipt, summary="Confirm an adoption.")  # and asked
    pets.asks("ping")  # no data either way

    @pets.on("pay", model=Adopt, reply=Receipt, once=True)
    async def pay(data: Adopt) -> Receipt:
        """Runs once per request, though the client sends it again."""
        raise NotImplementedError

    @shared.on("adopt", model=Adopt, reply=shop.Item)
    async def shared_adopt(data: Adopt) -> shop.Item:
        raise NotImplementedError

    return EventApp(
        [catalogue, pets, shared],
        title="Stress",
        version="0.0.1",
        description="Every corner of the builder.",
        servers={"local": {"host": "127.0.0.1:8000", "protocol": "ws"}},
    )
