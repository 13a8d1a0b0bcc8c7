"""Reads and writes of the portal's recall domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg
import orjson

from services.portal.models import Battery, Event
from services.portal.recalls.models import RecallCampaign
from services.portal.vehicles.models import Vin
from shared.db import qualified

CAMPAIGNS = qualified(RecallCampaign.__table__)
BATTERIES = qualified(Battery.__table__)
EVENTS = qualified(Event.__table__)
VINS = qualified(Vin.__table__)


def _campaign(row: Any) -> dict[str, Any]:
    value = row["campaign"]
    return dict(orjson.loads(value) if isinstance(value, str) else value)


async def upsert(conn: asyncpg.Connection, campaigns: Sequence[dict[str, Any]]) -> None:
    for c in campaigns:
        await conn.execute(
            f"INSERT INTO {CAMPAIGNS} (id, maker, opened_on, campaign) VALUES ($1, $2, $3::date, $4::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET maker = excluded.maker, opened_on = excluded.opened_on, "
            "campaign = excluded.campaign",
            c["id"],
            c["maker"],
            date.fromisoformat(str(c["opened_on"])),
            orjson.dumps(c).decode(),
        )


async def every_campaign(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [_campaign(r) for r in await conn.fetch(f"SELECT campaign FROM {CAMPAIGNS} ORDER BY opened_on DESC, id")]


async def campaigns_of(conn: asyncpg.Connection, maker: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT campaign FROM {CAMPAIGNS} WHERE maker = $1 ORDER BY opened_on, id", maker)
    return [_campaign(r) for r in rows]


async def candidates(conn: asyncpg.Connection, maker: str, models: Sequence[str]) -> list[dict[str, Any]]:
    """The maker's batteries (of the models, if any are named): id, model, serial, state (ix_batteries_manufacturer)."""
    sql = f"SELECT id, model_id, serial_number, state FROM {BATTERIES} WHERE manufacturer = $1"
    rows = await (
        conn.fetch(sql + " AND model_id = ANY($2::text[])", maker, list(models)) if models else conn.fetch(sql, maker)
    )
    return [dict(r) for r in rows]


async def _per_battery(conn: asyncpg.Connection, query: str, battery_ids: Sequence[str]) -> dict[str, list[Any]]:
    """`query` selects `battery_id, value` rows for the batteries `$1`; the values of each, grouped in SQL."""
    rows = await conn.fetch(
        f"SELECT battery_id, array_agg(value) AS found FROM ({query}) q GROUP BY battery_id", list(battery_ids)
    )
    return {r["battery_id"]: list(r["found"]) for r in rows}


async def vins_of(conn: asyncpg.Connection, battery_ids: Sequence[str]) -> dict[str, list[str]]:
    """The plain VINs of the vehicles each battery was installed in (erased VINs are gone)."""
    query = (
        f"SELECT e.battery_id, v.vin AS value FROM {EVENTS} e JOIN {VINS} v ON v.pseudonym = e.data->>'vin' "
        "WHERE e.battery_id = ANY($1::text[]) AND e.type = 'INSTALLED' AND v.vin IS NOT NULL"
    )
    return await _per_battery(conn, query, battery_ids)


async def recall_removals(conn: asyncpg.Connection, battery_ids: Sequence[str]) -> dict[str, set[str]]:
    """Per battery, the campaigns its REMOVED events named."""
    query = (
        f"SELECT battery_id, data->>'recall_campaign' AS value FROM {EVENTS} "
        "WHERE battery_id = ANY($1::text[]) AND type = 'REMOVED' AND data ? 'recall_campaign'"
    )
    return {b: set(values) for b, values in (await _per_battery(conn, query, battery_ids)).items()}
