"""least privilege: each service's role has rights on its own schema only; the ledger and the log are insert-only

- bt_registry / bt_events / bt_portal: USAGE on their schema, SELECT/INSERT/UPDATE/DELETE on its tables, USAGE on
  its sequences (identity columns), and the same on every table a later migration adds (default privileges).
  No CREATE on any schema, no rights in any other schema: DDL is the owner's (bt_owner, who runs the migrations).
- bt_events may only INSERT (and read) the ledger, the log's leaves, nodes, checkpoints and cosignatures; the
  log queue it also drains (DELETE). No role but the owner has TRUNCATE, except bt_portal on its read models
  (`batterytrace portal rebuild` empties them).
- Every audit log: INSERT and SELECT only, and its append-only trigger now also fires on TRUNCATE (the ledger's
  and the log's already do, migration transparency_log).

The roles are cluster-wide and made by `batterytrace db bootstrap` (shared/roles.py) with their passwords; if
one is missing this migration makes it without LOGIN when the migrating role may, else stops and says so.

Revision ID: 453b307fd724
Revises: a2c4e6f8b0d1
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "453b307fd724"
down_revision: str | None = "a2c4e6f8b0d1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNER = "bt_owner"
ROLES = {"registry": "bt_registry", "events": "bt_events", "portal": "bt_portal"}
#: bt_events: INSERT and SELECT only (the queue: also DELETE, the sequencer drains it).
INSERT_ONLY = ("ledger", "log_leaves", "log_nodes", "log_checkpoints", "log_cosignatures")
#: What `portal rebuild` keeps (services/portal/rebuild.py KEEP): not truncated.
PORTAL_KEEP = ("stream_positions", "audit_log", "ui_sessions")
TABLE_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"


def _default_privilege_grantors() -> list[str]:
    """Whose future tables get the grants: the migrating role's, and the owner's when a superuser migrates."""
    me, superuser = (
        op.get_bind().execute(text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")).one()
    )
    return sorted({me, OWNER} if superuser else {me})


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        DECLARE r text;
        BEGIN
            FOREACH r IN ARRAY ARRAY['{OWNER}', {", ".join(f"'{x}'" for x in ROLES.values())}] LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                    BEGIN
                        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                    EXCEPTION WHEN insufficient_privilege THEN
                        RAISE EXCEPTION 'role % is missing: run `batterytrace db bootstrap` first', r;
                    END;
                END IF;
            END LOOP;
        END $$
        """
    )
    grantors = _default_privilege_grantors()
    for schema, role in ROLES.items():
        op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        op.execute(f"GRANT {TABLE_RIGHTS} ON ALL TABLES IN SCHEMA {schema} TO {role}")
        op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
        for grantor in grantors:
            rights = TABLE_RIGHTS + (", TRUNCATE" if schema == "portal" else "")
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} GRANT {rights} ON TABLES TO {role}"
            )
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}"
            )
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.audit_log FROM {role}")
        op.execute(
            f"CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {schema}.audit_log "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_log_append_only()"
        )
    for table in INSERT_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON events.{table} FROM bt_events")
    op.execute("REVOKE UPDATE ON events.log_queue FROM bt_events")
    op.execute("GRANT TRUNCATE ON ALL TABLES IN SCHEMA portal TO bt_portal")
    for table in PORTAL_KEEP:
        op.execute(f"REVOKE TRUNCATE ON portal.{table} FROM bt_portal")


def downgrade() -> None:
    grantors = _default_privilege_grantors()
    for schema, role in ROLES.items():
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_truncate ON {schema}.audit_log")
        for grantor in grantors:
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}"
            )
            op.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {grantor} IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}"
            )
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
