from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from services.registry.participants import service
from services.registry.participants.schemas import ParticipantIn, ParticipantOut, ParticipantPage
from shared.auth import CurrentPrincipal, Ministry, Principal, Role, require_role
from shared.db import SessionDep
from shared.pagination import decode_cursor, page
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/participants", tags=["participants"], responses=PROBLEM_RESPONSES)
Admin = Annotated[Principal, Depends(require_role(Role.admin))]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ParticipantOut, summary="Register a participant")
async def create_participant(body: ParticipantIn, session: SessionDep, _: Admin) -> dict[str, object]:
    """Administrators register participants: organisations with one role (and a ministry code for
    ministries). 409 if the ID exists."""
    return await service.create_participant(session, body)


@router.get("/{participant_id}", response_model=ParticipantOut, summary="One participant")
async def get_participant(participant_id: str, session: SessionDep, _: CurrentPrincipal) -> dict[str, object]:
    return await service.get_participant(session, participant_id)


@router.get("", response_model=ParticipantPage, summary="List participants")
async def list_participants(
    session: SessionDep,
    _: CurrentPrincipal,
    role: Role | None = None,
    ministry: Ministry | None = None,
    region: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, object]:
    rows, more = await service.list_participants(
        session,
        role=role.value if role else None,
        ministry=ministry.value if ministry else None,
        region=region,
        after=decode_cursor(cursor, str),
        limit=limit,
    )
    return page(rows, more, "id")
