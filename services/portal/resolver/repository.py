"""The resolver's reads: exact look-ups on indexed keys only (tests/attacks/test_resolver.py EXPLAINs each)."""

from __future__ import annotations

import asyncpg

from services.portal.models import DIGITAL_LINK_GTIN, DIGITAL_LINK_KEY, SCHEMA

#: A serial-level link: the battery whose Digital Link alias has this `<GTIN-14>/<serial>` key.
BY_KEY = (
    f"SELECT battery_id, value FROM {SCHEMA}.aliases "
    f"WHERE scheme = 'gs1_digital_link' AND {DIGITAL_LINK_KEY} = $1 LIMIT 2"
)
#: A product-level link: one battery carrying this GTIN (they share the model's declaration).
BY_GTIN = (
    f"SELECT battery_id FROM {SCHEMA}.aliases WHERE scheme = 'gs1_digital_link' AND {DIGITAL_LINK_GTIN} = $1 LIMIT 1"
)
#: A battery's own Digital Link (for its QR code).
OF_BATTERY = (
    f"SELECT value FROM {SCHEMA}.aliases WHERE battery_id = $1 AND scheme = 'gs1_digital_link' ORDER BY value LIMIT 1"
)


async def by_key(conn: asyncpg.Connection, key: str) -> tuple[str, str] | None:
    """The battery and its alias when exactly one alias has `key` (two would be ambiguous: none answered)."""
    rows = await conn.fetch(BY_KEY, key)
    return (rows[0]["battery_id"], rows[0]["value"]) if len(rows) == 1 else None


async def by_gtin(conn: asyncpg.Connection, gtin: str) -> str | None:
    found: str | None = await conn.fetchval(BY_GTIN, gtin)
    return found


async def link_of(conn: asyncpg.Connection, battery_id: str) -> str | None:
    found: str | None = await conn.fetchval(OF_BATTERY, battery_id)
    return found
