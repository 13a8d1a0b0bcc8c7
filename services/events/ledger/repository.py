from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle.models import BatteryState, LedgerEntry
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
_HANDLED_BY = f"SELECT EXISTS (SELECT 1 FROM {LEDGER} WHERE battery_id = $1 AND (actor = $2 OR custodian_after = $2))"


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


async def handled_by(session: AsyncSession, battery_id: str, org: str) -> bool:
    """Whether `org` made, held or posted an event for the battery."""
    conn = await raw_connection(session)
    return bool(await conn.fetchval(_HANDLED_BY, battery_id, org))


async def heads_after(conn: asyncpg.Connection, after: str, limit: int) -> list[dict[str, Any]]:
    """The next `limit` batteries' heads (sequence, last hash) after `after`, in ID order (the verifier)."""
    return [dict(r) for r in await conn.fetch(_HEADS, after, limit)]


async def chains_of(conn: asyncpg.Connection, battery_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The whole chains of these batteries, by battery and sequence (the verifier)."""
    return [_row(r) for r in await conn.fetch(_CHAINS, list(battery_ids))]
