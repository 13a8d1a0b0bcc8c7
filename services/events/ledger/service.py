"""Reading the ledger: a battery's timeline and current state (for those who may read it), and the
hash-chain check (for anyone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.events.ledger import repository as repo
from services.events.lifecycle.rules import allowed_events
from services.events.lifecycle.service import RegistryLookup, current_state
from shared import access
from shared.auth import Principal
from shared.contract.lifecycle import State, verify_chain
from shared.pagination import split_page
from shared.problems import Forbidden, NotFound


async def check_may_read(session: AsyncSession, principal: Principal, battery_id: str) -> None:
    """Authorities and operators read every ledger; a participant those of the batteries it handled."""
    if access.sees_every_battery(principal):
        return  # without asking the ledger
    relation = access.Relation(handled=await repo.handled_by(session, battery_id, principal.org))
    if not access.may_read_battery(principal, relation):
        raise Forbidden(f"{principal.org} has not handled battery {battery_id}.", code="not-handled")


def _unknown(battery_id: str) -> NotFound:
    return NotFound(f"No battery '{battery_id}' has a ledger here.", code="unknown-battery")


async def timeline(
    session: AsyncSession, registry: RegistryLookup, principal: Principal, battery_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` events after sequence `after`, and whether more follow. A battery the registry knows
    whose ledger has not started here yet is started (current_state); one nobody knows is 404 before any
    access question."""
    rows = await repo.timeline(session, battery_id, after, limit + 1)
    if not rows and after == 0:
        if await current_state(session, battery_id, registry) is None:
            raise _unknown(battery_id)
        rows = await repo.timeline(session, battery_id, after, limit + 1)
    await check_may_read(session, principal, battery_id)
    return split_page(rows, limit)


async def state(
    session: AsyncSession, registry: RegistryLookup, principal: Principal, battery_id: str
) -> dict[str, Any]:
    """The current state, custodian and grade, and the events that may follow."""
    found = await current_state(session, battery_id, registry)
    if found is None:
        raise _unknown(battery_id)
    await check_may_read(session, principal, battery_id)
    return found | {"allowed_events": allowed_events(State(found["state"]), found.get("grade"))}


async def verify(session: AsyncSession, registry: RegistryLookup, battery_id: str) -> dict[str, Any]:
    """Recomputes every hash from sequence 1 and says where the chain breaks, if it does."""
    rows = await repo.whole_chain(session, battery_id)
    if not rows:
        if await current_state(session, battery_id, registry) is None:
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
