"""The plain VINs behind the ledger's pseudonyms (schema `events`): the one erasable place a VIN is kept.

The ledger, its hashes, the transparency log and the lifecycle topic hold only a VIN's keyed pseudonym
(`shared.vin.pseudonym`); this table maps a pseudonym back to its VIN until an admin erases it (PIPA). An
erased row keeps the pseudonym and the erasure's who, when and why, and loses the VIN."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, func
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base


class Vin(Base, table=True):
    __tablename__ = "vins"
    __table_args__ = {"schema": SCHEMA}

    pseudonym: str = Field(primary_key=True, sa_type=Text)
    #: The plain VIN; null once erased.
    vin: str | None = Field(default=None, sa_type=Text)
    recorded_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
    erased_at: datetime | None = Field(default=None, sa_type=TZ)
    erased_by: str | None = Field(default=None, sa_type=Text)
    erasure_reason: str | None = Field(default=None, sa_type=Text)
