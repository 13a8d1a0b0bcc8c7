"""registry.outbox and events.outbox are vacuumed and analyzed after every 10,000 changed rows, not after a fifth
of the table has changed.

Every row of an outbox is inserted unsent and updated once, seconds later, when it is published. With the default
thresholds, autoanalyze last sampled such a table while a load's rows were still unsent and then waited for a
fifth of a table that only grows (rows are kept `outbox_retention_days`): the statistics said most rows were
unsent long after none were, and the relay's idle check planned a sequential scan of the whole table (100 ms at
200,000 rows, every poll of an idle relay: a third of a core). The dead index entries sent rows leave in the
unsent index wait just as long for a vacuum, and every sweep of the claim cursor walks them.

Revision ID: 9b4d2e7f1a3c
Revises: 2f8d6b4a9c1e
"""

from __future__ import annotations

from alembic import op

revision: str = "9b4d2e7f1a3c"
down_revision: str | None = "2f8d6b4a9c1e"
branch_labels = None
depends_on = None

SCHEMAS = ("registry", "events")
#: As `shared.outbox.OUTBOX_STORAGE` declares them (written out: a released migration does not follow the code).
OPTIONS = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "10000",
}


def upgrade() -> None:
    options = ", ".join(f"{k} = {v}" for k, v in OPTIONS.items())
    for schema in SCHEMAS:
        op.execute(f"ALTER TABLE {schema}.outbox SET ({options})")


def downgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"ALTER TABLE {schema}.outbox RESET ({', '.join(OPTIONS)})")
