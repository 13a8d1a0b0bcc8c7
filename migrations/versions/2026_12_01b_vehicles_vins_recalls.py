"""vehicles, VIN pseudonyms and recalls

- events.vins: the plain VIN behind each pseudonym the ledger holds (erasable, PIPA).
- portal.vins: the portal's copy from battery.vins.v1 (a tombstone empties it).
- portal.events ix_events_installed_vin: a vehicle's INSTALLED events by the VIN's pseudonym.
- registry.recall_campaigns (MOLIT registers them); their copies events.recall_campaigns (a REMOVED with
  reason recall names one that covers the battery) and portal.recall_campaigns; events.battery_serials
  (serial ranges of campaigns).

Revision ID: 74de03343a9a
Revises: 409febe5a9a3
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "74de03343a9a"
down_revision: str | None = "409febe5a9a3"
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
    op.create_table(
        "recall_campaigns",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("maker", sa.Text(), nullable=False),
        sa.Column("models", postgresql.JSONB(), nullable=False),
        sa.Column("serial_ranges", postgresql.JSONB(), nullable=False),
        sa.Column("vin_ranges", postgresql.JSONB(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("registered_by", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="registry",
    )
    op.create_table(
        "recall_campaigns",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("campaign", postgresql.JSONB(), nullable=False),
        schema="events",
    )
    op.create_table(
        "battery_serials",
        sa.Column("battery_id", sa.Text(), primary_key=True),
        sa.Column("serial_number", sa.Text(), nullable=False),
        schema="events",
    )
    op.create_table(
        "recall_campaigns",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("maker", sa.Text(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("campaign", postgresql.JSONB(), nullable=False),
        schema="portal",
    )
    op.create_index("ix_recall_campaigns_maker", "recall_campaigns", ["maker"], schema="portal")


def downgrade() -> None:
    op.drop_index("ix_recall_campaigns_maker", table_name="recall_campaigns", schema="portal")
    op.drop_table("recall_campaigns", schema="portal")
    op.drop_table("battery_serials", schema="events")
    op.drop_table("recall_campaigns", schema="events")
    op.drop_table("recall_campaigns", schema="registry")
    op.drop_index("ix_events_installed_vin", table_name="events", schema="portal")
    op.drop_index("ix_vins_vin", table_name="vins", schema="portal")
    op.drop_table("vins", schema="portal")
    op.drop_table("vins", schema="events")
