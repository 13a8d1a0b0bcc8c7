"""EPCIS event hash: `events.epcis_events.event_hash` holds each captured event's CBV 2.0 event hash
(`ni:///sha-256;...?ver=CBV2.0`), indexed per capturer, so an event sent again (with or without an eventID)
is recognised by its content. Rows captured before have none (NULL): they are recognised by eventID only.

Revision ID: a0a815967623
Revises: 453b307fd724
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "a0a815967623"
down_revision: str | None = "453b307fd724"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("epcis_events", sa.Column("event_hash", sa.Text(), nullable=True), schema="events")
    op.create_index("ix_epcis_events_actor_hash", "epcis_events", ["actor", "event_hash"], schema="events")


def downgrade() -> None:
    op.drop_index("ix_epcis_events_actor_hash", table_name="epcis_events", schema="events")
    op.drop_column("epcis_events", "event_hash", schema="events")
