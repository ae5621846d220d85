from __future__ import annotations

from pydantic import BaseModel


class Item(BaseModel):
    """An item in the store: same class name, another module."""

    name: str
    shelf: int | None = None
