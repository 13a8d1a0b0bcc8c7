"""portal.batteries keeps room on each page for a row's next version (migration
2026_12_06_portal_batteries_fillfactor): the update a lifecycle event makes to its battery's row, moving no
indexed column, is a HOT update (no new index entries) even on a page the inserts filled."""

from __future__ import annotations

import asyncpg

from shared.db import asyncpg_dsn


async def _one_update_per_page(conn: asyncpg.Connection, table: str, prefix: str) -> tuple[int, int]:
    """Insert 2,000 batteries into `table` (a copy of portal.batteries with its storage and indexes), then update
    one row of each page they filled, as one event does; (rows updated, of them HOT), in this transaction."""
    await conn.execute(
        f"INSERT INTO {table} (id, state, manufacturer, chemistry, region, last_event_id) "
        "SELECT $1 || lpad(i::text, 6, '0'), 'in_service', 'LGES', 'NCM811', 'KR-11', repeat('e', 36) "
        "FROM generate_series(1, 2000) i",
        prefix,
    )
    before = await conn.fetchval(f"SELECT pg_stat_get_xact_tuples_hot_updated('{table}'::regclass)")
    updated = await conn.fetchval(
        f"WITH one AS (SELECT DISTINCT ON ((ctid::text::point)[0]) id FROM {table} WHERE id LIKE $1 || '%' "
        "ORDER BY (ctid::text::point)[0], id), "
        f"u AS (UPDATE {table} b SET sequence = b.sequence + 1, last_event_id = repeat('f', 36) "
        "FROM one WHERE b.id = one.id RETURNING 1) SELECT count(*) FROM u",
        prefix,
    )
    after = await conn.fetchval(f"SELECT pg_stat_get_xact_tuples_hot_updated('{table}'::regclass)")
    return int(updated), int(after - before)


async def test_an_event_update_stays_on_its_page(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'portal.batteries'::regclass")
        assert options == ["fillfactor=85"]
        tx = conn.transaction()  # rolled back: the database is left as it was
        await tx.start()
        try:
            updated, hot = await _one_update_per_page(conn, "portal.batteries", "STORAGE-")
            assert updated >= 10  # 2,000 rows fill more than ten pages
            assert hot == updated  # every one stayed on its page
            # The same table filled to the brim (the default fillfactor, 100): the same updates leave their page.
            await conn.execute(
                "CREATE TEMP TABLE full_batteries (LIKE portal.batteries INCLUDING ALL) WITH (fillfactor = 100)"
            )
            updated, hot = await _one_update_per_page(conn, "full_batteries", "FULL-")
            assert updated >= 10 and hot < updated / 2
        finally:
            await tx.rollback()
    finally:
        await conn.close()
