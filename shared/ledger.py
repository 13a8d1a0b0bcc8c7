"""The columns of a table that holds ledger records as published (`LEDGER_FIELDS` of the contract): the events
service's ledger, where they are written, and the portal's timeline, where they are read. Each service declares
its own table from these, with its own keys and its own extra columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.db import TZ


class LedgerRecordFields(SQLModel):
    battery_id: str = Field(sa_type=Text)
    sequence: int
    event_id: str = Field(sa_type=Text)
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
