"""Recall campaigns on the portal: which batteries each covers (shared.contract.recalls.covers), a
battery's campaigns (its history and authority-level passport), and MOLIT's counts per campaign."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.ingest.projection import Message
from services.portal.recalls import repository as repo
from shared.contract.recalls import Campaign, covers
from shared.db import raw_connection


async def apply(session: AsyncSession, messages: Sequence[Message]) -> None:
    campaigns = [m.body.model_dump(mode="json") for m in messages if isinstance(m.body, Campaign)]
    if campaigns:
        await repo.upsert(await raw_connection(session), campaigns)


async def of_battery(conn: asyncpg.Connection, battery: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The campaigns that cover the battery, each with whether a REMOVED of it named the campaign."""
    if not battery.get("manufacturer"):
        return []
    campaigns = [Campaign.model_validate(c) for c in await repo.campaigns_of(conn, battery["manufacturer"])]
    if not campaigns:
        return []
    by_vin = any(c.vin_ranges for c in campaigns)
    vins = (await repo.vins_of(conn, [battery["id"]])).get(battery["id"], []) if by_vin else []
    removals = (await repo.recall_removals(conn, [battery["id"]])).get(battery["id"], set())
    return [
        {"id": c.id, "title": c.title, "opened_on": c.opened_on, "removed": c.id in removals}
        for c in campaigns
        if covers(
            c,
            manufacturer=battery["manufacturer"],
            model_id=battery.get("model_id"),
            serial=battery.get("serial_number"),
            vins=vins,
        )
    ]


async def molit_view(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per campaign: how many batteries it covers, how many were removed under it, how many remain."""
    return [
        c | {"affected": affected, "removed": removed, "remaining": affected - removed}
        for c, affected, removed in await repo.campaign_counts(conn)
    ]
