from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from services.portal.vehicles import service
from services.portal.vehicles.schemas import Vehicle
from shared.auth import CurrentPrincipal
from shared.db import ReaderDep
from shared.problems import PROBLEM_RESPONSES
from shared.validation import IsoDatetime

router = APIRouter(tags=["vehicles"], responses=PROBLEM_RESPONSES)


@router.get(
    "/v1/vehicles/{vin}",
    response_model=Vehicle,
    response_model_by_alias=True,
    summary="A vehicle's batteries, now or at a moment, and their history",
)
async def get_vehicle(
    vin: Annotated[str, Path(max_length=64, description="The VIN (ISO 3779), or its pseudonym.")],
    reader: ReaderDep,
    principal: CurrentPrincipal,
    at: Annotated[IsoDatetime | None, Query(description="Answer for this past moment instead of now.")] = None,
) -> Any:
    """Installation is a relation: INSTALLED starts it, REMOVED ends it; a pack replacement ends the old
    pack's and starts the new one's in the same VIN (the change registration). MOLIT, the other ministries
    and admin read every vehicle; the OEM that installed one of its batteries and the current or past
    custodians of them read it too. Anyone else gets 404 `unknown-vehicle`, as for a VIN nobody knows."""
    return await service.vehicle(reader, principal, vin, at)
