"""What capture writes (schema `events`): the append-only, hash-chained ledger (never updated or deleted; triggers
in the migrations refuse UPDATE, DELETE and TRUNCATE), and the current state of each battery, the head of its
ledger, kept in step with it in the same transaction. The ledger domain reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, PrimaryKeyConstraint, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base
from shared.records import LedgerRecordFields


class BatteryState(Base, table=True):
    __tablename__ = "battery_state"
    __table_args__ = (Index("ix_battery_state_parent", "parent_id"), {"schema": SCHEMA})

    battery_id: str = Field(primary_key=True, sa_type=Text)
    kind: str = Field(sa_type=Text)
    model_id: str = Field(sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    state: str = Field(sa_type=Text)
    custodian: str = Field(sa_type=Text)
    sequence: int
    last_hash: str = Field(sa_type=Text)
    last_event_at: datetime = Field(sa_type=TZ)
    grade: str | None = Field(default=None, sa_type=Text)
    safety_inspection: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    parent_id: str | None = Field(default=None, sa_type=Text)
    consignee: str | None = Field(default=None, sa_type=Text)
    pre_removal_grade: str | None = Field(default=None, sa_type=Text)
    #: The registry's facts the plausibility rules compare with (material content, mass, rated energy).
    facts: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": text("'{}'::jsonb")}
    )
    #: The last SoH and cycle count, each with the event that gave it.
    readings: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    updated_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class LedgerEntry(LedgerRecordFields, Base, table=True):
    __tablename__ = "ledger"
    __table_args__ = (
        PrimaryKeyConstraint("battery_id", "sequence"),
        # An event ID is unique per poster (DOMAIN: one participant's IDs never block another's). The registry's
        # MANUFACTURED rows (their IDs made by the server from the battery ID) are outside it: a client that
        # claims one never blocks a battery's registration (sequence 1 of its ledger is unique anyway).
        Index(
            "uq_ledger_actor_event_id",
            "actor",
            "event_id",
            unique=True,
            postgresql_where=text("type <> 'MANUFACTURED'"),
        ),
        Index("ix_ledger_recorded_at", "recorded_at"),
        {"schema": SCHEMA},
    )

    event_id: str = Field(sa_type=UUID(as_uuid=False))  # checked a UUID where it is written
    request_digest: str = Field(sa_type=Text)
