"""Every life's passport by its own ID (schema `portal`): a read model the ingest keeps, so any passport,
an earlier life's included, is found by an exact look-up on its key."""

from __future__ import annotations

from sqlalchemy import Text
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import Base


class PassportLife(Base, table=True):
    __tablename__ = "passports"
    __table_args__ = {"schema": SCHEMA}

    passport_id: str = Field(primary_key=True, sa_type=Text)
    battery_id: str = Field(sa_type=Text)
    life: int
