"""audit log: every read of non-public data by a ministry or operator, append-only, in each schema

Revision ID: d6f8b0c2e4a7
Revises: c5e7a9b1d3f6
Create Date: 2026-11-23 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d6f8b0c2e4a7"
down_revision: str | None = "c5e7a9b1d3f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("registry", "events", "portal")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.create_table(
            "audit_log",
            sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
            sa.Column("actor", sa.Text(), nullable=False),
            sa.Column("role", sa.Text(), nullable=False),
            sa.Column("ministry", sa.Text(), nullable=True),
            sa.Column("method", sa.Text(), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.Column("query", sa.Text(), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("purpose", sa.Text(), nullable=True),
            sa.Column("request_id", sa.Text(), nullable=True),
            sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
            schema=schema,
        )
        op.create_index("ix_audit_log_actor", "audit_log", ["actor", "at"], schema=schema)
        op.create_index("ix_audit_log_at", "audit_log", ["at"], schema=schema)
        op.execute(
            f"""
            CREATE FUNCTION {schema}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{schema}.audit_log is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {schema}.audit_log "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.audit_log_append_only()"
        )


def downgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_append_only ON {schema}.audit_log")
        op.execute(f"DROP FUNCTION IF EXISTS {schema}.audit_log_append_only()")
        op.drop_table("audit_log", schema=schema)
