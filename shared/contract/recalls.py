"""Recall campaigns: the message the registry publishes (`RECALL_REGISTERED` on `battery.registry.v1`) and
the one rule of which batteries a campaign covers, shared by the events service (REMOVED with reason
`recall` names a campaign that covers the battery) and the portal (affected batteries, MOLIT's counts).

A campaign covers a battery of its maker whose model it names (all the maker's models if it names none) and,
if it gives ranges, whose serial number lies in a serial range or whose vehicle's VIN (any vehicle it was
installed in) lies in a VIN range. Ranges are inclusive and compared as text of equal length."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

CampaignId = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,39}$", examples=["MOLIT-2026-017"])]


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first: Annotated[str, Field(min_length=1, max_length=64)]
    last: Annotated[str, Field(min_length=1, max_length=64)]

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if len(self.first) != len(self.last) or self.first > self.last:
            raise ValueError("a range's first and last have the same length and first ≤ last")
        return self

    def holds(self, value: str) -> bool:
        return len(value) == len(self.first) and self.first <= value <= self.last


class Campaign(BaseModel):
    """A recall campaign as registered and published (unknown fields ignored by readers)."""

    model_config = ConfigDict(extra="ignore")
    id: CampaignId
    title: Annotated[str, Field(min_length=1, max_length=200)]
    maker: Annotated[str, Field(min_length=1, max_length=64, description="The battery manufacturer concerned.")]
    models: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=200)] = []
    serial_ranges: Annotated[list[Range], Field(max_length=100)] = []
    vin_ranges: Annotated[list[Range], Field(max_length=100)] = []
    opened_on: date


def covers(
    c: Campaign, *, manufacturer: str | None, model_id: str | None, serial: str | None, vins: Iterable[str]
) -> bool:
    """Whether the campaign concerns a battery with these facts (`vins`: the plain VINs of the vehicles it was
    installed in)."""
    if manufacturer != c.maker or (c.models and model_id not in c.models):
        return False
    if not c.serial_ranges and not c.vin_ranges:
        return True
    if serial is not None and any(r.holds(serial) for r in c.serial_ranges):
        return True
    return any(r.holds(v) for v in vins for r in c.vin_ranges)
