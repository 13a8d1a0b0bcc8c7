"""Reading the ledger: a battery's timeline, its current state, and the hash-chain check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.events.ledger import service
from services.events.lifecycle.schemas import StateOut, Timeline, VerifyOut
from shared.auth import CurrentPrincipal
from shared.db import SessionDep
from shared.pagination import Paging, page
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["ledger"], responses=PROBLEM_RESPONSES)


@router.get("/v1/batteries/{battery_id}/events", response_model=Timeline, summary="A battery's timeline")
async def get_timeline(
    battery_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    paging: Paging,
) -> dict[str, Any]:
    """Events in sequence order, each with its actor, data and hash. `next_cursor` pages on."""
    after = paging.after() or 0
    if not isinstance(after, int):
        after = 0
    rows, more = await service.timeline(session, request.app.state.registry, principal, battery_id, after, paging.limit)
    return page(rows, more, "sequence")


@router.get("/v1/batteries/{battery_id}/state", response_model=StateOut, summary="A battery's current state")
async def get_state(
    battery_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    return await service.state(session, request.app.state.registry, principal, battery_id)


@router.get("/v1/batteries/{battery_id}/verify", response_model=VerifyOut, summary="Recompute the hash chain")
async def verify(
    battery_id: str,
    request: Request,
    session: SessionDep,
    from_sequence: Annotated[int, Query(ge=1, le=2**62)] = 1,
    limit: Annotated[int, Query(ge=1, le=service.VERIFY_PAGE_MAX)] = service.VERIFY_PAGE_MAX,
) -> dict[str, Any]:
    """Anyone may verify: recomputes the hashes of a page of the chain (at most `limit` events from
    `from_sequence`, linked to the stored hash before it) and says where it breaks, if it does;
    `next_from_sequence` names the next page of a longer chain (null: the page reached the head)."""
    return await service.verify(session, request.app.state.registry, battery_id, from_sequence, limit)
