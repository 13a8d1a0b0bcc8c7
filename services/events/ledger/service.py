"""Reading the ledger: a battery's timeline and current state (for those who may read it), and the
hash-chain check (for anyone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.events.ledger import repository as repo
from services.events.lifecycle.rules import allowed_events
from services.events.lifecycle.service import RegistryLookup, current_state
from shared import access
from shared.access import FieldGroup
from shared.auth import Principal, readable_groups
from shared.contract.lifecycle import GENESIS, State, verify_chain
from shared.pagination import split_page
from shared.problems import NotFound


async def check_may_read(session: AsyncSession, principal: Principal, battery_id: str) -> frozenset[FieldGroup]:
    """Ministries, admin and operators read every ledger; a participant those of the batteries the ledger
    proves a relation to (shared.access). Answers what of it the principal reads."""
    return await readable_groups(
        principal,
        lambda: repo.relation_of(session, battery_id, principal.org),
        f"{principal.org} has no relation the ledger proves (manufacturer, custodian, consignee, certifier) "
        f"to battery {battery_id}.",
    )


def visible_events(rows: list[dict[str, Any]], groups: frozenset[FieldGroup]) -> list[dict[str, Any]]:
    """A timeline cut to the principal's field groups: a certifier only reads the certification events."""
    if FieldGroup.condition in groups:
        return rows
    return [r for r in rows if r["type"] in access.CERTIFICATION_EVENTS]


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
    groups = await check_may_read(session, principal, battery_id)
    page, more = split_page(rows, limit)
    return visible_events(page, groups), more


async def state(
    session: AsyncSession, registry: RegistryLookup, principal: Principal, battery_id: str
) -> dict[str, Any]:
    """The current state, custodian and grade, and the events that may follow."""
    found = await current_state(session, battery_id, registry)
    if found is None:
        raise _unknown(battery_id)
    await check_may_read(session, principal, battery_id)  # a certifier of it too: it certifies this state
    return found | {
        "allowed_events": allowed_events(State(found["state"]), found.get("grade"), found.get("pre_removal_grade"))
    }


#: The most events one /verify answer re-hashes (its page); a longer chain is checked page by page.
VERIFY_PAGE_MAX = 1000


async def verify(
    session: AsyncSession,
    registry: RegistryLookup,
    battery_id: str,
    from_sequence: int = 1,
    limit: int = VERIFY_PAGE_MAX,
) -> dict[str, Any]:
    """Recomputes the hashes of at most `limit` events from `from_sequence` on (bounded work for a public
    endpoint) and says where the chain breaks in that page, if it does, and where the next page starts."""
    limit = max(1, min(limit, VERIFY_PAGE_MAX))
    rows = await repo.chain_page(session, battery_id, from_sequence, limit + 1)
    if not rows and from_sequence == 1:
        if await current_state(session, battery_id, registry) is None:
            raise _unknown(battery_id)
        rows = await repo.chain_page(session, battery_id, from_sequence, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    prev = GENESIS if from_sequence == 1 else await repo.hash_at(session, battery_id, from_sequence - 1)
    if prev is None:
        raise NotFound(
            f"Battery '{battery_id}' has no event {from_sequence - 1}: start a page within the chain.",
            code="beyond-chain",
        )
    valid, broken_at, reason, count, head = verify_chain(rows, from_sequence=from_sequence, prev=prev)
    return {
        "battery_id": battery_id,
        "valid": valid,
        "events": count,
        "head_hash": head,
        "broken_at_sequence": broken_at,
        "reason": reason,
        "from_sequence": from_sequence,
        "next_from_sequence": from_sequence + count if more and valid else None,
    }
