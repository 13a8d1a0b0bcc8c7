"""Amendments of registry facts (schema `registry`): append-only records, numbered per battery. The battery's own
row stays as registered; a fact's current value is its latest amendment (`service.current`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base


class Amendment(Base, table=True):
    __tablename__ = "amendments"
    __table_args__ = (UniqueConstraint("battery_id", "number", name="uq_amendments_battery_number"), {"schema": SCHEMA})

    id: str = Field(primary_key=True, sa_type=UUID(as_uuid=False))
    battery_id: str = Field(sa_type=Text, foreign_key=f"{SCHEMA}.batteries.id")
    number: int = Field(sa_type=Integer)  # 1, 2, ... per battery: the order amendments apply in
    changes: dict[str, Any] = Field(sa_type=JSONB)  # {field: {"before": value, "after": value}}
    reason: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)
    actor_role: str = Field(sa_type=Text)
    amended_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
