"""Amendment queries: the battery row locked while one is numbered and written, a battery's amendments in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.amendments.models import Amendment
from services.registry.batteries.models import Battery
from shared.db import json_value, names, qualified, raw_connection

_amendments = Amendment.__table__
_COLUMNS = list(_amendments.c)
#: Serialises amendments of one battery: each is numbered after, and states its before from, the one before it.
_GET_BATTERY = f"SELECT * FROM {qualified(Battery.__table__)} WHERE id = $1"
_OF = f"SELECT {names(_COLUMNS)} FROM {qualified(_amendments)} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, number"
_INSERT = (
    f"INSERT INTO {qualified(_amendments)} (id, battery_id, number, changes, reason, actor, actor_role) "
    "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) RETURNING " + names(_COLUMNS)
)


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["id"], d["changes"] = str(d["id"]), json_value(d["changes"])
    return d


async def lock_battery(session: AsyncSession, battery_id: str, *, lock: bool = True) -> dict[str, Any] | None:
    """The battery's registered row (locked for the transaction unless `lock` is False)."""
    conn = await raw_connection(session)
    row = await conn.fetchrow(_GET_BATTERY + (" FOR UPDATE" if lock else ""), battery_id)
    return dict(row) if row else None


async def of(conn: asyncpg.Connection, battery_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each battery's amendments, in number order."""
    out: dict[str, list[dict[str, Any]]] = {b: [] for b in battery_ids}
    for r in await conn.fetch(_OF, list(battery_ids)):
        out[r["battery_id"]].append(_row(r))
    return out


async def insert(session: AsyncSession, record: dict[str, Any]) -> dict[str, Any]:
    conn = await raw_connection(session)
    row = await conn.fetchrow(
        _INSERT,
        record["id"],
        record["battery_id"],
        record["number"],
        orjson.dumps(record["changes"]).decode(),
        record["reason"],
        record["actor"],
        record["actor_role"],
    )
    return _row(row)
