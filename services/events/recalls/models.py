"""What the events service keeps to check a REMOVED with reason `recall` (schema `events`), from
`battery.registry.v1`: the recall campaigns, and each registered battery's serial number (ranges name serials)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import Base


class RecallCampaign(Base, table=True):
    __tablename__ = "recall_campaigns"
    __table_args__ = {"schema": SCHEMA}

    id: str = Field(primary_key=True, sa_type=Text)
    campaign: dict[str, Any] = Field(sa_type=JSONB)


class BatterySerial(Base, table=True):
    __tablename__ = "battery_serials"
    __table_args__ = {"schema": SCHEMA}

    battery_id: str = Field(primary_key=True, sa_type=Text)
    serial_number: str = Field(sa_type=Text)
