"""The ingest domain's dedupe table (schema `portal`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import PrimaryKeyConstraint, Text, func
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class AppliedEvent(Base, table=True):
    """One row per registry message applied: (stream, its ID). The registry reuses a battery's MANUFACTURED event
    ID for its registration message, so the stream is part of the key. Lifecycle events are not claimed here:
    `events`' primary key (battery, sequence) dedupes them (ingest/service.py), which saved a row and an index
    entry per event. Rows of stream 'lifecycle' written before that are kept and never read again."""

    __tablename__ = "applied_events"
    __table_args__ = (PrimaryKeyConstraint("stream", "event_id", name="pk_applied_events"), {"schema": SCHEMA})

    stream: str = Field(sa_type=Text)
    event_id: str = Field(sa_type=Text)
    applied_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
