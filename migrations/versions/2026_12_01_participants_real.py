"""participants are real: business number, GS1 company prefixes and status in the registry; status in the
portal's projection; the events service's own participant projection

Revision ID: a7c9e1b3d5f0
Revises: c4e6a8b0d2f4
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7c9e1b3d5f0"
down_revision: str | None = "c4e6a8b0d2f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("participants", sa.Column("business_number", sa.Text(), nullable=True), schema="registry")
    op.add_column(
        "participants",
        sa.Column(
            "gs1_company_prefixes",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        schema="registry",
    )
    op.add_column(
        "participants", sa.Column("status", sa.Text(), server_default="active", nullable=False), schema="registry"
    )
    op.add_column(
        "participants", sa.Column("status", sa.Text(), server_default="active", nullable=False), schema="portal"
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("ministry", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        schema="events",
    )


def downgrade() -> None:
    op.drop_table("participants", schema="events")
    op.drop_column("participants", "status", schema="portal")
    op.drop_column("participants", "status", schema="registry")
    op.drop_column("participants", "gs1_company_prefixes", schema="registry")
    op.drop_column("participants", "business_number", schema="registry")
