"""The ingest domain's dedupe table (schema `portal`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import PrimaryKeyConstraint, Text, func
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class AppliedEvent(Base, table=True):
    """One row per message applied: (stream, key). The key is a lifecycle event's `battery/sequence` (event IDs
    are unique per poster only) and a registry message's ID. The registry reuses a battery's MANUFACTURED event
    ID for its registration message, so the stream is part of the key."""

    __tablename__ = "applied_events"
    __table_args__ = (PrimaryKeyConstraint("stream", "event_id", name="pk_applied_events"), {"schema": SCHEMA})

    stream: str = Field(sa_type=Text)
    event_id: str = Field(sa_type=Text)
    applied_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
