"""The battery models table (schema `registry`): the rated facts every battery of a model shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base
from shared.records import BatteryModelFields


class BatteryModel(BatteryModelFields, Base, table=True):
    __tablename__ = "battery_models"
    __table_args__ = (CheckConstraint("kind IN ('cell','module','pack')", name="kind"), {"schema": SCHEMA})

    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
    #: The manufacturer's passport declaration for every battery of the model (catalog/passport.py).
    passport: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
