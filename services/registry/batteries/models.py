"""The batteries and their aliases (schema `registry`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base


class Battery(Base, table=True):
    __tablename__ = "batteries"
    __table_args__ = (
        Index("ix_batteries_manufacturer", "manufacturer", "id"),
        Index("ix_batteries_kind", "kind", "id"),
        Index("ix_batteries_chemistry", "chemistry", "id"),
        {"schema": SCHEMA},
    )

    id: str = Field(primary_key=True, sa_type=Text)
    model_id: str = Field(sa_type=Text, foreign_key=f"{SCHEMA}.battery_models.id")
    kind: str = Field(sa_type=Text)
    chemistry: str = Field(sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    serial_number: str = Field(sa_type=Text)
    manufactured_at: datetime = Field(sa_type=TZ)
    manufacturing_site: str = Field(sa_type=Text)
    materials_kg: dict[str, Any] = Field(sa_type=JSONB)
    recycled_content_pct: dict[str, Any] = Field(sa_type=JSONB)
    carbon_footprint_kg_co2e_per_kwh: float | None = None
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class Alias(Base, table=True):
    __tablename__ = "aliases"
    __table_args__ = (Index("ix_aliases_battery", "battery_id"), {"schema": SCHEMA})

    value: str = Field(primary_key=True, sa_type=Text)
    scheme: str = Field(sa_type=Text)
    battery_id: str = Field(sa_type=Text, foreign_key=f"{SCHEMA}.batteries.id")
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
