"""Every query of the EPCIS domain (schema `events`): capture jobs, the EPCIS events as captured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.events.epcis.models import EpcisCapture, EpcisEvent
from services.events.lifecycle.models import LedgerEntry
from shared.db import (
    column_arrays,
    column_values,
    insert_row,
    insert_rows,
    json_text,
    json_value,
    qualified,
    raw_connection,
    select_list,
)

_events = EpcisEvent.__table__
_captures = EpcisCapture.__table__
_ledger = LedgerEntry.__table__
EVENTS = qualified(_events)

_EXISTING = (
    f"SELECT {select_list([_events.c[n] for n in ('actor', 'event_id', 'digest', 'ledger_events', 'error_declaration')])} "
    f"FROM {EVENTS} WHERE event_id = ANY($1::text[])"
)
_HASHES = f"SELECT DISTINCT event_hash FROM {EVENTS} WHERE actor = $1 AND event_hash = ANY($2::text[])"
_LEDGER_BATTERIES = (
    f"SELECT {select_list([_ledger.c.event_id, _ledger.c.battery_id])} FROM {qualified(_ledger)} "
    "WHERE event_id = ANY($1::uuid[])"
)
_INSERT_EVENTS = f"{insert_rows(_events, list(_events.c))} ON CONFLICT (actor, event_id) DO NOTHING"
_DECLARE = (
    f"UPDATE {EVENTS} e SET error_declaration = u.d FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(actor, id, d) "
    "WHERE e.actor = u.actor AND e.event_id = u.id"
)
_INSERT_CAPTURE = insert_row(_captures, list(_captures.c))
_GET_CAPTURE = f"SELECT {select_list(list(_captures.c))} FROM {qualified(_captures)} WHERE capture_id = $1::uuid"


async def existing(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """EPCIS events already captured under these eventIDs, by any capturer (eventID → its rows)."""
    if not event_ids:
        return {}
    conn = await raw_connection(session)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in await conn.fetch(_EXISTING, list(event_ids)):
        out.setdefault(r["event_id"], []).append({**dict(r), "ledger_events": json_value(r["ledger_events"])})
    return out


async def captured_hashes(session: AsyncSession, actor: str, hashes: Sequence[str]) -> set[str]:
    """The event hashes among `hashes` of events this participant captured before."""
    if not hashes:
        return set()
    conn = await raw_connection(session)
    return {r["event_hash"] for r in await conn.fetch(_HASHES, actor, sorted(set(hashes)))}


async def ledger_batteries(session: AsyncSession, ledger_ids: Sequence[str]) -> dict[str, str]:
    """Ledger event ID → its battery, for the IDs that are in the ledger (native events declared in error)."""
    if not ledger_ids:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(_LEDGER_BATTERIES, list(ledger_ids))
    return {r["event_id"]: r["battery_id"] for r in rows}


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(_INSERT_EVENTS, *column_arrays(rows, list(_events.c)))


async def declare(session: AsyncSession, declarations: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Mark captured EPCIS events, each (capturer, eventID, declaration), as declared in error (the event
    itself is kept as it was)."""
    if not declarations:
        return
    conn = await raw_connection(session)
    await conn.execute(
        _DECLARE, [d[0] for d in declarations], [d[1] for d in declarations], [json_text(d[2]) for d in declarations]
    )


async def insert_capture(session: AsyncSession, job: dict[str, Any]) -> None:
    conn = await raw_connection(session)
    await conn.execute(_INSERT_CAPTURE, *column_values(job, list(_captures.c)))


async def get_capture(session: AsyncSession, capture_id: str) -> dict[str, Any] | None:
    conn = await raw_connection(session)
    r = await conn.fetchrow(_GET_CAPTURE, capture_id)
    if r is None:
        return None
    return {**dict(r), "errors": json_value(r["errors"])}


async def list_captures(session: AsyncSession, actor: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest capture jobs (of one actor, or of every one), newest first."""
    conn = await raw_connection(session)
    where = "WHERE actor = $2" if actor is not None else ""
    rows = await conn.fetch(
        f"SELECT {select_list(list(_captures.c))} FROM {qualified(_captures)} {where} ORDER BY created_at DESC LIMIT $1",
        limit,
        *([actor] if actor is not None else []),
    )
    return [{**dict(r), "errors": json_value(r["errors"])} for r in rows]
