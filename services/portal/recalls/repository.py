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


#: A range holds a value of its own length between its ends, compared as Python compares text (code points: the
#: "C" collation's byte order of UTF-8).
_IN_RANGE = (
    "EXISTS (SELECT 1 FROM jsonb_array_elements(c.campaign->'{ranges}') r WHERE length({value}) = length(r->>'first') "
    """AND {value} COLLATE "C" BETWEEN r->>'first' AND r->>'last')"""
)
#: Per campaign, newest first: the batteries it covers (shared.contract.recalls.covers, in SQL so no battery leaves
#: the database) and how many of them a REMOVED named it for. tests/test_recalls.py holds it to `covers`.
_COUNTS = f"""
SELECT c.campaign, count(b.id) AS affected, count(b.id) FILTER (WHERE EXISTS (
    SELECT 1 FROM {EVENTS} e WHERE e.battery_id = b.id AND e.type = 'REMOVED' AND e.data->>'recall_campaign' = c.id
  )) AS removed
FROM {CAMPAIGNS} c LEFT JOIN {BATTERIES} b ON b.manufacturer = c.maker
  AND (jsonb_array_length(coalesce(c.campaign->'models', '[]')) = 0 OR c.campaign->'models' ? b.model_id)
  AND (
    jsonb_array_length(coalesce(c.campaign->'serial_ranges', '[]'))
      + jsonb_array_length(coalesce(c.campaign->'vin_ranges', '[]')) = 0
    OR {_IN_RANGE.format(ranges="serial_ranges", value="b.serial_number")}
    OR EXISTS (
      SELECT 1 FROM {EVENTS} e JOIN {VINS} v ON v.pseudonym = e.data->>'vin'
      WHERE e.battery_id = b.id AND e.type = 'INSTALLED' AND v.vin IS NOT NULL
        AND {_IN_RANGE.format(ranges="vin_ranges", value="v.vin")}
    )
  )
GROUP BY c.id ORDER BY c.opened_on DESC, c.id
"""


async def campaign_counts(conn: asyncpg.Connection) -> list[tuple[dict[str, Any], int, int]]:
    """Every campaign, newest first, with how many batteries it covers and how many were removed under it."""
    return [(_campaign(r), r["affected"], r["removed"]) for r in await conn.fetch(_COUNTS)]


async def campaigns_of(conn: asyncpg.Connection, maker: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT campaign FROM {CAMPAIGNS} WHERE maker = $1 ORDER BY opened_on, id", maker)
    return [_campaign(r) for r in rows]


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
