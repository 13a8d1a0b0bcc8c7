"""Every life's passport by its own ID: kept by the ingest in its transaction, read by an exact key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.passports.models import PassportLife
from shared.db import qualified, raw_connection

PASSPORTS = qualified(PassportLife.__table__)
_SAVE = (
    f"INSERT INTO {PASSPORTS} (passport_id, battery_id, life) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) ON CONFLICT (passport_id) DO NOTHING"
)
#: The public by-ID path: one primary-key look-up (tests EXPLAIN it).
BY_ID = f"SELECT battery_id, life FROM {PASSPORTS} WHERE passport_id = $1"


async def save_lives(session: AsyncSession, lives: Sequence[dict[str, Any]]) -> None:
    """Record each life's passport ID (`history.service.lives` rows with `battery_id`); a known one stays."""
    if not lives:
        return
    conn = await raw_connection(session)
    await conn.execute(
        _SAVE, [x["passport_id"] for x in lives], [x["battery_id"] for x in lives], [x["life"] for x in lives]
    )


async def by_id(conn: asyncpg.Connection, passport_id: str) -> tuple[str, int] | None:
    row = await conn.fetchrow(BY_ID, passport_id)
    return (row["battery_id"], row["life"]) if row else None
