"""portal.epcis_events: the primary key puts the eventID first, `(event_id, source, actor)`, and the two indexes
it makes redundant or that nothing used are dropped: `ix_epcis_events_event_id` (the key now finds an eventID's
rows: a query by eventID, the ledger-made rows a captured document replaces, the captured rows a declaration
marks) and the GIN index on `battery_ids` (the access rule reads that column per row, `h.battery_id =
ANY(e.battery_ids)`, which no index serves; no query searched it). An upsert's `ON CONFLICT (source, actor,
event_id)` names the key's columns in any order.

Every lifecycle event adds a row here, so each index was paid per event. Measured on a bare server (300,000
ledger-made rows, then 100 statements of 1,000 as the EPCIS view writes them, backend CPU per row, three runs
each): 49.6 to 52.2 µs before, 36.0 to 40.6 µs after.

Rebuilding the key reads the whole table once (a minute or two per ten million rows on the bench's machine).

Revision ID: 2f8d6b4a9c1e
Revises: 7c3e5a9d2b4f
"""

from __future__ import annotations

from alembic import op

revision: str = "2f8d6b4a9c1e"
down_revision: str | None = "7c3e5a9d2b4f"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE portal.epcis_events DROP CONSTRAINT pk_epcis_events")
    op.execute("ALTER TABLE portal.epcis_events ADD CONSTRAINT pk_epcis_events PRIMARY KEY (event_id, source, actor)")
    op.execute("DROP INDEX portal.ix_epcis_events_event_id")
    op.execute("DROP INDEX portal.ix_epcis_events_battery_ids")


def downgrade() -> None:
    op.execute("CREATE INDEX ix_epcis_events_battery_ids ON portal.epcis_events USING gin (battery_ids)")
    op.execute("CREATE INDEX ix_epcis_events_event_id ON portal.epcis_events (event_id)")
    op.execute("ALTER TABLE portal.epcis_events DROP CONSTRAINT pk_epcis_events")
    op.execute("ALTER TABLE portal.epcis_events ADD CONSTRAINT pk_epcis_events PRIMARY KEY (source, actor, event_id)")
