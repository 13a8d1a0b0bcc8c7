"""registry and portal: a model's passport declaration; portal: every life's passport by its own ID, and the resolver's
product-level (GTIN) key on the Digital Link aliases

Revision ID: 7d89cb6f0ec9
Revises: 453b307fd724
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7d89cb6f0ec9"
down_revision: str | None = "453b307fd724"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for schema in ("registry", "portal"):
        op.add_column("battery_models", sa.Column("passport", postgresql.JSONB(), nullable=True), schema=schema)
    op.create_table(
        "passports",
        sa.Column("passport_id", sa.Text(), nullable=False),
        sa.Column("battery_id", sa.Text(), nullable=False),
        sa.Column("life", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("passport_id", name="pk_passports"),
        schema="portal",
    )
    op.execute(
        "CREATE INDEX ix_aliases_digital_link_gtin ON portal.aliases "
        "(lpad(substring(value, '/01/([0-9]{8,14})/21/'), 14, '0')) WHERE scheme = 'gs1_digital_link'"
    )


def downgrade() -> None:
    op.drop_index("ix_aliases_digital_link_gtin", table_name="aliases", schema="portal")
    op.drop_table("passports", schema="portal")
    for schema in ("registry", "portal"):
        op.drop_column("battery_models", "passport", schema=schema)
