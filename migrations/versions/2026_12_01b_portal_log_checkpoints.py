"""portal: the transparency log's checkpoints as published on battery.log.checkpoints.v1, and their cosigners

- log_checkpoints: one row per tree size (the note with the most signatures seen).
- log_cosigners: the witnesses that cosigned each checkpoint (the portal shows which ministries did).
Read models: rebuilt by replaying the topic.

Revision ID: 7b59a6537645
Revises: 74de03343a9a
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b59a6537645"
down_revision: str | None = "74de03343a9a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("log_key", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signatures", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="portal",
    )
    op.create_table(
        "log_cosigners",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("witness", sa.Text(), primary_key=True),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="portal",
    )
    op.create_index("ix_log_cosigners_witness", "log_cosigners", ["witness"], schema="portal")


def downgrade() -> None:
    op.drop_index("ix_log_cosigners_witness", table_name="log_cosigners", schema="portal")
    op.drop_table("log_cosigners", schema="portal")
    op.drop_table("log_checkpoints", schema="portal")
