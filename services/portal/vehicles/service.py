"""A vehicle's batteries now or at a moment, their installation history, and VINs as those allowed see them.

A VIN is looked up by its plain form (mapped to its pseudonym through the portal's copy of
`battery.vins.v1`) or by its pseudonym (after an erasure only the pseudonym finds the vehicle). Who may read
a vehicle: `shared.access.may_read_vehicle`; anyone else gets the same 404 as for an unknown VIN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.ingest.projection import Message
from services.portal.ingest.schemas import VinIn
from services.portal.vehicles import relation
from services.portal.vehicles import repository as repo
from services.portal.vehicles.relation import Installation
from shared import access
from shared.auth import Principal
from shared.db import raw_connection
from shared.problems import NotFound, Unprocessable, field_error
from shared.vin import is_pseudonym, normalise, vin_problem

ERASED = "erased"


def _unknown(vin: str) -> NotFound:
    return NotFound(f"No vehicle you may read is known as '{vin}'.", code="unknown-vehicle")


async def pseudonym_for(conn: asyncpg.Connection, query: str) -> str:
    """What the ledger holds for a typed VIN (or a pseudonym itself): its pseudonym if the portal knows the VIN,
    else the VIN itself (a record from before pseudonyms holds the plain VIN; after an erasure nothing does).
    422 for what is neither a VIN nor a pseudonym."""
    if is_pseudonym(query):
        return query
    vin = normalise(query)
    problem = vin_problem(vin)
    if problem:
        raise Unprocessable(f"vin: {problem}.", code="invalid-vin", errors=[field_error("vin", "iso-3779", problem)])
    return await repo.pseudonym_of(conn, vin) or vin


def visible(
    principal: Principal, found: Sequence[Installation], timelines: Mapping[str, Sequence[Any]]
) -> list[Installation]:
    """What of a vehicle's installations the principal sees: all for an authority; for the OEM that installed
    a battery or a custodian of one (shared.access.may_read_vehicle), those batteries only; else none."""
    custodians = {bid: {e["custodian_after"] for e in events} for bid, events in timelines.items()}
    installed_one = any(i.installed_by == principal.org for i in found)
    held_one = any(principal.org in custodians.get(i.battery_id, set()) for i in found)
    if not access.may_read_vehicle(principal, installed_one=installed_one, held_one=held_one):
        return []
    if access.sees_every_vehicle(principal):
        return list(found)
    return relation.concerning(found, principal.org, custodians)


async def vehicle(conn: asyncpg.Connection, principal: Principal, query: str, at: datetime | None) -> dict[str, Any]:
    if at is not None and at.tzinfo is None:
        raise Unprocessable("at: needs a time zone", errors=[field_error("at", "timezone_aware", "needs a time zone")])
    when = at or datetime.now(UTC)
    pseudonym = await pseudonym_for(conn, query)
    timelines = await repo.timelines_in(conn, pseudonym)
    found = visible(principal, relation.of_vehicle(pseudonym, timelines), timelines)
    if not found:
        raise _unknown(query)
    known = (await repo.vins_of(conn, [pseudonym])).get(pseudonym)
    legacy = not is_pseudonym(pseudonym)  # a record from before pseudonyms holds the plain VIN
    return {
        "vin": pseudonym if legacy else known["vin"] if known else None,
        "vin_pseudonym": None if legacy else pseudonym,
        "vin_erased": bool(known and known["erased_at"] is not None),
        "at": when,
        "batteries": [i.battery_id for i in relation.installed_at(found, when)],
        "history": [
            {
                "battery_id": i.battery_id,
                "installed_by": i.installed_by,
                "from": i.since,
                "until": i.until,
                "removal_reason": i.removal_reason,
                "recall_campaign": i.recall_campaign,
            }
            for i in found
        ],
    }


async def battery_for_vin(conn: asyncpg.Connection, query: str, at: datetime | None = None) -> str | None:
    """What a VIN look-up answers: a battery installed in the vehicle at `at` (now if None; the first by ID if
    it holds several), else the one installed last before then (a vehicle whose pack is out, not replaced)."""
    pseudonym = await pseudonym_for(conn, query)
    found = relation.of_vehicle(pseudonym, await repo.timelines_in(conn, pseudonym))
    return relation.answer_at(found, at or datetime.now(UTC))


async def shown_vins(conn: asyncpg.Connection, pseudonyms: Sequence[str]) -> dict[str, str]:
    """What a reader who may see a battery's vehicle is shown for each pseudonym: the plain VIN, or 'erased'
    (absent while its record is on its way). A value that is not a pseudonym (a record from before
    pseudonyms) is shown as it is."""
    wanted = sorted({p for p in pseudonyms if is_pseudonym(p)})
    known = await repo.vins_of(conn, wanted) if wanted else {}
    out = {p: p for p in pseudonyms if not is_pseudonym(p)}
    for p in wanted:
        row = known.get(p)
        if row is not None:
            out[p] = row["vin"] or ERASED
    return out


# ---- ingest: battery.vins.v1 ----
async def apply_vins(session: AsyncSession, messages: Sequence[Message]) -> None:
    """VIN records and tombstones, in stream order (idempotent: the last word on each pseudonym wins)."""
    vins: dict[str, str | None] = {}
    for m in messages:
        body = m.body
        assert isinstance(body, VinIn)
        vins.pop(body.pseudonym, None)
        vins[body.pseudonym] = body.vin
    if vins:
        await repo.record_vins(await raw_connection(session), vins)
