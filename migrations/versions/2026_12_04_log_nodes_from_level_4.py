"""events.log_nodes keeps the complete subtrees from level 4 up (services/events/log/tree.py STORED_FROM)

A subtree below level 4 spans at most 16 leaves; the events service folds it from `log_leaves` when a proof,
a checkpoint or the sequencer needs it, so storing it cost about one node row per leaf for nothing a reader
could not recompute from the leaves (measured at 1,000,000 leaves: the sequencer's node INSERT took 4.2 to
5.1 ms per 1,000 events). The upgrade removes the stored nodes of levels 1 to 3 (7 in 8 of the table's rows),
with the table's append-only trigger switched off for that one statement by its owner (what this migration
runs as); nothing they held is lost: each is the RFC 9162 hash of leaves the log keeps. The downgrade folds them
back from the leaves, level by level, in SQL (SHA-256(0x01 ‖ left ‖ right)), for the code that reads them.

Revision ID: 4b8e2c6a1d3f
Revises: 1766f017f594
"""

from __future__ import annotations

from alembic import op

revision: str = "4b8e2c6a1d3f"
down_revision: str | None = "1766f017f594"
branch_labels = None
depends_on = None

STORED_FROM = 4  # services/events/log/tree.py; written out, as a released migration must not change with the code


def upgrade() -> None:
    op.execute("ALTER TABLE events.log_nodes DISABLE TRIGGER log_nodes_append_only")
    op.execute(f"DELETE FROM events.log_nodes WHERE level < {STORED_FROM}")
    op.execute("ALTER TABLE events.log_nodes ENABLE TRIGGER log_nodes_append_only")


def downgrade() -> None:
    op.execute(
        "INSERT INTO events.log_nodes (level, idx, hash) "
        "SELECT 1, a.leaf_index / 2, sha256('\\x01'::bytea || a.leaf_hash || b.leaf_hash) "
        "FROM events.log_leaves a JOIN events.log_leaves b ON b.leaf_index = a.leaf_index + 1 "
        "WHERE a.leaf_index % 2 = 0"
    )
    for level in range(2, STORED_FROM):
        op.execute(
            "INSERT INTO events.log_nodes (level, idx, hash) "
            f"SELECT {level}, a.idx / 2, sha256('\\x01'::bytea || a.hash || b.hash) "
            "FROM events.log_nodes a JOIN events.log_nodes b "
            f"ON b.level = {level - 1} AND b.idx = a.idx + 1 WHERE a.level = {level - 1} AND a.idx % 2 = 0"
        )
