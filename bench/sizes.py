"""Sizes (issue: performance, item 2): the ledger's and the portal's tables and indexes per million ledger
events, as the run left them before the log part grows the log by COPY. Heap (with its TOAST) and indexes
apart, from PostgreSQL's own size functions; rows are exact counts."""

from __future__ import annotations

from bench.context import Ctx

#: The tables that grow with the events: the system of record, the log, the outbox, and the portal's read models.
TABLES = (
    "events.ledger",
    "events.log_leaves",
    "events.log_nodes",
    "events.outbox",
    "portal.events",
    "portal.epcis_events",
    "portal.applied_events",
    "portal.batteries",
)
MB = 1024 * 1024


async def run(ctx: Ctx) -> None:
    db = await ctx.db()
    events = await ctx.count("SELECT count(*) FROM events.ledger")
    if not events:
        return
    per = events / 1_000_000
    for table in TABLES:
        if await db.fetchval("SELECT to_regclass($1)", table) is None:
            continue
        row = await db.fetchrow(
            "SELECT pg_table_size($1::regclass) AS heap, pg_indexes_size($1::regclass) AS indexes", table
        )
        rows = await ctx.count(f"SELECT count(*) FROM {table}")
        heap, indexes = row["heap"] / MB, row["indexes"] / MB
        ctx.report.add(
            "size",
            f"{table} per million events",
            (heap + indexes) / per,
            "MB",
            note=f"heap {heap / per:,.0f} MB + indexes {indexes / per:,.0f} MB per million; "
            f"{rows:,} rows, {heap + indexes:,.0f} MB at {events:,} ledger events",
        )
