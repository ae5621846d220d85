from __future__ import annotations

from pydantic import BaseModel, Field


class Item(BaseModel):
    """An item in the shop."""

    sku: str = Field(pattern=r"^[A-Z]{3}-[0-9]{4}$", examples=["ABC-1234"])
    price_cents: int = Field(ge=0, description="Price in cents.")
