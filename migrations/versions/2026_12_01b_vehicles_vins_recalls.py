"""vehicles, VIN pseudonyms and recalls

- events.vins: the plain VIN behind each pseudonym the ledger holds (erasable, PIPA).
- portal.vins: the portal's copy from battery.vins.v1 (a tombstone empties it).
- portal.events ix_events_installed_vin: a vehicle's INSTALLED events by the VIN's pseudonym.

Revision ID: 74de03343a9a
Revises: a2c4e6f8b0d1
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "74de03343a9a"
down_revision: str | None = "a2c4e6f8b0d1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vins",
        sa.Column("pseudonym", sa.Text(), primary_key=True),
        sa.Column("vin", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_by", sa.Text(), nullable=True),
        sa.Column("erasure_reason", sa.Text(), nullable=True),
        schema="events",
    )
    op.create_table(
        "vins",
        sa.Column("pseudonym", sa.Text(), primary_key=True),
        sa.Column("vin", sa.Text(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="portal",
    )
    op.create_index(
        "ix_vins_vin", "vins", ["vin"], unique=True, schema="portal", postgresql_where=sa.text("vin IS NOT NULL")
    )
    op.create_index(
        "ix_events_installed_vin",
        "events",
        [sa.text("(data ->> 'vin')")],
        schema="portal",
        postgresql_where=sa.text("type = 'INSTALLED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_installed_vin", table_name="events", schema="portal")
    op.drop_index("ix_vins_vin", table_name="vins", schema="portal")
    op.drop_table("vins", schema="portal")
    op.drop_table("vins", schema="events")
