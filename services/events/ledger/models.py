"""The ledger (schema `events`): append-only and hash-chained, one row per lifecycle event. Never updated
or deleted (a trigger in the migration refuses both)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base


class LedgerEntry(Base, table=True):
    __tablename__ = "ledger"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_ledger_event_id"),
        Index("ix_ledger_recorded_at", "recorded_at"),
        {"schema": SCHEMA},
    )

    battery_id: str = Field(primary_key=True, sa_type=Text)
    sequence: int = Field(primary_key=True)
    event_id: str = Field(sa_type=UUID(as_uuid=False))
    type: str = Field(sa_type=Text)
    occurred_at: datetime = Field(sa_type=TZ)
    recorded_at: datetime = Field(sa_type=TZ)
    actor: str = Field(sa_type=Text)
    actor_role: str = Field(sa_type=Text)
    location: dict[str, Any] = Field(sa_type=JSONB)
    data: dict[str, Any] = Field(sa_type=JSONB)
    state_after: str = Field(sa_type=Text)
    custodian_after: str = Field(sa_type=Text)
    prev_hash: str = Field(sa_type=Text)
    hash: str = Field(sa_type=Text)
    request_digest: str = Field(sa_type=Text)
