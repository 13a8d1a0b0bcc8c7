"""The participants table (schema `registry`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, func
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base
from shared.records import ParticipantFields


class Participant(ParticipantFields, Base, table=True):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_role", "role", "id"), {"schema": SCHEMA})

    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
