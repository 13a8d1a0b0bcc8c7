"""The participants table (schema `registry`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, Index, Text, func, text
from sqlmodel import Field

from services.registry.models import SCHEMA
from shared.db import TZ, Base
from shared.records import ParticipantFields


class Participant(ParticipantFields, Base, table=True):
    __tablename__ = "participants"
    __table_args__ = (Index("ix_participants_role", "role", "id"), {"schema": SCHEMA})

    #: 사업자등록번호, ten digits, check digit verified (shared.participants.valid_business_number).
    business_number: str | None = Field(default=None, sa_type=Text)
    #: The GS1 company prefixes the participant owns (manufacturers): its Digital Link and EPC aliases lie under them.
    gs1_company_prefixes: list[str] = Field(
        default_factory=list, sa_type=ARRAY(Text), sa_column_kwargs={"server_default": text("'{}'::text[]")}
    )
    #: active | suspended (shared.participants.ParticipantStatus): a suspended participant's tokens stop working.
    status: str = Field(default="active", sa_type=Text, sa_column_kwargs={"server_default": "active"})
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
