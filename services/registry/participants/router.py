from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.registry.participants import service
from services.registry.participants.schemas import ParticipantFilter, ParticipantIn, ParticipantOut, ParticipantPage
from shared.auth import CurrentPrincipal, Principal, Role, require_role
from shared.db import SessionDep
from shared.limits import create_route
from shared.pagination import PageQuery, page, paging
from shared.participants import ParticipantStatus, directory
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/participants", tags=["participants"], responses=PROBLEM_RESPONSES)
Admin = Annotated[Principal, Depends(require_role(Role.admin))]
Paging = Annotated[PageQuery, Depends(paging(most=500))]


# The limit: names and codes, with room for a list of GS1 company prefixes.
@create_route(router, "", ParticipantOut, "Register a participant", limit=16 * 1024)
async def create_participant(body: ParticipantIn, session: SessionDep, _: Admin) -> dict[str, object]:
    """Administrators register participants: organisations with one role (and a ministry code for
    ministries). 409 if the ID exists."""
    return await service.create_participant(session, body)


@router.post("/{participant_id}/suspend", response_model=ParticipantOut, summary="Suspend a participant")
async def suspend_participant(
    participant_id: str, request: Request, session: SessionDep, _: Admin
) -> dict[str, object]:
    """Administrators suspend a participant: its tokens stop working in every service within a minute (the
    suspension goes out on battery.registry.v1; each service caches participants for `participants_ttl_s`), and
    it may no longer receive custody."""
    row = await service.set_status(session, participant_id, ParticipantStatus.suspended)
    _forget(request, participant_id)
    return row


@router.post("/{participant_id}/reactivate", response_model=ParticipantOut, summary="Lift a suspension")
async def reactivate_participant(
    participant_id: str, request: Request, session: SessionDep, _: Admin
) -> dict[str, object]:
    row = await service.set_status(session, participant_id, ParticipantStatus.active)
    _forget(request, participant_id)
    return row


def _forget(request: Request, participant_id: str) -> None:
    found = directory(request)
    if found is not None:
        found.forget(participant_id)


@router.get("/{participant_id}", response_model=ParticipantOut, summary="One participant")
async def get_participant(participant_id: str, session: SessionDep, _: CurrentPrincipal) -> dict[str, object]:
    return await service.get_participant(session, participant_id)


@router.get("", response_model=ParticipantPage, summary="List participants")
async def list_participants(
    session: SessionDep, _: CurrentPrincipal, page_query: Paging, f: Annotated[ParticipantFilter, Query()]
) -> dict[str, object]:
    rows, more = await service.list_participants(session, f, page_query.after(str), page_query.limit)
    return page(rows, more, "id")
