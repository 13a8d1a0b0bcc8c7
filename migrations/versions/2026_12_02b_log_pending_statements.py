"""events.log_pending: the transparency log's queue holds one row per ledger INSERT statement (its events as
arrays, in (battery_id, sequence) order) instead of one row per event; events.log_queue is dropped.

The per-event queue cost a heap row and an index entry per event to write, the same again to delete, and its
dead entries had to be walked by every take until a vacuum: at 1,000,000 batteries the take was the costliest
statement of the whole registration load (0.36 ms per event, against 0.04 ms for the ledger INSERT). A
1,000-event batch is now one row. Rows still queued move over in their order, 1,000 events to a row. The table
is vacuumed after every few thousand deleted rows (it stays small; its dead rows are all the work there is).

Revision ID: 7c1f0e2d9a4b
Revises: b68aabc61b46
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "7c1f0e2d9a4b"
down_revision: str | None = "b68aabc61b46"
branch_labels = None
depends_on = None

VACUUM = "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_cost_delay = 0"


def upgrade() -> None:
    op.create_table(
        "log_pending",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("battery_ids", ARRAY(sa.Text()), nullable=False),
        sa.Column("sequences", ARRAY(sa.Integer()), nullable=False),
        sa.Column("hashes", ARRAY(sa.Text()), nullable=False),
        schema="events",
    )
    op.execute(f"ALTER TABLE events.log_pending SET ({VACUUM})")
    op.execute(
        """
        INSERT INTO events.log_pending (events, battery_ids, sequences, hashes)
        SELECT count(*), array_agg(battery_id ORDER BY id), array_agg(sequence ORDER BY id), array_agg(hash ORDER BY id)
        FROM (SELECT id, battery_id, sequence, hash, (row_number() OVER (ORDER BY id) - 1) / 1000 AS chunk
              FROM events.log_queue) q
        GROUP BY chunk ORDER BY chunk
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION events.ledger_to_log() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO events.log_pending (events, battery_ids, sequences, hashes)
                SELECT count(*), array_agg(battery_id ORDER BY battery_id, sequence),
                       array_agg(sequence ORDER BY battery_id, sequence), array_agg(hash ORDER BY battery_id, sequence)
                FROM new_rows HAVING count(*) > 0;
            RETURN NULL;
        END $$
        """
    )
    op.drop_table("log_queue", schema="events")
    _grant("log_pending")


def downgrade() -> None:
    op.create_table(
        "log_queue",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        schema="events",
    )
    op.execute(
        "INSERT INTO events.log_queue (battery_id, sequence, hash) SELECT u.battery_id, u.sequence, u.hash "
        "FROM events.log_pending p, unnest(p.battery_ids, p.sequences, p.hashes) WITH ORDINALITY "
        "AS u(battery_id, sequence, hash, n) ORDER BY p.id, u.n"
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION events.ledger_to_log() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO events.log_queue (battery_id, sequence, hash)
                SELECT battery_id, sequence, hash FROM new_rows ORDER BY battery_id, sequence;
            RETURN NULL;
        END $$
        """
    )
    op.drop_table("log_pending", schema="events")
    _grant("log_queue")


def _grant(table: str) -> None:
    """What the least-privilege migration gave the queue: the events role reads, appends and deletes, never
    updates. (Default privileges may already have granted the rest; these statements hold either way.)"""
    op.execute(
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'bt_events') THEN
                EXECUTE 'GRANT SELECT, INSERT, DELETE ON events.{table} TO bt_events';
                EXECUTE 'REVOKE UPDATE, TRUNCATE ON events.{table} FROM bt_events';
                EXECUTE 'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA events TO bt_events';
            END IF;
        END $$
        """
    )
