from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.portal.passports import service
from services.portal.passports.schemas import Passport
from shared.auth import OPTIONAL_BEARER, OptionalPrincipal
from shared.db import SessionDep
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["passports"], responses=PROBLEM_RESPONSES)


@router.get(
    "/v1/passports/{battery_id}",
    response_model=Passport,
    summary="Battery passport for your access level",
    openapi_extra=OPTIONAL_BEARER,
)
async def get_passport(battery_id: str, session: SessionDep, principal: OptionalPrincipal) -> dict[str, Any]:
    """Without a token: the public passport. With one, by EU access level: `legitimate_interest`
    (dismantler, collector, assessor, repurposer, remanufacturer or recycler that handled this battery) adds
    material masses and condition; `authority` (ministry, certifier, admin) adds the lifecycle record; the
    battery's own `manufacturer` sees everything, manufacturing details included."""
    return await service.passport(session, principal, battery_id)
