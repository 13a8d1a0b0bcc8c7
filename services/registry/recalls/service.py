"""Registering recall campaigns (MOLIT or an admin) and publishing them on `battery.registry.v1`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.events import registry_message
from services.registry.models import SCHEMA
from services.registry.recalls import repository as repo
from services.registry.recalls.schemas import CampaignIn
from shared.auth import Ministry, Principal, Role
from shared.contract.recalls import Campaign
from shared.outbox import enqueue
from shared.problems import Conflict, Forbidden, NotFound

#: `kr.battery.registry.recall.registered.v1` (shared.contract.streams.RECALL_REGISTERED)
KIND = "recall.registered"


def may_register(principal: Principal) -> bool:
    return principal.role is Role.admin or (principal.role is Role.ministry and principal.ministry is Ministry.MOLIT)


async def register(session: AsyncSession, body: CampaignIn, principal: Principal) -> tuple[dict[str, Any], bool]:
    """(the campaign, whether it is new). The same campaign again is a harmless retry; another under its ID 409."""
    if not may_register(principal):
        raise Forbidden("Only MOLIT (or an admin) registers recall campaigns.", code="not-molit")
    facts = body.model_dump(mode="json")
    row = await repo.insert_campaign(session, body.model_dump() | {"registered_by": principal.org})
    if row is None:
        current = await repo.get_campaign(session, body.id)
        if current is not None and Campaign.model_validate(current).model_dump(mode="json") == facts:
            return current, False
        raise Conflict(f"Recall campaign '{body.id}' exists already with other facts.", code="duplicate-campaign")
    await enqueue(session, SCHEMA, [registry_message(KIND, body.id, facts, event_id=f"recall/{body.id}")])
    return row, True


async def get(session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    found = await repo.get_campaign(session, campaign_id)
    if found is None:
        raise NotFound(f"No recall campaign '{campaign_id}'.", code="unknown-campaign")
    return found


async def list_all(session: AsyncSession) -> list[dict[str, Any]]:
    return await repo.list_campaigns(session)
