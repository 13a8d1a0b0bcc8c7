from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle.models import BatteryState, LedgerEntry
from shared.access import Custody, Relation
from shared.db import json_value, qualified, raw_connection, select_list

_ledger = LedgerEntry.__table__
LEDGER = qualified(_ledger)
#: An event as the ledger answers it: all but the request digest (the capture's own idempotency check).
LEDGER_COLUMNS = select_list([c for c in _ledger.c if c.name != "request_digest"])
_TIMELINE = f"SELECT {LEDGER_COLUMNS} FROM {LEDGER} WHERE battery_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3"
_CHAIN_PAGE = (
    f"SELECT {LEDGER_COLUMNS} FROM {LEDGER} WHERE battery_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3"
)
_HASH_AT = f"SELECT hash FROM {LEDGER} WHERE battery_id = $1 AND sequence = $2"
_CHAINS = f"SELECT {LEDGER_COLUMNS} FROM {LEDGER} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, sequence"
_HEADS = (
    f"SELECT battery_id, sequence, last_hash FROM {qualified(BatteryState.__table__)} WHERE battery_id > $1 "
    "ORDER BY battery_id LIMIT $2"
)
_STATES = qualified(BatteryState.__table__)
#: What the ledger proves about an organisation and a battery (shared.access.Relation); every subquery is
#: on the battery's own rows (primary key prefix).
_RELATION = (
    f"SELECT s.manufacturer = $2 AS is_manufacturer, s.custodian = $2 AS current, "
    f"EXISTS (SELECT 1 FROM {LEDGER} WHERE battery_id = $1 AND custodian_after = $2) AS past, "
    f"EXISTS (SELECT 1 FROM {LEDGER} WHERE battery_id = $1 AND data->>'consignee' = $2) AS consigned, "
    f"EXISTS (SELECT 1 FROM {LEDGER} WHERE battery_id = $1 AND type = 'SAFETY_INSPECTED' AND actor = $2) "
    f"AS certified FROM {_STATES} s WHERE s.battery_id = $1"
)


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["location"] = json_value(d["location"])
    d["data"] = json_value(d["data"])
    return d


async def timeline(session: AsyncSession, battery_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    conn = await raw_connection(session)
    rows = await conn.fetch(_TIMELINE, battery_id, after, limit)
    return [_row(r) for r in rows]


async def chain_page(session: AsyncSession, battery_id: str, from_sequence: int, limit: int) -> list[dict[str, Any]]:
    """At most `limit` events from `from_sequence` on, in sequence order (the public /verify's page)."""
    conn = await raw_connection(session)
    return [_row(r) for r in await conn.fetch(_CHAIN_PAGE, battery_id, from_sequence, limit)]


async def hash_at(session: AsyncSession, battery_id: str, sequence: int) -> str | None:
    """The stored hash of one event (the link a page of the chain starts from)."""
    conn = await raw_connection(session)
    found: str | None = await conn.fetchval(_HASH_AT, battery_id, sequence)
    return found


async def relation_of(session: AsyncSession, battery_id: str, org: str) -> Relation:
    """What the ledger proves about `org` and the battery: its manufacturer, its custodian now or before
    (`custodian_after` over the history), its consignee (`data.consignee` of any event), a certifier of it
    (SAFETY_INSPECTED). Having posted any other event proves nothing."""
    conn = await raw_connection(session)
    row = await conn.fetchrow(_RELATION, battery_id, org)
    if row is None:
        return Relation()
    custody = Custody.current if row["current"] else Custody.past if row["past"] else Custody.none
    return Relation(
        is_manufacturer=bool(row["is_manufacturer"]),
        custody=custody,
        consigned=bool(row["consigned"]),
        certified=bool(row["certified"]),
    )


async def heads_after(conn: asyncpg.Connection, after: str, limit: int) -> list[dict[str, Any]]:
    """The next `limit` batteries' heads (sequence, last hash) after `after`, in ID order (the verifier)."""
    return [dict(r) for r in await conn.fetch(_HEADS, after, limit)]


async def ledger_size_estimate(conn: asyncpg.Connection) -> int | None:
    """About how many events the ledger holds, from the planner's statistics (free: no scan); None before the
    table's first ANALYZE."""
    found = await conn.fetchval("SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", LEDGER)
    return int(found) if found is not None and found >= 0 else None


async def chains_of(conn: asyncpg.Connection, battery_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The whole chains of these batteries, by battery and sequence (the verifier)."""
    return [_row(r) for r in await conn.fetch(_CHAINS, list(battery_ids))]
