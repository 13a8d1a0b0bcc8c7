from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.portal.views import service
from services.portal.views.schemas import KatsView, McceeView, MolitView, MotieView
from shared import access
from shared.auth import CurrentPrincipal, Ministry, Principal
from shared.db import SessionDep
from shared.problems import PROBLEM_RESPONSES, Forbidden
from shared.validation import IsoDate

router = APIRouter(tags=["views"], responses=PROBLEM_RESPONSES)


def only(code: Ministry) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only that ministry's token (and admin)."""

    async def dep(principal: CurrentPrincipal) -> Principal:
        if access.may_see_ministry_view(principal, code):
            return principal
        raise Forbidden(f"This view is for {code.value} only.", code="wrong-ministry")

    return dep


async def period(
    start: Annotated[
        IsoDate | None, Query(alias="from", description="First day of the period (its month counts).")
    ] = None,
    end: Annotated[IsoDate | None, Query(alias="to", description="Last day of the period (its month counts).")] = None,
    region: Annotated[str | None, Query(description="Region code, e.g. KR-41.")] = None,
) -> service.Period:
    return service.Period(start, end, region)


PeriodDep = Annotated[service.Period, Depends(period)]
MotieOnly = Annotated[Principal, Depends(only(Ministry.MOTIE))]
MolitOnly = Annotated[Principal, Depends(only(Ministry.MOLIT))]
MceeOnly = Annotated[Principal, Depends(only(Ministry.MCEE))]
KatsOnly = Annotated[Principal, Depends(only(Ministry.KATS))]


@router.get("/v1/views/motie", response_model=MotieView, summary="MOTIE: production, outcomes, recovered minerals")
async def motie(session: SessionDep, _: MotieOnly, p: PeriodDep) -> dict[str, Any]:
    """Registrations and kWh by manufacturer, chemistry and month; reuse / remanufacture / recycle
    outcomes; recovered Li, Ni, Co, Mn by month; declared recycled content."""
    return await service.motie(session, p)


@router.get("/v1/views/molit", response_model=MolitView, summary="MOLIT: vehicles, inspections, removals, incidents")
async def molit(session: SessionDep, _: MolitOnly, p: PeriodDep) -> dict[str, Any]:
    """Batteries in service now, installations, inspections and the SoH distribution, removals by reason,
    incidents — by region."""
    return await service.molit(session, p)


@router.get("/v1/views/mcee", response_model=McceeView, summary="MCEE: collection, backlogs, recycling, recovery")
async def mcee(session: SessionDep, _: MceeOnly, p: PeriodDep) -> dict[str, Any]:
    """Collected by region and centre; backlogs now (removed and not collected, collected and not graded,
    and those waiting over 30 days); recycling outcomes; recovery rate per material (recovered ÷ declared
    content of the batteries recycled) against the EU targets; disposals."""
    return await service.mcee(session, p)


@router.get("/v1/views/kats", response_model=KatsView, summary="KATS: reused batteries and their safety")
async def kats(session: SessionDep, _: KatsOnly, p: PeriodDep) -> dict[str, Any]:
    """Repurposed and remanufactured batteries now by safety-inspection status; safety inspections by
    result and body; grade distribution; incidents after reuse."""
    return await service.kats(session, p)
