"""Recall campaigns (schema `registry`), registered by MOLIT or an admin."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base


class RecallCampaign(Base, table=True):
    __tablename__ = "recall_campaigns"
    __table_args__ = {"schema": SCHEMA}

    id: str = Field(primary_key=True, sa_type=Text)
    title: str = Field(sa_type=Text)
    maker: str = Field(sa_type=Text)
    models: list[Any] = Field(sa_type=JSONB)
    serial_ranges: list[Any] = Field(sa_type=JSONB)
    vin_ranges: list[Any] = Field(sa_type=JSONB)
    opened_on: date
    registered_by: str = Field(sa_type=Text)
    registered_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
