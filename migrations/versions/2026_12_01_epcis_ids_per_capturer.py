"""EPCIS eventIDs belong to their capturer: `events.epcis_events` is keyed by (actor, event_id) and the portal's
view by (source, actor, event_id), so one participant's eventID never blocks, replaces or shadows another's
event or a ledger-made one; an index on event_id keeps look-ups by eventID alone exact.
portal.aliases: an index on a GS1 Digital Link's canonical key (`<GTIN-14>/<serial>`), so the public resolver
finds a scanned link by an exact key instead of a leading-wildcard LIKE over every alias.

Revision ID: a2c4e6f8b0d1
Revises: a7c9e1b3d5f0
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

#: As services/portal/models.py's DIGITAL_LINK_KEY (a migration keeps its own copy).
DIGITAL_LINK_KEY = (  # as PostgreSQL writes it back (the models-match-migrations check compares the text)
    """((lpad("substring"(value, '/01/([0-9]{8,14})/21/'::text), 14, '0'::text) || '/'::text) """
    """|| "substring"(value, '/01/[0-9]{8,14}/21/([^/?#]+)'::text))"""
)

revision: str = "a2c4e6f8b0d1"
down_revision: str | None = "a7c9e1b3d5f0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="events", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["actor", "event_id"], schema="events")
    op.create_index("ix_epcis_events_event_id", "epcis_events", ["event_id"], schema="events")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="portal", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["source", "actor", "event_id"], schema="portal")
    op.create_index("ix_epcis_events_event_id", "epcis_events", ["event_id"], schema="portal")
    op.create_index(
        "ix_aliases_digital_link_key",
        "aliases",
        [sa.text(DIGITAL_LINK_KEY)],
        schema="portal",
        postgresql_where=sa.text("scheme = 'gs1_digital_link'"),
    )


def downgrade() -> None:
    op.drop_index("ix_aliases_digital_link_key", table_name="aliases", schema="portal")
    op.drop_index("ix_epcis_events_event_id", table_name="epcis_events", schema="portal")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="portal", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["event_id"], schema="portal")
    op.drop_index("ix_epcis_events_event_id", table_name="epcis_events", schema="events")
    op.drop_constraint("pk_epcis_events", "epcis_events", schema="events", type_="primary")
    op.create_primary_key("pk_epcis_events", "epcis_events", ["event_id"], schema="events")
