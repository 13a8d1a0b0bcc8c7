from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from services.registry.recalls import service
from services.registry.recalls.schemas import CampaignIn, CampaignOut
from shared.auth import CurrentPrincipal, Principal
from shared.db import SessionDep
from shared.limits import create_route
from shared.problems import PROBLEM_RESPONSES, Forbidden

router = APIRouter(prefix="/v1/recalls", tags=["recalls"], responses=PROBLEM_RESPONSES)


async def molit_or_admin(principal: CurrentPrincipal) -> Principal:
    """Checked before the body is read: only MOLIT (or an admin) registers campaigns."""
    if not service.may_register(principal):
        raise Forbidden("Only MOLIT (or an admin) registers recall campaigns.", code="not-molit")
    return principal


Registrar = Annotated[Principal, Depends(molit_or_admin)]


@create_route(
    router,
    "",
    CampaignOut,
    "Register a recall campaign (MOLIT, admin)",
    limit=64 * 1024,
    responses={200: {"model": CampaignOut, "description": "The same campaign was registered before (idempotent)."}},
)
async def register(body: CampaignIn, session: SessionDep, principal: Registrar, response: Response) -> Any:
    """A campaign names a maker, optionally models, serial ranges and VIN ranges, and its opening date. It is
    published on `battery.registry.v1`; a REMOVED with reason `recall` then names it (`data.recall_campaign`),
    and the portal shows it on the batteries it covers. Registering the same campaign again answers 200."""
    row, created = await service.register(session, body, principal)
    if not created:
        response.status_code = status.HTTP_200_OK
    return row


@router.get("", response_model=list[CampaignOut], summary="Every recall campaign (signed in)")
async def list_campaigns(session: SessionDep, _: CurrentPrincipal) -> Any:
    return await service.list_all(session)


@router.get("/{campaign_id}", response_model=CampaignOut, summary="One recall campaign (signed in)")
async def get_campaign(campaign_id: str, session: SessionDep, _: CurrentPrincipal) -> Any:
    return await service.get(session, campaign_id)
