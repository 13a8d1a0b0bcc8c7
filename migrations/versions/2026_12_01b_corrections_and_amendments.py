"""Corrections that correct and registry amendments (issue 13, item 4).

- registry.amendments: every change of a battery's registry facts, as a record (who, when, why, before, after);
  the battery's row stays as registered, the current value of a fact is its latest amendment. Numbered per
  battery (1, 2, ...), append-only.
- portal.amendments: the portal's copy, from `battery.registry.v1` (history and passport show them).
- portal.events.declared_by: the sequence of the ERROR_DECLARED that declared the event in error (null: in effect).

Revision ID: 409febe5a9a3
Revises: 008247d08971
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "409febe5a9a3"
down_revision: str | None = "008247d08971"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "amendments",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("amended_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["battery_id"], ["registry.batteries.id"], name=op.f("fk_amendments_battery_id_batteries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amendments")),
        sa.UniqueConstraint("battery_id", "number", name="uq_amendments_battery_number"),
        schema="registry",
    )
    op.execute(
        """
        CREATE FUNCTION registry.amendments_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'registry.amendments is append-only (% refused)', TG_OP;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER amendments_append_only BEFORE UPDATE OR DELETE ON registry.amendments "
        "FOR EACH ROW EXECUTE FUNCTION registry.amendments_append_only()"
    )
    op.create_table(
        "amendments",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("actor_role", sa.Text(), nullable=False),
        sa.Column("amended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amendments")),
        schema="portal",
    )
    op.create_index("ix_amendments_battery", "amendments", ["battery_id", "number"], schema="portal")
    op.add_column("events", sa.Column("declared_by", sa.Integer(), nullable=True), schema="portal")


def downgrade() -> None:
    op.drop_column("events", "declared_by", schema="portal")
    op.drop_index("ix_amendments_battery", table_name="amendments", schema="portal")
    op.drop_table("amendments", schema="portal")
    op.execute("DROP TRIGGER IF EXISTS amendments_append_only ON registry.amendments")
    op.execute("DROP FUNCTION IF EXISTS registry.amendments_append_only()")
    op.drop_table("amendments", schema="registry")
