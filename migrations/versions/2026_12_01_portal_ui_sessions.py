"""portal: the UI's server-side sessions (sign-out deletes the row, so a copied cookie stops working)

Revision ID: c4e6a8b0d2f4
Revises: 9c1e3a5b7d2f
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4e6a8b0d2f4"
down_revision: str | None = "9c1e3a5b7d2f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("key_hash", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema="portal",
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"], schema="portal")


def downgrade() -> None:
    op.drop_index("ix_ui_sessions_expires_at", table_name="ui_sessions", schema="portal")
    op.drop_table("ui_sessions", schema="portal")
