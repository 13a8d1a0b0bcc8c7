"""The current state of each battery (schema `events`): the head of its ledger, kept in step with it in
the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base


class BatteryState(Base, table=True):
    __tablename__ = "battery_state"
    __table_args__ = (Index("ix_battery_state_parent", "parent_id"), {"schema": SCHEMA})

    battery_id: str = Field(primary_key=True, sa_type=Text)
    kind: str = Field(sa_type=Text)
    model_id: str = Field(sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    state: str = Field(sa_type=Text)
    custodian: str = Field(sa_type=Text)
    sequence: int
    last_hash: str = Field(sa_type=Text)
    last_event_at: datetime = Field(sa_type=TZ)
    grade: str | None = Field(default=None, sa_type=Text)
    safety_inspection: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    parent_id: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
