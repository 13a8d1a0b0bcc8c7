"""The EPCIS domain's tables in schema `events` (Alembic creates them: migrations/versions/2026_11_24_epcis.py)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from services.events.tables import metadata

#: One row per POST /epcis/capture: its outcome and per-event errors.
epcis_captures = Table(
    "epcis_captures",
    metadata,
    Column("capture_id", UUID(as_uuid=False), primary_key=True),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("behaviour", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("event_count", Integer, nullable=False),
    Column("stored_count", Integer, nullable=False),
    Column("errors", JSONB, nullable=False),
)

#: Every EPCIS event captured, battery or not, as sent (plus eventID and recordTime). `ledger_events` names
#: the lifecycle events it made ({event_id, battery_id}); empty for plain EPCIS events.
epcis_events = Table(
    "epcis_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("capture_id", UUID(as_uuid=False), nullable=False),
    Column("type", Text, nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("record_time", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("battery_ids", JSONB, nullable=False),
    Column("ledger_events", JSONB, nullable=False),
    Column("error_declaration", JSONB),
    Column("body", JSONB, nullable=False),
    Index("ix_epcis_events_record_time", "record_time"),
)
