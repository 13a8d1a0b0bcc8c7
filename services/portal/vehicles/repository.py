"""Reads and writes of the vehicle domain: plain VINs by pseudonym and back, and the timelines of the
batteries ever installed into a vehicle (an indexed look-up on INSTALLED's pseudonym)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from services.portal.models import Event
from services.portal.vehicles.models import Vin
from shared.db import qualified

VINS = qualified(Vin.__table__)
EVENTS = qualified(Event.__table__)

#: Batteries ever installed into the vehicle (ix_events_installed_vin).
INSTALLED_INTO = f"SELECT DISTINCT battery_id FROM {EVENTS} WHERE type = 'INSTALLED' AND data->>'vin' = $1"
TIMELINES = f"SELECT * FROM {EVENTS} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, sequence"


async def pseudonym_of(conn: asyncpg.Connection, vin: str) -> str | None:
    found: str | None = await conn.fetchval(f"SELECT pseudonym FROM {VINS} WHERE vin = $1", vin)
    return found


async def vins_of(conn: asyncpg.Connection, pseudonyms: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(f"SELECT * FROM {VINS} WHERE pseudonym = ANY($1::text[])", list(pseudonyms))
    return {r["pseudonym"]: dict(r) for r in rows}


async def timelines_in(conn: asyncpg.Connection, pseudonym: str) -> dict[str, list[dict[str, Any]]]:
    """The timeline of every battery ever installed into the vehicle."""
    ids = [r["battery_id"] for r in await conn.fetch(INSTALLED_INTO, pseudonym)]
    out: dict[str, list[dict[str, Any]]] = {bid: [] for bid in ids}
    if ids:
        for r in await conn.fetch(TIMELINES, ids):
            out[r["battery_id"]].append(dict(r))
    return out


#: VIN records (a VIN) and tombstones (NULL: erased), one statement, applied in the order given (WITH ORDINALITY: a
#: VIN may move to another pseudonym once the old one's tombstone has freed it, ix_vins_vin).
_RECORD_VINS = (
    f"INSERT INTO {VINS} (pseudonym, vin, erased_at) "
    "SELECT p, v, CASE WHEN v IS NULL THEN now() END FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(p, v, n) "
    "ORDER BY n ON CONFLICT (pseudonym) DO UPDATE SET vin = excluded.vin, erased_at = excluded.erased_at, "
    "updated_at = now()"
)


async def record_vins(conn: asyncpg.Connection, vins: dict[str, str | None]) -> None:
    """Apply VIN records (pseudonym → VIN) and tombstones (pseudonym → None), in the order given."""
    if vins:
        await conn.execute(_RECORD_VINS, list(vins), list(vins.values()))
