"""Named EPCIS queries and their subscriptions (schema `portal`). A named query belongs to the participant that
made it; a webhook subscription keeps its delivery progress (a watermark on the EPCIS view's arrival order, with
the recordTime and eventID of the last event delivered) so delivery resumes where it stopped after a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKeyConstraint, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class NamedQuery(Base, table=True):
    __tablename__ = "epcis_queries"
    __table_args__ = {"schema": SCHEMA}

    owner: str = Field(primary_key=True, sa_type=Text)  # the participant (org) that made it
    name: str = Field(primary_key=True, sa_type=Text)
    #: SimpleEventQuery parameters as sent (name → list of values), parsed again at each use.
    query: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = Field(sa_type=TZ)


class Subscription(Base, table=True):
    """A webhook subscription: `stream` (deliver as events arrive) or a `schedule` (GS1 cron-like fields,
    `next_run_at` the next time it is due). `after_seq`: the arrival order (`portal.epcis_events.seq`) of the
    last event delivered and acknowledged; `due_at`: when the dispatcher next looks at it (retries back off)."""

    __tablename__ = "epcis_subscriptions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["owner", "query_name"],
            [f"{SCHEMA}.epcis_queries.owner", f"{SCHEMA}.epcis_queries.name"],
            ondelete="CASCADE",
        ),
        Index("ix_epcis_subscriptions_query", "owner", "query_name"),
        Index("ix_epcis_subscriptions_due", "due_at"),
        {"schema": SCHEMA},
    )

    id: str = Field(primary_key=True, sa_type=Text)
    owner: str = Field(sa_type=Text)
    owner_role: str = Field(sa_type=Text)  # whose read rights every delivery is filtered by (with owner_ministry)
    owner_ministry: str | None = Field(default=None, sa_type=Text)
    query_name: str = Field(sa_type=Text)
    dest: str = Field(sa_type=Text)
    signature_token: str | None = Field(default=None, sa_type=Text)
    report_if_empty: bool = Field(default=False, sa_type=Boolean)
    stream: bool = Field(default=False, sa_type=Boolean)
    schedule: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    initial_record_time: datetime | None = Field(default=None, sa_type=TZ)
    created_at: datetime = Field(sa_type=TZ)
    last_notified_at: datetime | None = Field(default=None, sa_type=TZ)
    after_seq: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": text("0")})
    last_record_time: datetime | None = Field(default=None, sa_type=TZ)
    last_event_id: str | None = Field(default=None, sa_type=Text)
    next_run_at: datetime | None = Field(default=None, sa_type=TZ)
    due_at: datetime = Field(sa_type=TZ)
    attempts: int = Field(default=0, sa_type=Integer, sa_column_kwargs={"server_default": text("0")})
    last_error: str | None = Field(default=None, sa_type=Text)
    lease_until: datetime | None = Field(default=None, sa_type=TZ)
