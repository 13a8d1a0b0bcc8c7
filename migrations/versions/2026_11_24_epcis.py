"""epcis: capture jobs and captured EPCIS events (events); the EPCIS query read model (portal)

Revision ID: c5e7a9b1d3f6
Revises: b8d3e1f0a2c4
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "c5e7a9b1d3f6"
down_revision: str | None = "b8d3e1f0a2c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "epcis_captures",
        sa.Column("capture_id", UUID(as_uuid=False), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("behaviour", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("stored_count", sa.Integer(), nullable=False),
        sa.Column("errors", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.PrimaryKeyConstraint("capture_id", name=op.f("pk_epcis_captures")),
        schema="events",
    )
    op.create_table(
        "epcis_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("capture_id", UUID(as_uuid=False), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event_time", TS, nullable=False),
        sa.Column("record_time", TS, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("battery_ids", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("ledger_events", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("error_declaration", JSONB()),
        sa.Column("body", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_epcis_events")),
        schema="events",
    )
    op.create_index("ix_epcis_events_record_time", "epcis_events", ["record_time"], schema="events")

    op.create_table(
        "epcis_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("event_time", TS, nullable=False),
        sa.Column("record_time", TS, nullable=False),
        sa.Column("biz_step", sa.Text()),
        sa.Column("disposition", sa.Text()),
        sa.Column("read_point", sa.Text()),
        sa.Column("biz_location", sa.Text()),
        sa.Column("epcs", ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("parent_id", sa.Text()),
        sa.Column("battery_ids", ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("ledger_event_ids", ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("context", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("error_declaration", JSONB()),
        sa.Column("body", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_epcis_events")),
        schema="portal",
    )
    op.create_index("ix_epcis_events_record", "epcis_events", ["record_time", "event_id"], schema="portal")
    op.create_index("ix_epcis_events_event_time", "epcis_events", ["event_time"], schema="portal")
    op.create_index("ix_epcis_events_biz_step", "epcis_events", ["biz_step"], schema="portal")
    for column in ("epcs", "battery_ids", "ledger_event_ids"):
        op.create_index(f"ix_epcis_events_{column}", "epcis_events", [column], schema="portal", postgresql_using="gin")
    op.create_table(
        "epcis_declarations",
        sa.Column("declared_event_id", sa.Text(), nullable=False),
        sa.Column("declaration", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("declared_event_id", name=op.f("pk_epcis_declarations")),
        schema="portal",
    )


def downgrade() -> None:
    op.drop_table("epcis_declarations", schema="portal")
    op.drop_table("epcis_events", schema="portal")
    op.drop_table("epcis_events", schema="events")
    op.drop_table("epcis_captures", schema="events")
