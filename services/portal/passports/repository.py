"""Every life's passport by its own ID: kept by the ingest in its transaction, read by an exact key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.models import BatteryModel
from services.portal.passports.models import PassportLife
from shared.db import json_value, qualified, raw_connection

PASSPORTS = qualified(PassportLife.__table__)
_SAVE = (
    f"INSERT INTO {PASSPORTS} (passport_id, battery_id, life) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) ON CONFLICT (passport_id) DO NOTHING"
)
_DECLARATION = f"SELECT passport FROM {qualified(BatteryModel.__table__)} WHERE id = $1"
#: The public by-ID path: one primary-key look-up (tests EXPLAIN it).
BY_ID = f"SELECT battery_id, life FROM {PASSPORTS} WHERE passport_id = $1"


async def save_lives(session: AsyncSession, lives: Sequence[dict[str, Any]]) -> None:
    """Record each life's passport ID (rows of passport_id, battery_id, life); a known one stays."""
    if not lives:
        return
    conn = await raw_connection(session)
    await conn.execute(
        _SAVE, [x["passport_id"] for x in lives], [x["battery_id"] for x in lives], [x["life"] for x in lives]
    )


async def by_id(conn: asyncpg.Connection, passport_id: str) -> tuple[str, int] | None:
    row = await conn.fetchrow(BY_ID, passport_id)
    return (row["battery_id"], row["life"]) if row else None


async def declaration(conn: asyncpg.Connection, battery: dict[str, Any]) -> dict[str, Any]:
    """The model's passport declaration as last published; until the model's own message arrives, the copy
    the battery's registration carried."""
    found = json_value(await conn.fetchval(_DECLARATION, battery.get("model_id") or ""))
    if found is None:
        found = json_value((battery.get("model") or {}).get("passport"))
    return dict(found or {})
