"""The columns of the published records that more than one service keeps a table of: where they are written
(the registry's participants and battery models, the events service's ledger) and where they are read (the
portal's mirrors of them). Each service declares its own table from these, with its own keys, constraints and
extra columns (such as when a row was made)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.db import TZ


class ParticipantFields(SQLModel):
    id: str = Field(primary_key=True, sa_type=Text)
    name: str = Field(sa_type=Text)
    role: str = Field(sa_type=Text)
    ministry: str | None = Field(default=None, sa_type=Text)
    region: str | None = Field(default=None, sa_type=Text)


class BatteryModelFields(SQLModel):
    """The rated facts every battery of a model shares."""

    id: str = Field(primary_key=True, sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    chemistry: str = Field(sa_type=Text)
    rated_capacity_ah: float
    nominal_voltage_v: float
    rated_energy_kwh: float
    mass_kg: float


class LedgerRecordFields(SQLModel):
    """A ledger record as published (`LEDGER_FIELDS` of the contract)."""

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
