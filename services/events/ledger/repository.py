from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import json_value, raw_connection

LEDGER_COLUMNS = (
    "event_id::text AS event_id, battery_id, sequence, type, occurred_at, recorded_at, actor, actor_role, "
    "location, data, state_after, custodian_after, prev_hash, hash"
)


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["location"] = json_value(d["location"])
    d["data"] = json_value(d["data"])
    return d


async def timeline(session: AsyncSession, battery_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"SELECT {LEDGER_COLUMNS} FROM events.ledger WHERE battery_id = $1 AND sequence > $2 "
        "ORDER BY sequence LIMIT $3",
        battery_id,
        after,
        limit,
    )
    return [_row(r) for r in rows]


async def whole_chain(session: AsyncSession, battery_id: str) -> list[dict[str, Any]]:
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"SELECT {LEDGER_COLUMNS} FROM events.ledger WHERE battery_id = $1 ORDER BY sequence", battery_id
    )
    return [_row(r) for r in rows]


async def handled_by(session: AsyncSession, battery_id: str, org: str) -> bool:
    """Whether `org` made, held or posted an event for the battery."""
    conn = await raw_connection(session)
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM events.ledger WHERE battery_id = $1 AND (actor = $2 OR custodian_after = $2))",
            battery_id,
            org,
        )
    )
