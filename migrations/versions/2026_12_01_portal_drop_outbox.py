"""portal: drop the outbox table. The portal publishes nothing; the table only existed so that a common
`/v1/ops/outbox` endpoint answered, and the app factory now mounts that endpoint only for publishers.

Revision ID: f1b3d5e7a9c2
Revises: e7a9c1d3f5b8
Create Date: 2026-12-01 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f1b3d5e7a9c2"
down_revision: str | None = "e7a9c1d3f5b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_unsent", table_name="outbox", schema="portal", postgresql_where=sa.text("sent_at IS NULL"))
    op.drop_table("outbox", schema="portal")


def downgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="portal",
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["id"], unique=False, schema="portal", postgresql_where=sa.text("sent_at IS NULL")
    )
