"""Passports, the shell: fetch the battery, its ledger and the parties, decide the caller's level, and let
`compose.build` make the passport of the life asked for (the current one, or any by its own ID)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.history import repository as history_repo
from services.portal.history.service import in_effect, lives, locate, relation
from services.portal.passports import compose
from services.portal.passports import repository as repo
from services.portal.recalls import service as recalls
from shared.access import Level, Relation, passport_level
from shared.auth import Principal
from shared.db import raw_connection
from shared.problems import NotFound

#: `urn:batterytrace:<32 hex>` (Battery Pass) or `urn:uuid:<UUID>` (Catena-X): the same passport ID.
PASSPORT_ID_MAX = 64


async def passport(
    session: AsyncSession, principal: Principal | None, battery_id: str, life: int | None = None
) -> dict[str, Any]:
    """The passport of the battery's current life (or of `life`) at the caller's level."""
    conn = await raw_connection(session)
    battery = await locate(conn, battery_id, None)
    bid = battery["id"]
    if not battery["registered"]:
        raise NotFound(f"Battery '{bid}' has no registration in the portal yet.", code="unknown-battery")
    proved = await relation(conn, principal.org, battery) if principal is not None else Relation()
    level = passport_level(principal, proved)
    events = await history_repo.timeline(conn, bid)
    every = lives(bid, events)
    if life is not None and life >= len(every):  # its ID outlives a life a declaration took back: none now
        raise NotFound("No such passport: the life it was issued for was declared in error.", code="unknown-passport")
    chosen = every[-1] if life is None else every[life]
    ours = compose.life_events(in_effect(events), chosen)
    operator = compose.operator_of(battery, ours)
    parties = await history_repo.participants_by_id(session, (battery["manufacturer"], operator))
    declared = await repo.declaration(conn, battery)
    amendments = await history_repo.amendments_of(conn, bid)
    authority = compose.RANK.index(level) >= compose.RANK.index(Level.authority)
    covering = await recalls.of_battery(conn, battery) if authority else []  # the recall campaigns covering it
    return compose.build(battery, events, chosen, parties, level, declared, amendments, covering)


def canonical_id(passport_id: str) -> str | None:
    """The Battery Pass form of a passport ID given in either form, or None when it is neither."""
    import uuid

    if len(passport_id) > PASSPORT_ID_MAX:
        return None
    prefix, _, rest = passport_id.rpartition(":")
    if prefix not in ("urn:batterytrace", "urn:uuid"):
        return None
    try:
        found = uuid.UUID(rest)
    except ValueError:
        return None
    if prefix == "urn:batterytrace" and rest != found.hex:
        return None
    return f"urn:batterytrace:{found.hex}"


async def passport_by_id(session: AsyncSession, principal: Principal | None, passport_id: str) -> dict[str, Any]:
    """Any life's passport by its own ID (exact look-up of the key), at the caller's level."""
    key = canonical_id(passport_id)
    found = await repo.by_id(await raw_connection(session), key) if key is not None else None
    if found is None:
        raise NotFound(f"No passport '{passport_id[:PASSPORT_ID_MAX]}'.", code="unknown-passport")
    battery_id, life = found
    return await passport(session, principal, battery_id, life)
