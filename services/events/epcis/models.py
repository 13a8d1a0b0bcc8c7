"""The EPCIS domain's tables (schema `events`): capture jobs and the EPCIS events as captured."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base

_EMPTY_LIST = {"server_default": text("'[]'::jsonb")}


class EpcisCapture(Base, table=True):
    """One row per POST /epcis/capture: its outcome and per-event errors."""

    __tablename__ = "epcis_captures"
    __table_args__ = {"schema": SCHEMA}

    capture_id: str = Field(primary_key=True, sa_type=UUID(as_uuid=False))
    actor: str = Field(sa_type=Text)
    actor_role: str = Field(sa_type=Text)
    behaviour: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=TZ)
    finished_at: datetime | None = Field(default=None, sa_type=TZ)
    event_count: int
    stored_count: int
    errors: list[Any] = Field(sa_type=JSONB, sa_column_kwargs=_EMPTY_LIST)


class EpcisEvent(Base, table=True):
    """Every EPCIS event captured, battery or not, as sent (plus eventID and recordTime), keyed by its capturer
    and eventID. `ledger_events`
    names the lifecycle events it made ({event_id, battery_id}); empty for plain EPCIS events."""

    __tablename__ = "epcis_events"
    __table_args__ = (
        Index("ix_epcis_events_record_time", "record_time"),
        Index("ix_epcis_events_event_id", "event_id"),
        Index("ix_epcis_events_actor_hash", "actor", "event_hash"),
        {"schema": SCHEMA},
    )

    actor: str = Field(primary_key=True, sa_type=Text)  # the capturer: eventIDs are unique per capturer
    event_id: str = Field(primary_key=True, sa_type=Text)
    capture_id: str = Field(sa_type=UUID(as_uuid=False))
    type: str = Field(sa_type=Text)
    event_time: datetime = Field(sa_type=TZ)
    record_time: datetime = Field(sa_type=TZ)
    digest: str = Field(sa_type=Text)
    #: The CBV 2.0 event hash of its content (None for events captured before it was kept).
    event_hash: str | None = Field(default=None, sa_type=Text)
    battery_ids: list[str] = Field(sa_type=JSONB, sa_column_kwargs=_EMPTY_LIST)
    ledger_events: list[dict[str, Any]] = Field(sa_type=JSONB, sa_column_kwargs=_EMPTY_LIST)
    error_declaration: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    body: dict[str, Any] = Field(sa_type=JSONB)
