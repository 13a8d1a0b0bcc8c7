"""Every query of the recall domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.recalls.models import RecallCampaign
from shared.db import row_dict

campaigns = RecallCampaign.__table__


async def insert_campaign(session: AsyncSession, row: dict[str, Any]) -> dict[str, Any] | None:
    """The new campaign, or None if its ID is taken."""
    stmt = insert(campaigns).values(**row).on_conflict_do_nothing().returning(*campaigns.c)
    found = (await session.execute(stmt)).mappings().first()
    return row_dict(found) if found else None


async def get_campaign(session: AsyncSession, campaign_id: str) -> dict[str, Any] | None:
    found = (await session.execute(select(campaigns).where(campaigns.c.id == campaign_id))).mappings().first()
    return row_dict(found) if found else None


async def list_campaigns(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(campaigns).order_by(campaigns.c.opened_on.desc(), campaigns.c.id))).mappings()
    return [row_dict(r) for r in rows]
