"""Least privilege (issue: verifiable history): each service connects as its own PostgreSQL role, which may touch
its own schema only; the events role may append to the ledger and the log but never change or empty them; only
the owner role (the migrations) may change the schema, and even the owner's TRUNCATE of the ledger, the log or an
audit log is refused by a trigger. Every refusal is tried the way a compromised service would try it, on a
database with real rows, and changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.events.settings import EventsSettings
from services.portal.settings import PortalSettings
from services.registry.settings import RegistrySettings
from shared.db import asyncpg_dsn
from shared.roles import OWNER, SERVICE_ROLES, role_url
from tests.conftest import eventually
from tests.events_helpers import Stack, stack

EVENTS, REGISTRY, PORTAL = SERVICE_ROLES["events"], SERVICE_ROLES["registry"], SERVICE_ROLES["portal"]
#: The tables bt_events may only append to (and read).
APPEND_ONLY = ("ledger", "log_leaves", "log_nodes", "log_checkpoints", "log_cosignatures")
FAST = {"log_checkpoint_interval_s": 0.1, "log_sequencer_interval_s": 0.02}


@contextlib.asynccontextmanager
async def connect(db_url: str, role: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(role_url(db_url, role)))
    try:
        yield conn
    finally:
        await conn.close()


async def counts(db_url: str) -> dict[str, Any]:
    """Rows of every table the refusals aim at, read by the superuser: a refused statement changes none."""
    async with connect(db_url, "postgres") as conn:
        tables = [f"events.{t}" for t in (*APPEND_ONLY, "log_pending", "audit_log")]
        tables += ["registry.batteries", "registry.audit_log", "portal.audit_log"]
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


@pytest.fixture
async def filled(make_settings: Any, token: Any, db_url: str) -> AsyncIterator[Stack]:
    """Registry and events (as bt_registry and bt_events) with two batteries' histories sequenced into the log
    (16 events: the log stores its first interior node, at level 4), checkpointed and cosigned, and one audited
    read."""
    async with stack(make_settings, token, **FAST) as s:
        for _ in range(2):
            b = await s.battery()
            for _ in range(7):
                await s.ok(b, "INCIDENT", "inspector")
        async with connect(db_url, "postgres") as conn:

            async def logged() -> bool:
                return bool(await conn.fetchval("SELECT count(*) > 0 FROM events.log_checkpoints WHERE tree_size = 16"))

            await eventually(logged)
            await conn.execute(
                "INSERT INTO events.log_cosignatures (tree_size, witness, signature) VALUES (16, 'w', 's')"
            )
            for schema in ("registry", "events", "portal"):
                await conn.execute(
                    f"INSERT INTO {schema}.audit_log (actor, role, method, path, query, status) "
                    "VALUES ('MOLIT', 'ministry', 'GET', '/v1/x', '', 200)"
                )
        yield s


async def test_each_service_connects_as_its_own_role(make_settings: Any, filled: Stack) -> None:
    for cls, service in ((RegistrySettings, "registry"), (EventsSettings, "events"), (PortalSettings, "portal")):
        assert f"//{SERVICE_ROLES[service]}@" in make_settings(cls).database_url
    for client, role in ((filled.registry, REGISTRY), (filled.events, EVENTS)):
        async with client.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
            assert (await conn.exec_driver_sql("SELECT current_user")).scalar() == role
        pool = client.app.state.statement_pool  # type: ignore[attr-defined]
        assert await pool.fetchval("SELECT current_user") == role


async def test_the_events_role_cannot_change_or_empty_the_ledger_or_the_log(filled: Stack, db_url: str) -> None:
    before = await counts(db_url)
    async with connect(db_url, EVENTS) as conn:
        for table in APPEND_ONLY:
            assert await conn.fetchval(f"SELECT count(*) FROM events.{table}") > 0  # it may read them
            column = await first_column(conn, table)
            for sql in (
                f"UPDATE events.{table} SET {column} = {column}",
                f"DELETE FROM events.{table}",
                f"TRUNCATE events.{table}",
                f"TRUNCATE events.{table} CASCADE",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(sql)
    assert await counts(db_url) == before


async def test_the_events_role_cannot_rewrite_or_empty_the_logs_queue(filled: Stack, db_url: str) -> None:
    """The queue holds hashes not yet sequenced into the log: a compromised events service that rewrote one would
    have the log record a hash the ledger does not hold. Only the sequencer's DELETE (taking rows) is allowed, and
    the privilege is checked before any row is looked at, so the (drained) queue's refusal is the same as a full one's."""
    before = await counts(db_url)
    async with connect(db_url, EVENTS) as conn:
        for sql in (
            "UPDATE events.log_pending SET hashes = ARRAY['" + "ff" * 32 + "']",
            "TRUNCATE events.log_pending",
            "TRUNCATE events.log_pending CASCADE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(sql)
    assert await counts(db_url) == before


async def first_column(conn: asyncpg.Connection, table: str) -> str:
    name = await conn.fetchval(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'events' AND table_name = $1 "
        "ORDER BY ordinal_position LIMIT 1",
        table,
    )
    return str(name)


async def test_the_events_role_appends_to_the_ledger_and_the_log(filled: Stack, db_url: str) -> None:
    """The rights it keeps are the ones capture needs: a new event reaches the ledger, the queue, the leaves."""
    before = await counts(db_url)
    b = await filled.battery()
    await filled.ok(b, "INCIDENT", "inspector")
    async with connect(db_url, "postgres") as conn:

        async def sequenced() -> bool:
            return bool(await conn.fetchval("SELECT count(*) = 18 FROM events.log_leaves"))

        await eventually(sequenced)
    after = await counts(db_url)
    assert after["events.ledger"] == before["events.ledger"] + 2
    assert after["events.log_pending"] == 0  # drained: the sequencer's DELETE on the queue is allowed


async def test_no_role_can_bypass_the_triggers_or_change_the_schema(filled: Stack, db_url: str) -> None:
    for role, schema, table in ((EVENTS, "events", "ledger"), (REGISTRY, "registry", "batteries")):
        async with connect(db_url, role) as conn:
            for sql in (
                "SET session_replication_role = replica",  # what switches triggers off: superuser only
                f"ALTER TABLE {schema}.{table} DISABLE TRIGGER ALL",
                f"ALTER TABLE {schema}.{table} ADD COLUMN evil text",
                f"DROP TABLE {schema}.{table}",
                f"CREATE TABLE {schema}.evil (x int)",
                "CREATE SCHEMA evil",
                "CREATE TABLE public.evil (x int)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
            # A right it holds without the grant option, it cannot pass on (PostgreSQL only warns).
            await conn.execute(f"GRANT SELECT ON {schema}.{table} TO {PORTAL}")
            assert not await conn.fetchval(f"SELECT has_table_privilege('{PORTAL}', '{schema}.{table}', 'SELECT')")
    async with connect(db_url, EVENTS) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TRIGGER ledger_no_truncate ON events.ledger")


async def test_the_owner_may_change_the_schema(filled: Stack, db_url: str) -> None:
    async with connect(db_url, OWNER) as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute("CREATE TABLE events.owner_may (x int)")
            await conn.execute("ALTER TABLE events.ledger ADD COLUMN owner_may text")
            owners = await conn.fetch(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('registry', 'events', 'portal')"
            )
            assert [r[0] for r in owners] == [OWNER]
        finally:
            await tr.rollback()


async def test_the_owners_truncate_is_refused_by_the_append_only_trigger(filled: Stack, db_url: str) -> None:
    """The owner has every right (it owns the tables), so a trigger refuses the TRUNCATE a GRANT cannot: the
    way round it (switching the trigger off) is DDL the transparency log's witnesses detect the effect of."""
    before = await counts(db_url)
    async with connect(db_url, OWNER) as conn:
        for table in (
            *(f"events.{t}" for t in ("ledger", "log_leaves", "log_nodes", "log_checkpoints")),
            *(f"{schema}.audit_log" for schema in ("registry", "events", "portal")),
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(f"TRUNCATE {table} CASCADE")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(f"DELETE FROM {table}")
    assert await counts(db_url) == before


@pytest.mark.parametrize(
    ("role", "own", "foreign"),
    [
        (EVENTS, "events", ("registry", "portal")),
        (REGISTRY, "registry", ("events", "portal")),
        (PORTAL, "portal", ("events", "registry")),
    ],
)
async def test_a_service_role_cannot_read_or_write_another_services_schema(
    filled: Stack, db_url: str, role: str, own: str, foreign: tuple[str, ...]
) -> None:
    before = await counts(db_url)
    async with connect(db_url, role) as conn:
        assert await conn.fetchval(f"SELECT count(*) >= 0 FROM {own}.audit_log")  # its own: yes
        for schema in foreign:
            for sql in (
                f"SELECT * FROM {schema}.audit_log",
                f"INSERT INTO {schema}.audit_log (actor) VALUES ('evil')",
                f"UPDATE {schema}.audit_log SET actor = 'evil'",
                f"DELETE FROM {schema}.audit_log",
                f"TRUNCATE {schema}.audit_log",
                f"SELECT * FROM {schema}.stream_positions",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema"):
                    await conn.execute(sql)
    assert await counts(db_url) == before


async def test_the_portal_role_cannot_write_the_ledger(filled: Stack, db_url: str) -> None:
    async with connect(db_url, "postgres") as conn:
        row = dict(await conn.fetchrow("SELECT * FROM events.ledger LIMIT 1"))
    cols = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    before = await counts(db_url)
    for role in (PORTAL, REGISTRY):
        async with connect(db_url, role) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema events"):
                await conn.execute(
                    f"INSERT INTO events.ledger ({cols}) VALUES ({params})",
                    *({**row, "battery_id": "EVIL", "event_id": uuid.uuid4()}).values(),
                )
    assert await counts(db_url) == before


async def test_audit_logs_are_insert_only_for_their_service(filled: Stack, db_url: str) -> None:
    for role, schema in ((EVENTS, "events"), (REGISTRY, "registry"), (PORTAL, "portal")):
        async with connect(db_url, role) as conn:
            for sql in (
                f"UPDATE {schema}.audit_log SET actor = 'nobody'",
                f"DELETE FROM {schema}.audit_log",
                f"TRUNCATE {schema}.audit_log",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(sql)


async def test_only_the_projects_roles_may_connect(infra: Any, db_url: str) -> None:
    stranger = f"t_stranger_{uuid.uuid4().hex[:8]}"
    async with connect(db_url, "postgres") as admin:
        await admin.execute(f"CREATE ROLE {stranger} LOGIN")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
                await asyncpg.connect(asyncpg_dsn(role_url(db_url, stranger)))
        finally:
            await admin.execute(f"DROP ROLE {stranger}")


async def test_bootstrap_makes_plain_login_roles_sets_passwords_and_hands_over_ownership(infra: Any) -> None:
    """`batterytrace db bootstrap` on a database an older release migrated as the superuser: idempotent, each
    role gets the password of its URL and no attribute beyond LOGIN, and the owner ends up owning everything."""
    name = f"b_{uuid.uuid4().hex[:10]}"
    admin_url = infra.pg.url("postgres")
    async with connect(admin_url, "postgres") as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        async with connect(infra.pg.url(name), "postgres") as old:  # what a release before the roles left behind
            await old.execute("CREATE SCHEMA events")
            await old.execute("CREATE TABLE events.ledger (id bigint GENERATED ALWAYS AS IDENTITY, x text)")
            await old.execute("CREATE FUNCTION events.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        urls = {
            role: role_url(infra.pg.url(name), role, password=f"pw-{role}-{uuid.uuid4().hex[:6]}")
            for role in (OWNER, *SERVICE_ROLES.values())
        }
        env = {
            "BT_ADMIN_DATABASE_URL": admin_url,
            "BT_DATABASE_URL": urls[OWNER],
            **{f"BT_{s.upper()}_DATABASE_URL": urls[r] for s, r in SERVICE_ROLES.items()},
        }
        for _ in range(2):
            code, out = await cli_run("db", "bootstrap", env=env)
            assert code == 0, out
        async with connect(admin_url, "postgres") as admin:
            rows = await admin.fetch(
                "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
                "rolpassword IS NOT NULL AS has_password FROM pg_authid WHERE rolname = ANY($1::text[])",
                list(urls),
            )
            assert {r["rolname"] for r in rows} == set(urls)
            for r in rows:
                assert r["rolcanlogin"] and r["has_password"], r
                assert not any(
                    r[k] for k in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
                )
            assert (
                await admin.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name)
                == OWNER
            )
        async with connect(infra.pg.url(name), "postgres") as conn:
            owners = await conn.fetch(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'events'::regnamespace "
                "UNION SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = 'events'::regnamespace "
                "UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'events'"
            )
            assert [r[0] for r in owners] == [OWNER]
        wrong = env | {"BT_EVENTS_DATABASE_URL": role_url(infra.pg.url(name), PORTAL, "x")}
        code, out = await cli_run("db", "bootstrap", env=wrong)
        assert code != 0 and "must connect as bt_events" in out
    finally:
        await infra.pg.drop_database(name)


async def cli_run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    import os
    import sys
    from pathlib import Path

    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "batterytrace"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "300", **env},  # an error on one line
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()
