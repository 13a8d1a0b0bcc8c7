"""EPCIS eventIDs belong to their capturer: `events.epcis_events` is keyed by (actor, event_id) and the portal's
view by (source, actor, event_id), so one participant's eventID never blocks, replaces or shadows another's
event or a ledger-made one; an index on event_id keeps look-ups by eventID alone exact.

Revision ID: a2c4e6f8b0d1
Revises: f1a3c5e7b9d2
"""

from __future__ import annotations

from alembic import op

revision: str = "a2c4e6f8b0d1"
down_revision: str | None = "f1a3c5e7b9d2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="events", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["actor", "event_id"], schema="events")
    op.create_index("ix_epcis_events_event_id", "epcis_events", ["event_id"], schema="events")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="portal", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["source", "actor", "event_id"], schema="portal")
    op.create_index("ix_epcis_events_event_id", "epcis_events", ["event_id"], schema="portal")


def downgrade() -> None:
    op.drop_index("ix_epcis_events_event_id", table_name="epcis_events", schema="portal")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="portal", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["event_id"], schema="portal")
    op.drop_index("ix_epcis_events_event_id", table_name="epcis_events", schema="events")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="events", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["event_id"], schema="events")
