"""portal.epcis_events' key and indexes (migration 2026_12_06b_epcis_events_key_first): the primary key puts the
eventID first and serves every look-up by eventID; the separate eventID index and the unused GIN index on
`battery_ids` are gone; the migration goes both ways and keeps the rows."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from alembic import command

from services.portal.epcis import repository
from shared.db import asyncpg_dsn
from shared.migrate import alembic_config

BEFORE, AFTER = "7c3e5a9d2b4f", "2f8d6b4a9c1e"


async def alembic(url: str, verb: str, revision: str) -> None:
    await asyncio.to_thread(getattr(command, verb), alembic_config(url), revision)


async def _indexes(conn: asyncpg.Connection) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "SELECT i.relname AS name, array_agg(a.attname ORDER BY k.n) AS columns "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
        "WHERE x.indrelid = 'portal.epcis_events'::regclass GROUP BY i.relname"
    )
    return {r["name"]: list(r["columns"]) for r in rows}


def _uses(plan: Any, index: str) -> bool:
    if isinstance(plan, dict):
        return plan.get("Index Name") == index or any(_uses(v, index) for v in plan.values())
    if isinstance(plan, list):
        return any(_uses(v, index) for v in plan)
    return False


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    return orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))


async def test_the_key_serves_every_look_up_by_event_id(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        indexes = await _indexes(conn)
        assert indexes["pk_epcis_events"] == ["event_id", "source", "actor"]
        assert "ix_epcis_events_event_id" not in indexes
        assert not [name for name, columns in indexes.items() if "battery_ids" in columns]
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # an empty table: ask whether an index serves
            ids = ["urn:uuid:00000000-0000-4000-8000-000000000001"]
            assert _uses(await _plan(conn, repository._DELETE_COVERED, ids), "pk_epcis_events")
            by_id = "SELECT * FROM portal.epcis_events e WHERE e.event_id = ANY($1::text[])"
            assert _uses(await _plan(conn, by_id, ids), "pk_epcis_events")
    finally:
        await conn.close()


async def test_the_key_moves_both_ways_and_keeps_the_rows(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    insert = (
        "INSERT INTO portal.epcis_events (source, actor, event_id, event_type, event_time, record_time, body) "
        "VALUES ($1, $2, $3, 'ObjectEvent', now(), now(), '{}') ON CONFLICT (source, actor, event_id) DO NOTHING"
    )
    rows = [("ledger", "KTS", "urn:uuid:1"), ("epcis", "KTS", "urn:uuid:1"), ("epcis", "HMC", "urn:uuid:1")]
    try:
        await conn.executemany(insert, rows)
        await alembic(db_url, "downgrade", BEFORE)
        assert (await _indexes(conn))["pk_epcis_events"] == ["source", "actor", "event_id"]
        await conn.executemany(insert, rows)  # the same rows again: each one a conflict under either key
        await alembic(db_url, "upgrade", AFTER)
        assert (await _indexes(conn))["pk_epcis_events"] == ["event_id", "source", "actor"]
        await conn.executemany(insert, rows)
        kept = await conn.fetch("SELECT source, actor, event_id FROM portal.epcis_events ORDER BY 1, 2")
        assert sorted(tuple(r) for r in kept) == sorted(rows)
    finally:
        await conn.close()


def _scans(plan: Any, relation: str) -> list[str]:
    """The node types that read `relation` anywhere in the plan (sub-plans too)."""
    if isinstance(plan, dict):
        own = [plan["Node Type"]] if plan.get("Relation Name") == relation else []
        return own + [t for v in plan.values() for t in _scans(v, relation)]
    if isinstance(plan, list):
        return [t for v in plan for t in _scans(v, relation)]
    return []


async def test_the_covering_look_up_searches_the_index_per_id_for_a_batch(db_url: str) -> None:
    """A batch of a thousand ledger IDs, against a table the planner believes each `@>` matches 0.5 % of. As a join
    (`... JOIN portal.epcis_events e ON e.ledger_event_ids @> ARRAY[i.id]`) it was planned, at 7,000,000 rows in a 10 M-event bench run, as one parallel scan testing every row
    against every ID: five minutes a batch. This test's 40,000 rows do not make the planner flip, so it holds the
    shape that cannot flip: each ID searched in the GIN index inside a sub-plan (never made a join), no scan of the
    table; and the covered IDs found exactly."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO portal.epcis_events (source, actor, event_id, event_type, event_time, record_time, "
                "epcs, battery_ids, ledger_event_ids, body) "
                "SELECT 'ledger', 'ORG', 'urn:uuid:bench-' || g, 'ObjectEvent', now(), now(), '{}', '{}', "
                "ARRAY['ledger-' || g], '{}'::jsonb FROM generate_series(1, 40000) g"
            )
            await conn.execute(
                "INSERT INTO portal.epcis_events (source, actor, event_id, event_type, event_time, record_time, "
                "epcs, battery_ids, ledger_event_ids, body) VALUES "
                "('epcis', 'CAP', 'urn:uuid:captured-1', 'ObjectEvent', now(), now(), '{}', '{}', "
                "ARRAY['ledger-7', 'ledger-8'], '{}'::jsonb)"
            )
            await conn.execute("ANALYZE portal.epcis_events")
            ids = [f"ledger-{n}" for n in range(1, 1001)]
            plan = await _plan(conn, repository._COVERING, ids)
            scans = _scans(plan, "epcis_events")
            assert scans and "Seq Scan" not in scans, scans
            assert _uses(plan, "ix_epcis_events_ledger_event_ids")
            top = plan[0]["Plan"]
            assert top["Node Type"] == "Function Scan"  # the IDs, each with its own search: no join to re-plan
            assert all(p.get("Parent Relationship") == "SubPlan" for p in top.get("Plans", [])), top
            found = {r["id"] for r in await conn.fetch(repository._COVERING, [*ids, "ledger-unknown"])}
            assert found == {"ledger-7", "ledger-8"}
            raise _RolledBack
    except _RolledBack:
        pass
    finally:
        await conn.close()


class _RolledBack(Exception):
    """Leaves the transaction by rolling it back: the rows were the test's own."""
