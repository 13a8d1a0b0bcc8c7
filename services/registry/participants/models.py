"""The participants table (schema `registry`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text, func
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base


class Participant(Base, table=True):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_role", "role", "id"), {"schema": SCHEMA})

    id: str = Field(primary_key=True, sa_type=Text)
    name: str = Field(sa_type=Text)
    role: str = Field(sa_type=Text)
    ministry: str | None = Field(default=None, sa_type=Text)
    region: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
