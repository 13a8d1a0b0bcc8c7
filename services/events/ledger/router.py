"""Reading the ledger: a battery's timeline, its current state, and the hash-chain check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.events.ledger import repository as repo
from services.events.lifecycle.rules import allowed_events
from services.events.lifecycle.schemas import StateOut, Timeline, VerifyOut
from services.events.lifecycle.service import current_state
from shared.auth import CurrentPrincipal, Principal
from shared.contract.lifecycle import State, verify_chain
from shared.db import SessionDep
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, Forbidden, NotFound

router = APIRouter(tags=["ledger"], responses=PROBLEM_RESPONSES)


async def _may_read(session: SessionDep, battery_id: str, principal: Principal) -> None:
    """Authorities and operators read every ledger; a participant reads those of batteries it made,
    held or posted events for (legitimate interest)."""
    if principal.sees_everything or await repo.handled_by(session, battery_id, principal.org):
        return
    raise Forbidden(f"{principal.org} has not handled battery {battery_id}.", code="not-handled")


def _unknown(battery_id: str) -> NotFound:
    return NotFound(f"No battery '{battery_id}' has a ledger here.", code="unknown-battery")


@router.get("/v1/batteries/{battery_id}/events", response_model=Timeline, summary="A battery's timeline")
async def get_timeline(
    battery_id: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Events in sequence order, each with its actor, data and hash. `next_cursor` pages on."""
    after = decode_cursor(cursor) or 0
    if not isinstance(after, int):
        after = 0
    rows = await repo.timeline(session, battery_id, after, limit + 1)
    if not rows and after == 0:
        if await current_state(session, battery_id, request.app.state.registry) is None:
            raise _unknown(battery_id)
        rows = await repo.timeline(session, battery_id, after, limit + 1)
    await _may_read(session, battery_id, principal)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_cursor": encode_cursor(rows[-1]["sequence"]) if more else None}


@router.get("/v1/batteries/{battery_id}/state", response_model=StateOut, summary="A battery's current state")
async def get_state(
    battery_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    state = await current_state(session, battery_id, request.app.state.registry)
    if state is None:
        raise _unknown(battery_id)
    await _may_read(session, battery_id, principal)
    return state | {"allowed_events": allowed_events(State(state["state"]), state.get("grade"))}


@router.get("/v1/batteries/{battery_id}/verify", response_model=VerifyOut, summary="Recompute the hash chain")
async def verify(battery_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    """Anyone may verify: recomputes every hash from sequence 1 and says where the chain breaks, if it does."""
    rows = await repo.whole_chain(session, battery_id)
    if not rows:
        if await current_state(session, battery_id, request.app.state.registry) is None:
            raise _unknown(battery_id)
        rows = await repo.whole_chain(session, battery_id)
    valid, broken_at, reason, count, head = verify_chain(rows)
    return {
        "battery_id": battery_id,
        "valid": valid,
        "events": count,
        "head_hash": head,
        "broken_at_sequence": broken_at,
        "reason": reason,
    }
