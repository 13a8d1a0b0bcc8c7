"""events and portal: pre-removal grades, plausibility facts and readings, KC 10031 certificates

- events.battery_state.pre_removal_grade: a grade given in service (GRADED with data.pre_removal) that decides
  what may follow the removal; null when there is none.
- events.battery_state.facts: what the registry says of the battery that the plausibility rules compare with
  (material content, mass, rated energy); {} when nothing is known.
- events.battery_state.readings: the last SoH and cycle count, each with the event that gave it.
- portal.batteries.certificate_{number,body,valid_until}: the latest passing KC 10031 certificate of the battery's
  current life (KATS's view: certificates expiring soon, batteries in service on an expired one). A replay of
  the lifecycle stream (`batterytrace rebuild`) fills them for existing batteries.

Revision ID: 008247d08971
Revises: 7d89cb6f0ec9
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "008247d08971"
down_revision: str | None = "7d89cb6f0ec9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("battery_state", sa.Column("pre_removal_grade", sa.Text(), nullable=True), schema="events")
    op.add_column(
        "battery_state",
        sa.Column("facts", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema="events",
    )
    op.add_column("battery_state", sa.Column("readings", postgresql.JSONB(), nullable=True), schema="events")
    op.add_column("batteries", sa.Column("certificate_number", sa.Text(), nullable=True), schema="portal")
    op.add_column("batteries", sa.Column("certificate_body", sa.Text(), nullable=True), schema="portal")
    op.add_column("batteries", sa.Column("certificate_valid_until", sa.Date(), nullable=True), schema="portal")
    op.create_index(
        "ix_batteries_certificate",
        "batteries",
        ["certificate_valid_until"],
        schema="portal",
        postgresql_where=sa.text("certificate_valid_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_batteries_certificate", table_name="batteries", schema="portal")
    for column in ("certificate_valid_until", "certificate_body", "certificate_number"):
        op.drop_column("batteries", column, schema="portal")
    op.drop_column("battery_state", "readings", schema="events")
    op.drop_column("battery_state", "facts", schema="events")
    op.drop_column("battery_state", "pre_removal_grade", schema="events")
