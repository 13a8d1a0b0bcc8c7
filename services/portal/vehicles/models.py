"""The portal's copy of the plain VINs behind the ledger's pseudonyms (schema `portal`), from the compacted
`battery.vins.v1`. An erasure's tombstone empties the VIN and marks the row erased."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text, func, text
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class Vin(Base, table=True):
    __tablename__ = "vins"
    __table_args__ = (
        Index("ix_vins_vin", "vin", unique=True, postgresql_where=text("vin IS NOT NULL")),
        {"schema": SCHEMA},
    )

    pseudonym: str = Field(primary_key=True, sa_type=Text)
    #: The plain VIN; null once erased.
    vin: str | None = Field(default=None, sa_type=Text)
    erased_at: datetime | None = Field(default=None, sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
