from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.portal.history import service
from services.portal.history.schemas import BatterySearch, BatterySearchPage, History
from shared.auth import CurrentPrincipal
from shared.db import ReaderDep, SessionDep
from shared.pagination import Paging, page
from shared.problems import PROBLEM_RESPONSES
from shared.responses import DirectJSON
from shared.validation import IsoDatetime

router = APIRouter(tags=["history"], responses=PROBLEM_RESPONSES)


@router.get("/v1/batteries/{battery_id}/history", response_model=History, summary="A battery's whole life")
async def get_history(
    battery_id: str,
    reader: ReaderDep,
    principal: CurrentPrincipal,
    at: Annotated[
        IsoDatetime | None, Query(description="Show the composition (and state) as it was at this time.")
    ] = None,
    alias: Annotated[
        str | None,
        Query(max_length=512, description="Find the battery by an alias instead (VIN, GS1 Digital Link, EPC)."),
    ] = None,
) -> Response:
    """Registry facts, aliases, the composition tree (now or `?at=`), every event in order with its actor,
    the current state, custodian and grade, the hash-chain linkage, the passports of each life, and
    `as_of`: the last event applied. With `?alias=` the path ID is ignored (use `-`).

    Authorities (ministries, certifiers, admin) and operators see every battery; other participants the
    batteries they made or handled (403 otherwise)."""
    return DirectJSON(await service.history(reader, principal, battery_id, alias=alias, at=at))


@router.get("/v1/batteries", response_model=BatterySearchPage, summary="Search batteries (cursor pagination)")
async def search(
    session: SessionDep, principal: CurrentPrincipal, paging: Paging, f: Annotated[BatterySearch, Query()]
) -> dict[str, Any]:
    """Filters combine with AND. Participants other than authorities and operators find only the batteries
    they made or handled."""
    rows, more = await service.search(session, principal, f, paging.after(str), paging.limit)
    return page(rows, more, "id")
