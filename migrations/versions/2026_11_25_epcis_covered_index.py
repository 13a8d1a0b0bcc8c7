"""portal.epcis_events: a partial GIN index over the ledger events that captured EPCIS events stand for

The portal asks, for each batch of ledger events it projects, "does a captured document already stand
for any of these?". Only source = 'epcis' rows can answer yes; the full GIN index holds every ledger row
too and its pending list grew with them (measured: 7 ms of database time per event at 70,000 events).

Revision ID: e7a9c1d3f5b8
Revises: d6f8b0c2e4a7
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7a9c1d3f5b8"
down_revision: str | None = "d6f8b0c2e4a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_epcis_events_captured_ledger_ids",
        "epcis_events",
        ["ledger_event_ids"],
        schema="portal",
        postgresql_using="gin",
        postgresql_where=sa.text("source = 'epcis'"),
    )


def downgrade() -> None:
    op.drop_index("ix_epcis_events_captured_ledger_ids", table_name="epcis_events", schema="portal")
