"""EPCIS named queries and subscriptions: `portal.epcis_queries` (per owner), `portal.epcis_subscriptions` (webhook
subscriptions with their delivery watermark), and `portal.epcis_events.seq`, the EPCIS view's arrival order the
watermark is kept on. The two new tables are kept by `portal rebuild` (no TRUNCATE for bt_portal).

Revision ID: 5d7e9f1a3b6c
Revises: a0a815967623
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5d7e9f1a3b6c"
down_revision: str | None = "a0a815967623"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "epcis_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        schema="portal",
    )
    op.create_index("ix_epcis_events_seq", "epcis_events", ["seq"], unique=True, schema="portal")
    op.create_table(
        "epcis_queries",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("query", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("owner", "name", name=op.f("pk_epcis_queries")),
        schema="portal",
    )
    op.create_table(
        "epcis_subscriptions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("owner_role", sa.Text(), nullable=False),
        sa.Column("owner_ministry", sa.Text(), nullable=True),
        sa.Column("query_name", sa.Text(), nullable=False),
        sa.Column("dest", sa.Text(), nullable=False),
        sa.Column("signature_token", sa.Text(), nullable=True),
        sa.Column("report_if_empty", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("schedule", postgresql.JSONB(), nullable=True),
        sa.Column("initial_record_time", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_notified_at", TZ, nullable=True),
        sa.Column("after_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_record_time", TZ, nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column("next_run_at", TZ, nullable=True),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["owner", "query_name"],
            ["portal.epcis_queries.owner", "portal.epcis_queries.name"],
            name=op.f("fk_epcis_subscriptions_owner_epcis_queries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_epcis_subscriptions")),
        schema="portal",
    )
    op.create_index("ix_epcis_subscriptions_query", "epcis_subscriptions", ["owner", "query_name"], schema="portal")
    op.create_index("ix_epcis_subscriptions_due", "epcis_subscriptions", ["due_at"], schema="portal")
    # Not read models: `portal rebuild` keeps them (services/portal/rebuild.py KEEP).
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bt_portal') THEN "
        "REVOKE TRUNCATE ON portal.epcis_queries, portal.epcis_subscriptions FROM bt_portal; END IF; END $$"
    )


def downgrade() -> None:
    op.drop_index("ix_epcis_subscriptions_due", table_name="epcis_subscriptions", schema="portal")
    op.drop_index("ix_epcis_subscriptions_query", table_name="epcis_subscriptions", schema="portal")
    op.drop_table("epcis_subscriptions", schema="portal")
    op.drop_table("epcis_queries", schema="portal")
    op.drop_index("ix_epcis_events_seq", table_name="epcis_events", schema="portal")
    op.drop_column("epcis_events", "seq", schema="portal")
