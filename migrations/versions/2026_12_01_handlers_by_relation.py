"""portal: `handlers` holds only relations the ledger proves (issue 12): the manufacturer, every custodian,
every consignee an event names. Rows that only record a poster (an INCIDENT or INSPECTED) are removed;
downgrade puts every poster back, as the old ingest wrote them.

Revision ID: 9c1e3a5b7d2f
Revises: c0d5e9a1b3f7
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9c1e3a5b7d2f"
down_revision: str | None = "c0d5e9a1b3f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM portal.handlers h "
        "WHERE NOT EXISTS (SELECT 1 FROM portal.batteries b WHERE b.id = h.battery_id AND b.manufacturer = h.org) "
        "AND NOT EXISTS (SELECT 1 FROM portal.events e WHERE e.battery_id = h.battery_id "
        "AND (e.custodian_after = h.org OR e.data->>'consignee' = h.org))"
    )


def downgrade() -> None:
    op.execute(
        "INSERT INTO portal.handlers (org, battery_id) SELECT DISTINCT actor, battery_id FROM portal.events ON CONFLICT DO NOTHING"
    )
