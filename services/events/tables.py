"""The events service's tables (schema `events`): the per-battery state, the append-only ledger, the outbox."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import metadata as make_metadata
from shared.outbox import outbox_table, stream_positions_table

SCHEMA = "events"
metadata = make_metadata(SCHEMA)

#: The current state of each battery: the head of its ledger, kept in step in the same transaction.
battery_state = Table(
    "battery_state",
    metadata,
    Column("battery_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("model_id", Text, nullable=False),
    Column("manufacturer", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("custodian", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("last_hash", Text, nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    Column("grade", Text),
    Column("safety_inspection", JSONB),
    Column("parent_id", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_battery_state_parent", "parent_id"),
)

#: Append-only, hash-chained. Never updated or deleted (a trigger in the migration enforces it).
ledger = Table(
    "ledger",
    metadata,
    Column("battery_id", Text, primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("event_id", UUID(as_uuid=False), nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("location", JSONB, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("state_after", Text, nullable=False),
    Column("custodian_after", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("request_digest", Text, nullable=False),
    UniqueConstraint("event_id", name="uq_ledger_event_id"),
    Index("ix_ledger_recorded_at", "recorded_at"),
)

outbox = outbox_table(metadata)

stream_positions = stream_positions_table(metadata)
