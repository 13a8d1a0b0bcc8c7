"""portal.epcis_events: the GIN index over `ledger_event_ids` without a pending list (`fastupdate = off`), and
the partial one over captured rows dropped.

Projecting a captured document looks each of its ledger event IDs up in this index, one search per ID. With a
pending list every search also reads the whole list, which thousands of fresh rows keep long (seconds per
1,000-event document). The partial index over `source = 'epcis'` rows served a probe that named the source:
with statistics taken before any document was captured, the planner read every captured row for every ID
instead (tens of seconds per document); the probe now searches the whole index and filters the source itself.

Revision ID: b68aabc61b46
Revises: 5d7e9f1a3b6c
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "b68aabc61b46"
down_revision: str | None = "5d7e9f1a3b6c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX portal.ix_epcis_events_ledger_event_ids SET (fastupdate = off)")
    # Entries already pending stay searched until merged: merge them now.
    op.execute("SELECT gin_clean_pending_list('portal.ix_epcis_events_ledger_event_ids'::regclass)")
    op.drop_index("ix_epcis_events_captured_ledger_ids", table_name="epcis_events", schema="portal")


def downgrade() -> None:
    op.create_index(
        "ix_epcis_events_captured_ledger_ids",
        "epcis_events",
        ["ledger_event_ids"],
        schema="portal",
        postgresql_using="gin",
        postgresql_where=sa.text("source = 'epcis'"),
    )
    op.execute("ALTER INDEX portal.ix_epcis_events_ledger_event_ids RESET (fastupdate)")
