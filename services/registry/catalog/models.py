"""The battery models table (schema `registry`): the rated facts every battery of a model shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Text, func
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base


class BatteryModel(Base, table=True):
    __tablename__ = "battery_models"
    __table_args__ = (CheckConstraint("kind IN ('cell','module','pack')", name="kind"), {"schema": SCHEMA})

    id: str = Field(primary_key=True, sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    chemistry: str = Field(sa_type=Text)
    rated_capacity_ah: float
    nominal_voltage_v: float
    rated_energy_kwh: float
    mass_kg: float
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
