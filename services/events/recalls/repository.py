"""Every query of the events service's recall domain (on the session's connection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle.models import LedgerEntry
from services.events.recalls.models import BatterySerial, RecallCampaign
from services.events.vins.models import Vin
from shared.db import json_value, qualified, raw_connection

CAMPAIGNS = qualified(RecallCampaign.__table__)
SERIALS = qualified(BatterySerial.__table__)
LEDGER = qualified(LedgerEntry.__table__)
VINS = qualified(Vin.__table__)


async def upsert_campaigns(session: AsyncSession, campaigns: Sequence[dict[str, Any]]) -> None:
    if campaigns:
        await (await raw_connection(session)).execute(
            f"INSERT INTO {CAMPAIGNS} (id, campaign) SELECT c->>'id', c FROM unnest($1::jsonb[]) AS c "
            "ON CONFLICT (id) DO UPDATE SET campaign = excluded.campaign",
            [orjson.dumps(c).decode() for c in campaigns],
        )


async def upsert_serials(session: AsyncSession, serials: dict[str, str]) -> None:
    if serials:
        await (await raw_connection(session)).execute(
            f"INSERT INTO {SERIALS} (battery_id, serial_number) SELECT * FROM unnest($1::text[], $2::text[]) "
            "ON CONFLICT (battery_id) DO UPDATE SET serial_number = excluded.serial_number",
            list(serials),
            list(serials.values()),
        )


async def campaigns(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await (await raw_connection(session)).fetch(
        f"SELECT id, campaign FROM {CAMPAIGNS} WHERE id = ANY($1::text[])", list(ids)
    )
    return {r["id"]: json_value(r["campaign"]) for r in rows}


async def campaigns_of_makers(session: AsyncSession, makers: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every known campaign of each maker."""
    rows = await (await raw_connection(session)).fetch(
        f"SELECT campaign FROM {CAMPAIGNS} WHERE campaign->>'maker' = ANY($1::text[]) ORDER BY id", list(makers)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        c = json_value(r["campaign"])
        out.setdefault(c["maker"], []).append(c)
    return out


async def facts(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, tuple[str | None, list[str]]]:
    """Per battery: its serial number (if its registration arrived) and the plain VINs of the vehicles it was
    installed in (erased ones are gone)."""
    conn = await raw_connection(session)
    serials = {
        r["battery_id"]: r["serial_number"]
        for r in await conn.fetch(f"SELECT * FROM {SERIALS} WHERE battery_id = ANY($1::text[])", list(battery_ids))
    }
    vins: dict[str, list[str]] = {}
    for r in await conn.fetch(
        f"SELECT l.battery_id, v.vin FROM {LEDGER} l JOIN {VINS} v ON v.pseudonym = l.data->>'vin' "
        "WHERE l.battery_id = ANY($1::text[]) AND l.type = 'INSTALLED' AND v.vin IS NOT NULL",
        list(battery_ids),
    ):
        vins.setdefault(r["battery_id"], []).append(r["vin"])
    return {b: (serials.get(b), vins.get(b, [])) for b in battery_ids}
