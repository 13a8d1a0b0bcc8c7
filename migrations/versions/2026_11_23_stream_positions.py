"""stream positions: the newest outbox position each consumer group has applied (end-to-end lag)

Revision ID: b8d3e1f0a2c4
Revises: a4f1c2d3e5b6
Create Date: 2026-11-23 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8d3e1f0a2c4"
down_revision: str | None = "a4f1c2d3e5b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("events", "portal")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.create_table(
            "stream_positions",
            sa.Column("consumer_group", sa.Text(), nullable=False),
            sa.Column("topic", sa.Text(), nullable=False),
            sa.Column("position", sa.BigInteger(), nullable=False),
            sa.Column("event_time", sa.DateTime(timezone=True)),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
            sa.PrimaryKeyConstraint("consumer_group", "topic", name=op.f("pk_stream_positions")),
            schema=schema,
        )


def downgrade() -> None:
    for schema in SCHEMAS:
        op.drop_table("stream_positions", schema=schema)
