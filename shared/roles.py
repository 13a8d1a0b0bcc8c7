"""PostgreSQL roles (least privilege): each service connects as its own role, with rights on its own schema
only; the migrations run as the owner role, which owns the schemas, the tables and the database.

| role          | who connects as it                                | rights                                              |
|---------------|---------------------------------------------------|-----------------------------------------------------|
| `bt_owner`    | `batterytrace migrate`, backup and restore        | owns the database, the schemas and every table (DDL) |
| `bt_registry` | the registry service, `registry republish`        | read/write on schema `registry`                      |
| `bt_events`   | the events service, `events republish`            | schema `events`; the ledger and the log: INSERT only |
| `bt_portal`   | the portal service, `portal rebuild`              | schema `portal` (and TRUNCATE of its read models)    |

What each role may do inside its schema is granted by the migration `least_privilege` (so it is versioned and
every database migrated has it); the roles themselves are cluster-wide, so they are made here, once, by
`batterytrace db bootstrap` (an administrator's step: it needs CREATEROLE), which production runs too."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from sqlalchemy.engine import URL, make_url

OWNER = "bt_owner"
#: service -> the role it connects as
SERVICE_ROLES = {"registry": "bt_registry", "events": "bt_events", "portal": "bt_portal"}
ROLES = (OWNER, *SERVICE_ROLES.values())
#: The schemas the owner owns (one per service), and Alembic's version table's schema.
SCHEMAS = tuple(SERVICE_ROLES)


def role_url(url: str, role: str, password: str | None = None) -> str:
    """The same database as `url`, as `role` (with `password`, else none: trust or peer auth, or a
    PGPASSFILE)."""
    u = make_url(url)
    same = URL.create(u.drivername, role, password, u.host, u.port, u.database, u.query)
    return same.render_as_string(hide_password=False)


def service_url(url: str, service: str, password: str | None = None) -> str:
    """The URL a service connects with: `url`'s database as the service's own role."""
    return role_url(url, SERVICE_ROLES[service], password)


async def ensure_roles(conn: asyncpg.Connection, passwords: Mapping[str, str | None] | None = None) -> None:
    """Create the roles that are missing, as LOGIN roles without any attribute beyond it (no superuser,
    CREATEDB, CREATEROLE, replication or RLS bypass); set the password of each role `passwords` names.
    Idempotent: running it again only changes passwords given. Needs CREATEROLE."""
    passwords = passwords or {}
    for role in ROLES:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        sql = await conn.fetchval(
            "SELECT format('%s ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', $1::text, "
            "$2::text)",
            verb,
            role,
        )
        try:
            await conn.execute(sql)
        except asyncpg.UniqueViolationError:  # a concurrent bootstrap made it first
            pass
        password = passwords.get(role)
        if password:
            await conn.execute(
                await conn.fetchval("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password)
            )


async def prepare_database(conn: asyncpg.Connection, database: str) -> None:
    """The owner owns `database` (so it may create schemas and Alembic's table in `public`); only the four
    roles may connect to it. Run on a connection to any database of the cluster, as its superuser or the
    database's current owner."""
    name = await conn.fetchval("SELECT quote_ident($1::text)", database)
    await conn.execute(f"ALTER DATABASE {name} OWNER TO {OWNER}")
    await conn.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
    await conn.execute(f"GRANT CONNECT ON DATABASE {name} TO {', '.join(SERVICE_ROLES.values())}")


async def transfer_ownership(conn: asyncpg.Connection) -> int:
    """Make the owner own the project's schemas and everything in them, and Alembic's version table, in
    the database `conn` is connected to: for a database first migrated as another role (before roles
    existed). Returns how many objects changed owner. Run as superuser."""
    changed = 0
    for schema in SCHEMAS:
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {OWNER}")
    # Tables (their identity sequences follow), views, and functions; sequences owned by a table follow it.
    rows = await conn.fetch(
        "SELECT format('ALTER %s %s OWNER TO %I', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN "
        "'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass, $2::text) AS sql "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE (n.nspname = ANY($1::text[]) OR (n.nspname = 'public' AND c.relname = 'alembic_version')) "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_get_userbyid(c.relowner) <> $2 "
        "AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid "
        "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))",
        list(SCHEMAS),
        OWNER,
    )
    rows += await conn.fetch(
        "SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $2::text) AS sql FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($1::text[]) "
        "AND pg_get_userbyid(p.proowner) <> $2",
        list(SCHEMAS),
        OWNER,
    )
    for r in rows:
        await conn.execute(r["sql"])
        changed += 1
    return changed


async def bootstrap(
    admin_dsn: str, database: str, passwords: Mapping[str, str | None] | None = None, *, create: bool = False
) -> int:
    """Everything an administrator does once per cluster and database before `batterytrace migrate` runs as
    the owner: the roles, the database (made when `create`), its ownership and who may connect, and the
    ownership of what an earlier migration made. `admin_dsn` is a plain libpq DSN of a superuser on any
    database of the cluster. Idempotent."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await ensure_roles(conn, passwords)
        if create and not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f"CREATE DATABASE {await conn.fetchval('SELECT quote_ident($1::text)', database)}")
        await prepare_database(conn, database)
    finally:
        await conn.close()
    target = await asyncpg.connect(admin_dsn, database=database)
    try:
        return await transfer_ownership(target)
    finally:
        await target.close()
