"""events: the transparency log (RFC 9162 Merkle tree over every ledger event, signed checkpoints, cosignatures)

- log_queue: ledger events not yet in the tree, filled by a statement-level trigger on the ledger (so every
  committed ledger row reaches the log whichever code path wrote it), drained by the one sequencer in order.
- log_leaves: leaf index → (battery, sequence, leaf hash); log_nodes: every complete subtree hash (level ≥ 1),
  so a proof at any tree size reads O(log n) rows.
- log_checkpoints / log_cosignatures: signed tree heads and the witnesses' signatures on them.
The ledger and the log's tables refuse UPDATE, DELETE and TRUNCATE (the ledger's trigger did not cover TRUNCATE).

Revision ID: f1a3c5e7b9d2
Revises: f1b3d5e7a9c2
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f1a3c5e7b9d2"
down_revision: str | None = "f1b3d5e7a9c2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("log_leaves", "log_nodes", "log_checkpoints")


def upgrade() -> None:
    op.create_table(
        "log_queue",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        schema="events",
    )
    op.create_table(
        "log_leaves",
        sa.Column("leaf_index", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("leaf_hash", postgresql.BYTEA(), nullable=False),
        sa.UniqueConstraint("battery_id", "sequence", name="uq_log_leaves_battery_sequence"),
        schema="events",
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", postgresql.BYTEA(), nullable=False),
        schema="events",
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("log_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="events",
    )
    op.create_table(
        "log_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text(), primary_key=True),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["tree_size"], ["events.log_checkpoints.tree_size"], name="fk_log_cosignatures_tree_size"
        ),
        schema="events",
    )
    op.execute(
        """
        CREATE FUNCTION events.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%.% is append-only (% refused)', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION events.ledger_to_log() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO events.log_queue (battery_id, sequence, hash)
                SELECT battery_id, sequence, hash FROM new_rows ORDER BY battery_id, sequence;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER ledger_to_log AFTER INSERT ON events.ledger REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION events.ledger_to_log()"
    )
    op.execute(
        "CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON events.ledger "
        "FOR EACH STATEMENT EXECUTE FUNCTION events.append_only()"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON events.{table} "
            "FOR EACH ROW EXECUTE FUNCTION events.append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON events.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION events.append_only()"
        )
    # Ledger rows written before the log existed enter it first, in ledger order.
    op.execute(
        "INSERT INTO events.log_queue (battery_id, sequence, hash) "
        "SELECT battery_id, sequence, hash FROM events.ledger ORDER BY recorded_at, battery_id, sequence"
    )


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON events.{table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON events.{table}")
    op.execute("DROP TRIGGER IF EXISTS ledger_no_truncate ON events.ledger")
    op.execute("DROP TRIGGER IF EXISTS ledger_to_log ON events.ledger")
    op.execute("DROP FUNCTION IF EXISTS events.ledger_to_log()")
    op.execute("DROP FUNCTION IF EXISTS events.append_only()")
    for table in ("log_cosignatures", "log_checkpoints", "log_nodes", "log_leaves", "log_queue"):
        op.drop_table(table, schema="events")
