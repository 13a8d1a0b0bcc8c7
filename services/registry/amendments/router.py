"""Amending a battery's registry facts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.registry.amendments import service
from services.registry.amendments.schemas import AmendmentIn, AmendmentList, AmendmentOut
from shared.auth import OPTIONAL_BEARER, OptionalPrincipal, Principal, require_role
from shared.db import SessionDep
from shared.limits import create_route
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["amendments"], responses=PROBLEM_RESPONSES)
#: Who may amend at all (decided before the body is read); which batteries, in the service (its manufacturer's own).
Amender = Annotated[Principal, Depends(require_role(*service.AMENDERS))]
#: Largest legal body: five facts (the material and share objects at full precision) and a 1,000-character
#: reason, every character a `\\u` escape: under 8 KiB.
AMENDMENT_BYTES = 8_192


@create_route(
    router,
    "/v1/batteries/{battery_id}/amendments",
    AmendmentOut,
    "Amend a battery's registry facts",
    limit=AMENDMENT_BYTES,
)
async def amend(battery_id: str, body: AmendmentIn, session: SessionDep, principal: Amender) -> Any:
    """The battery's manufacturer or an authority corrects registry facts (manufacture date, site, material
    content, recycled content, carbon footprint). Nothing is edited in place: the amendment is a record (who, when,
    why, each fact before and after), the fact's current value is its latest amendment, and the amendment is
    published on `battery.registry.v1` (the portal's history and passport show it). 422 `changes.<field>` rule
    `amendable` for a fact that is not amendable, `changes-something` for a value it has already; 403
    `not-the-manufacturer` for anyone else."""
    return await service.amend(session, battery_id, body, principal)


@router.get(
    "/v1/batteries/{battery_id}/amendments",
    response_model=AmendmentList,
    summary="A battery's amendments, oldest first",
    openapi_extra=OPTIONAL_BEARER,
)
async def amendments(battery_id: str, session: SessionDep, principal: OptionalPrincipal) -> Any:
    """Commercial facts' values (material content) only for those who see the full record."""
    return {"items": await service.amendments_of(session, principal, battery_id)}
