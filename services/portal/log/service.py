"""The checkpoint read side: the newest checkpoint with its cosigners and the ministries they stand for."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.log import repository as repo
from services.portal.log.projection import ministry_of
from shared.problems import NotFound


async def latest_or_none(session: AsyncSession) -> dict[str, Any] | None:
    found = await repo.latest(session)
    if found is None:
        return None
    row, witnesses = found
    cosigners = [{"witness": w, "ministry": ministry_of(w)} for w in witnesses]
    ministries = sorted({c["ministry"] for c in cosigners if c["ministry"] is not None})
    return {**row, "cosigned_by": cosigners, "ministries": ministries}


async def latest(session: AsyncSession) -> dict[str, Any]:
    found = await latest_or_none(session)
    if found is None:
        raise NotFound("No log checkpoint has reached the portal yet.", code="no-checkpoint")
    return found
