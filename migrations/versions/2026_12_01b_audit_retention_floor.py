"""audit log: records older than 5 years may be deleted (`batterytrace audit prune`); younger ones never

The append-only trigger refused every UPDATE and DELETE, so no retention could ever be applied. It now lets a
DELETE of a row whose `at` is more than 5 years ago through (the shortest retention), and refuses everything
else as before: a wrong prune setting, or anyone with DELETE rights, still cannot remove a younger record.

Revision ID: 35ed569192bc
Revises: 7b59a6537645
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "35ed569192bc"
down_revision: str | None = "7b59a6537645"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("registry", "events", "portal")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION {schema}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND OLD.at < now() - interval '5 years' THEN
                    RETURN OLD;  -- past the shortest retention: `batterytrace audit prune` may remove it
                END IF;
                RAISE EXCEPTION '{schema}.audit_log is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )


def downgrade() -> None:
    for schema in SCHEMAS:
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION {schema}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{schema}.audit_log is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
