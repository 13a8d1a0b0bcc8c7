from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from services.portal.recalls import service
from shared import access
from shared.auth import CurrentPrincipal, Ministry
from shared.contract.recalls import Campaign
from shared.db import ReaderDep
from shared.problems import PROBLEM_RESPONSES, Forbidden

router = APIRouter(tags=["views"], responses=PROBLEM_RESPONSES)


class CampaignCounts(Campaign):
    affected: int
    removed: int
    remaining: int


class RecallsView(BaseModel):
    campaigns: list[CampaignCounts]


@router.get("/v1/views/molit/recalls", response_model=RecallsView, summary="MOLIT: recall campaigns and their progress")
async def molit_recalls(reader: ReaderDep, principal: CurrentPrincipal) -> Any:
    """Per campaign: the batteries it covers (maker, models, serial and VIN ranges), how many were removed
    under it (REMOVED with reason `recall` naming it) and how many remain in the field. MOLIT (and admin)."""
    if not access.may_see_ministry_view(principal, Ministry.MOLIT):
        raise Forbidden("This view is for MOLIT only.", code="wrong-ministry")
    return {"campaigns": await service.molit_view(reader)}
