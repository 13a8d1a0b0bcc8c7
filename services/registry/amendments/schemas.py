"""Amendments as clients post them and as the registry answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from shared.validation import documented

EXAMPLE_AMENDMENT: dict[str, Any] = {
    "changes": {"manufacturing_site": "Ochang plant 2, KR", "carbon_footprint_kg_co2e_per_kwh": 58.2},
    "reason": "The site and the footprint were entered from the wrong plant's declaration.",
}


class AmendmentIn(BaseModel):
    model_config = documented(EXAMPLE_AMENDMENT, extra="forbid")
    changes: dict[str, Any] = Field(
        description="The facts to change and their new values, typed as at registration. Amendable: "
        "manufactured_at, manufacturing_site, materials_kg, recycled_content_pct, carbon_footprint_kg_co2e_per_kwh "
        "(a material or share object replaces the whole object).",
        min_length=1,
        max_length=8,
    )
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="Why the facts change (kept with the record, shown in the history)."
    )


class Change(BaseModel):
    before: Any
    after: Any


class AmendmentOut(BaseModel):
    id: str
    battery_id: str
    number: int = Field(description="1, 2, ... per battery: the order the battery's amendments apply in.")
    changes: dict[str, Change]
    reason: str
    actor: str
    actor_role: str
    amended_at: datetime


class AmendmentList(BaseModel):
    items: list[AmendmentOut]
