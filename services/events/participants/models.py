"""The events service's projection of the registry's participants (schema `events`), from battery.registry.v1:
what the token check and the receiver check of TRANSFERRED read (shared.participants.TableDirectory)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, func
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base


class Participant(Base, table=True):
    __tablename__ = "participants"
    __table_args__ = {"schema": SCHEMA}

    id: str = Field(primary_key=True, sa_type=Text)
    role: str = Field(sa_type=Text)
    ministry: str | None = Field(default=None, sa_type=Text)
    #: active | suspended, as the registry last published it.
    status: str = Field(default="active", sa_type=Text, sa_column_kwargs={"server_default": "active"})
    updated_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
