"""The outbox's upkeep (migration 2026_12_07_outbox_autovacuum) and the idle relay's check: statistics that still
count a published load as unsent must not turn the check into a scan of the whole table."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from shared.db import asyncpg_dsn, make_engine
from shared.outbox import OUTBOX_STORAGE, OutboxRelay

ROWS = 20_000


def _nodes(plan: Any) -> list[dict[str, Any]]:
    if isinstance(plan, dict):
        return [plan, *(n for v in plan.values() for n in _nodes(v))]
    if isinstance(plan, list):
        return [n for v in plan for n in _nodes(v)]
    return []


async def test_each_outbox_is_vacuumed_and_analyzed_after_a_fixed_number_of_changes(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        for schema in ("registry", "events"):
            options = await conn.fetchval(f"SELECT reloptions FROM pg_class WHERE oid = '{schema}.outbox'::regclass")
            assert dict(o.split("=", 1) for o in options) == OUTBOX_STORAGE, schema
    finally:
        await conn.close()


async def test_the_idle_check_reads_only_past_the_cursor_under_stale_statistics(db_url: str) -> None:
    """A load's rows analyzed while unsent, then all published: the statistics say nearly every row is unsent.
    The relay's idle check, planned once for any start (a generic plan, as a prepared statement reused by an idle
    relay is), must still go by an index, and from the cursor's position read a handful of pages, not the table."""
    engine = make_engine(db_url, pool_size=1)
    relay = OutboxRelay(engine, "events", bootstrap="127.0.0.1:9")  # never started: its statements only
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(
            "INSERT INTO events.outbox (topic, key, payload) "
            "SELECT 't', g::text, ('{\"padding\": \"' || repeat('x', 400) || '\"}')::json FROM generate_series(1, $1) g",
            ROWS,
        )
        await conn.execute("ANALYZE events.outbox")
        await conn.execute("UPDATE events.outbox SET sent_at = now()")
        null_frac = await conn.fetchval(
            "SELECT null_frac FROM pg_stats WHERE schemaname = 'events' AND tablename = 'outbox' "
            "AND attname = 'sent_at'"
        )
        assert null_frac > 0.9  # the stale statistics the check must survive
        high = await conn.fetchval("SELECT max(id) FROM events.outbox")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE idle_check(bigint) AS {relay._pending}")
        plan = orjson.loads(
            await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE idle_check({int(high)})")
        )
        nodes = _nodes(plan)
        scans = [n["Node Type"] for n in nodes if "Node Type" in n and "Scan" in n["Node Type"]]
        assert "Seq Scan" not in scans and any(s.startswith("Index") for s in scans), scans
        assert plan[0]["Plan"]["Shared Hit Blocks"] + plan[0]["Plan"].get("Shared Read Blocks", 0) < 20
        first, xmin = await conn.fetchrow(relay._pending, high)
        assert first is None and xmin > 0
        first, _ = await conn.fetchrow(relay._pending, 0)
        assert first is None  # nothing unsent, from the start either
    finally:
        await conn.close()
        await engine.dispose()
