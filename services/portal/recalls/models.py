"""The portal's copy of the recall campaigns (schema `portal`), from `battery.registry.v1`."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import Base


class RecallCampaign(Base, table=True):
    __tablename__ = "recall_campaigns"
    __table_args__ = (Index("ix_recall_campaigns_maker", "maker"), {"schema": SCHEMA})

    id: str = Field(primary_key=True, sa_type=Text)
    maker: str = Field(sa_type=Text)
    opened_on: date
    campaign: dict[str, Any] = Field(sa_type=JSONB)
