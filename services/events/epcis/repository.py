"""Every query of the EPCIS domain (schema `events`): capture jobs, the EPCIS events as captured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import json_value, raw_connection


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def existing(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """EPCIS events already captured under these eventIDs."""
    if not event_ids:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(
        "SELECT event_id, digest, ledger_events, error_declaration FROM events.epcis_events "
        "WHERE event_id = ANY($1::text[])",
        list(event_ids),
    )
    return {r["event_id"]: {**dict(r), "ledger_events": json_value(r["ledger_events"])} for r in rows}


async def ledger_batteries(session: AsyncSession, ledger_ids: Sequence[str]) -> dict[str, str]:
    """Ledger event ID → its battery, for the IDs that are in the ledger (native events declared in error)."""
    if not ledger_ids:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(
        "SELECT event_id::text AS event_id, battery_id FROM events.ledger WHERE event_id = ANY($1::uuid[])",
        list(ledger_ids),
    )
    return {r["event_id"]: r["battery_id"] for r in rows}


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(
        "INSERT INTO events.epcis_events (event_id, capture_id, type, event_time, record_time, actor, digest, "
        "battery_ids, ledger_events, error_declaration, body) "
        "SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], "
        "$7::text[], $8::jsonb[], $9::jsonb[], $10::jsonb[], $11::jsonb[]) AS u "
        "ON CONFLICT (event_id) DO NOTHING",
        [r["event_id"] for r in rows],
        [r["capture_id"] for r in rows],
        [r["type"] for r in rows],
        [r["event_time"] for r in rows],
        [r["record_time"] for r in rows],
        [r["actor"] for r in rows],
        [r["digest"] for r in rows],
        [_json(r["battery_ids"]) for r in rows],
        [_json(r["ledger_events"]) for r in rows],
        [_json(r["error_declaration"]) for r in rows],
        [_json(r["body"]) for r in rows],
    )


async def declare(session: AsyncSession, declarations: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Mark captured EPCIS events as declared in error (the event itself is kept as it was)."""
    if not declarations:
        return
    conn = await raw_connection(session)
    await conn.execute(
        "UPDATE events.epcis_events e SET error_declaration = u.d FROM unnest($1::text[], $2::jsonb[]) AS u(id, d) "
        "WHERE e.event_id = u.id",
        [d[0] for d in declarations],
        [_json(d[1]) for d in declarations],
    )


async def insert_capture(session: AsyncSession, job: dict[str, Any]) -> None:
    conn = await raw_connection(session)
    await conn.execute(
        "INSERT INTO events.epcis_captures (capture_id, actor, actor_role, behaviour, status, created_at, "
        "finished_at, event_count, stored_count, errors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
        job["capture_id"],
        job["actor"],
        job["actor_role"],
        job["behaviour"],
        job["status"],
        job["created_at"],
        job["finished_at"],
        job["event_count"],
        job["stored_count"],
        _json(job["errors"]),
    )


async def get_capture(session: AsyncSession, capture_id: str) -> dict[str, Any] | None:
    conn = await raw_connection(session)
    r = await conn.fetchrow(
        "SELECT capture_id::text AS capture_id, actor, actor_role, behaviour, status, created_at, finished_at, "
        "event_count, stored_count, errors FROM events.epcis_captures WHERE capture_id = $1::uuid",
        capture_id,
    )
    if r is None:
        return None
    return {**dict(r), "errors": json_value(r["errors"])}
