"""events and portal: custody by consent, event IDs per poster

- events.battery_state.consignee: the participant the custodian's REMOVED consigned the battery to (it may
  post COLLECTED and so take custody); null when there is none.
- events.ledger: an event ID is unique per poster, (actor, event_id), not globally; the registry's MANUFACTURED
  rows are outside that index (the server makes their IDs from the battery ID, so a client claiming one must
  never block a registration).
- portal.events: no uniqueness on event_id (two posters may use one); the key is (battery_id, sequence).

Revision ID: c0d5e9a1b3f7
Revises: f1a3c5e7b9d2
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0d5e9a1b3f7"
down_revision: str | None = "f1a3c5e7b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("battery_state", sa.Column("consignee", sa.Text(), nullable=True), schema="events")
    op.drop_constraint("uq_ledger_event_id", "ledger", schema="events", type_="unique")
    op.create_index(
        "uq_ledger_actor_event_id",
        "ledger",
        ["actor", "event_id"],
        unique=True,
        schema="events",
        postgresql_where=sa.text("type <> 'MANUFACTURED'"),
    )
    op.drop_constraint("uq_events_event_id", "events", schema="portal", type_="unique")
    op.create_index("ix_events_event_id", "events", ["event_id"], schema="portal")


def downgrade() -> None:
    # Fails (as it should) once two posters share an event ID: the old global uniqueness no longer holds.
    op.drop_index("ix_events_event_id", "events", schema="portal")
    op.create_unique_constraint("uq_events_event_id", "events", ["event_id"], schema="portal")
    op.drop_index("uq_ledger_actor_event_id", "ledger", schema="events")
    op.create_unique_constraint("uq_ledger_event_id", "ledger", ["event_id"], schema="events")
    op.drop_column("battery_state", "consignee", schema="events")
