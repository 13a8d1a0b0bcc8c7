"""The portal's EPCIS query model (schema `portal`): every EPCIS event, captured or made from the ledger,
and the error declarations of ledger events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, Index, PrimaryKeyConstraint, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


def _text_array() -> Any:
    return Field(sa_type=ARRAY(Text), sa_column_kwargs={"server_default": text("'{}'")})


class EpcisEvent(Base, table=True):
    """`source` is 'epcis' for a captured document, 'ledger' for one made from a lifecycle event that no
    captured document stands for. Keyed by (source, actor, event_id): a captured eventID belongs to its
    capturer and never replaces or shadows another participant's event or a ledger-made one."""

    __tablename__ = "epcis_events"
    __table_args__ = (
        # eventID first: the key also finds an eventID's rows (a query by eventID, the ledger-made rows a captured
        # document replaces), which took an index of its own before (migration 2026_12_06b_epcis_events_key_first).
        PrimaryKeyConstraint("event_id", "source", "actor", name="pk_epcis_events"),
        Index("ix_epcis_events_record", "record_time", "event_id"),
        Index("ix_epcis_events_event_time", "event_time"),
        Index("ix_epcis_events_biz_step", "biz_step"),
        Index("ix_epcis_events_seq", "seq", unique=True),
        Index("ix_epcis_events_epcs", "epcs", postgresql_using="gin"),
        # `battery_ids` has no index: the access rule reads it per row (`h.battery_id = ANY(e.battery_ids)`),
        # which no index serves.
        # No pending list: each ledger event ID a captured document stands for is one search (repository.py).
        Index(
            "ix_epcis_events_ledger_event_ids",
            "ledger_event_ids",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        {"schema": SCHEMA},
    )

    source: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)  # the capturer, or the ledger event's poster
    event_id: str = Field(sa_type=Text)
    event_type: str = Field(sa_type=Text)
    event_time: datetime = Field(sa_type=TZ)
    record_time: datetime = Field(sa_type=TZ)
    biz_step: str | None = Field(default=None, sa_type=Text)
    disposition: str | None = Field(default=None, sa_type=Text)
    read_point: str | None = Field(default=None, sa_type=Text)
    biz_location: str | None = Field(default=None, sa_type=Text)
    epcs: list[str] = _text_array()
    parent_id: str | None = Field(default=None, sa_type=Text)
    battery_ids: list[str] = _text_array()
    ledger_event_ids: list[str] = _text_array()
    context: dict[str, Any] = Field(sa_type=JSONB, sa_column_kwargs={"server_default": text("'{}'::jsonb")})
    error_declaration: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    body: dict[str, Any] = Field(sa_type=JSONB)
    #: Order of arrival in this table (projection transactions are serialised by an advisory lock, so it is
    #: also commit order): subscriptions deliver after a watermark on it, never missing a late-arriving
    #: event whose recordTime is older than one already delivered.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=False), nullable=False))


class EpcisDeclaration(Base, table=True):
    """Error declarations of ledger events, by the declared event ID."""

    __tablename__ = "epcis_declarations"
    __table_args__ = {"schema": SCHEMA}

    declared_event_id: str = Field(primary_key=True, sa_type=Text)
    declaration: dict[str, Any] = Field(sa_type=JSONB)
