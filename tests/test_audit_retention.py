"""Audit retention: `batterytrace audit prune` deletes records older than the retention (default and minimum 5
years) in every service's audit log, and nothing younger; the database itself refuses to delete a record younger
than 5 years, whoever asks, and a retention under 5 years is refused before anything is touched."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from services.cli.audit import MIN_RETENTION_DAYS, SCHEMAS, prune
from shared.db import asyncpg_dsn

CLI = str(Path(sys.executable).parent / "batterytrace")
AGES_DAYS = (10, 4 * 365, MIN_RETENTION_DAYS - 2, MIN_RETENTION_DAYS + 2, 6 * 365, 12 * 365)


async def seed(db_url: str) -> None:
    """One record per age in each schema, as the middleware writes them (`at` set back in time)."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        for schema in SCHEMAS:
            for days in AGES_DAYS:
                await conn.execute(
                    f"INSERT INTO {schema}.audit_log (at, actor, role, method, path, query, status) "
                    "VALUES (now() - make_interval(days => $1), $2, 'ministry', 'GET', '/x', '', 200)",
                    days,
                    f"age-{days}",
                )
    finally:
        await conn.close()


async def actors(db_url: str, schema: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return [r["actor"] for r in await conn.fetch(f"SELECT actor FROM {schema}.audit_log ORDER BY at DESC")]
    finally:
        await conn.close()


async def test_prune_removes_only_records_older_than_the_retention(db_url: str) -> None:
    await seed(db_url)
    deleted = await prune(db_url, MIN_RETENTION_DAYS)
    assert deleted == dict.fromkeys(SCHEMAS, 3)
    young = [f"age-{d}" for d in AGES_DAYS if d < MIN_RETENTION_DAYS]
    for schema in SCHEMAS:
        assert await actors(db_url, schema) == young
    assert await prune(db_url, 8 * 365) == dict.fromkeys(SCHEMAS, 0)  # a longer retention: nothing more


async def test_a_record_younger_than_five_years_cannot_be_deleted_by_anyone(db_url: str) -> None:
    await seed(db_url)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        for schema in SCHEMAS:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute(f"DELETE FROM {schema}.audit_log WHERE actor = 'age-{4 * 365}'")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):  # all or nothing
                await conn.execute(f"DELETE FROM {schema}.audit_log")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):  # not even an old one changes
                await conn.execute(f"UPDATE {schema}.audit_log SET actor = 'x' WHERE actor = 'age-{12 * 365}'")
    finally:
        await conn.close()
    for schema in SCHEMAS:
        assert len(await actors(db_url, schema)) == len(AGES_DAYS)


async def test_a_retention_under_five_years_is_refused_and_changes_nothing(db_url: str) -> None:
    await seed(db_url)
    with pytest.raises(ValueError, match="at least"):
        await prune(db_url, 365)
    proc = await asyncio.create_subprocess_exec(
        CLI, "audit", "prune", "--database-url", db_url, "--keep-days", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0 and "keep-days" in out.decode(), out.decode()
    for schema in SCHEMAS:
        assert len(await actors(db_url, schema)) == len(AGES_DAYS)
    # The command with its default retention works end to end.
    proc = await asyncio.create_subprocess_exec(
        CLI, "audit", "prune", "--database-url", db_url, stdout=asyncio.subprocess.PIPE, env=os.environ.copy()
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and "deleted 9 audit records" in out.decode(), out.decode()
