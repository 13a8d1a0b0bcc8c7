"""Every query of the lifecycle domain. Set-based: one statement per step whatever the batch size.

These run on the asyncpg connection under the request's session (same transaction), because the
capture path is the hot path of the whole system: arrays in, arrays out, no ORM objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import json_value, raw_connection

STATE_COLUMNS = (
    "battery_id, kind, model_id, manufacturer, state, custodian, sequence, last_hash, last_event_at, grade, "
    "safety_inspection, parent_id"
)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _state_row(r: Any) -> dict[str, Any]:
    d = dict(r)
    if d.get("safety_inspection") is not None:
        d["safety_inspection"] = json_value(d["safety_inspection"])
    return d


async def lock_states(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Current states, row-locked in ID order (so concurrent writers never deadlock or fork a chain)."""
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"SELECT {STATE_COLUMNS} FROM events.battery_state WHERE battery_id = ANY($1::text[]) "
        "ORDER BY battery_id FOR UPDATE",
        list(battery_ids),
    )
    return {r["battery_id"]: _state_row(r) for r in rows}


async def get_state(session: AsyncSession, battery_id: str) -> dict[str, Any] | None:
    conn = await raw_connection(session)
    r = await conn.fetchrow(f"SELECT {STATE_COLUMNS} FROM events.battery_state WHERE battery_id = $1", battery_id)
    return _state_row(r) if r else None


async def find_events(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    conn = await raw_connection(session)
    rows = await conn.fetch(
        "SELECT event_id::text AS event_id, battery_id, sequence, type, actor, hash, state_after, custodian_after, "
        "request_digest FROM events.ledger WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    return {r["event_id"]: dict(r) for r in rows}


async def insert_genesis(session: AsyncSession, states: Sequence[dict[str, Any]]) -> set[str]:
    """Insert battery states that do not exist yet; returns the IDs actually inserted."""
    if not states:
        return set()
    conn = await raw_connection(session)
    rows = await conn.fetch(
        "INSERT INTO events.battery_state (battery_id, kind, model_id, manufacturer, state, custodian, sequence, "
        "last_hash, last_event_at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], "
        "$8::text[], $9::timestamptz[]) ON CONFLICT (battery_id) DO NOTHING RETURNING battery_id",
        [s["battery_id"] for s in states],
        [s["kind"] for s in states],
        [s["model_id"] for s in states],
        [s["manufacturer"] for s in states],
        [s["state"] for s in states],
        [s["custodian"] for s in states],
        [s["sequence"] for s in states],
        [s["last_hash"] for s in states],
        [s["last_event_at"] for s in states],
    )
    return {r["battery_id"] for r in rows}


async def write(
    session: AsyncSession,
    ledger_rows: Sequence[dict[str, Any]],
    states: Sequence[dict[str, Any]],
    outbox: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    update_states: bool = True,
) -> None:
    """Append ledger rows, move battery states, enqueue outbox messages: one round trip."""
    conn = await raw_connection(session)
    L = ledger_rows
    args: list[Any] = [
        [r["battery_id"] for r in L],
        [r["sequence"] for r in L],
        [r["event_id"] for r in L],
        [r["type"] for r in L],
        [r["occurred_at"] for r in L],
        [r["recorded_at"] for r in L],
        [r["actor"] for r in L],
        [r["actor_role"] for r in L],
        [_json(r["location"]) for r in L],
        [_json(r["data"]) for r in L],
        [r["state_after"] for r in L],
        [r["custodian_after"] for r in L],
        [r["prev_hash"] for r in L],
        [r["hash"] for r in L],
        [r["request_digest"] for r in L],
        [t for t, _, _ in outbox],
        [k for _, k, _ in outbox],
        [_json(p) for _, _, p in outbox],
    ]
    state_cte = ""
    if update_states and states:
        state_cte = (
            ", s AS (UPDATE events.battery_state b SET state = u.state, custodian = u.custodian, "
            "sequence = u.sequence, last_hash = u.last_hash, last_event_at = u.last_event_at, grade = u.grade, "
            "safety_inspection = u.safety_inspection, parent_id = u.parent_id, updated_at = now() "
            "FROM unnest($19::text[], $20::text[], $21::text[], $22::int[], $23::text[], $24::timestamptz[], "
            "$25::text[], $26::jsonb[], $27::text[]) "
            "AS u(battery_id, state, custodian, sequence, last_hash, last_event_at, grade, safety_inspection, "
            "parent_id) WHERE b.battery_id = u.battery_id RETURNING 1)"
        )
        args += [
            [s["battery_id"] for s in states],
            [s["state"] for s in states],
            [s["custodian"] for s in states],
            [s["sequence"] for s in states],
            [s["last_hash"] for s in states],
            [s["last_event_at"] for s in states],
            [s["grade"] for s in states],
            [_json(s["safety_inspection"]) for s in states],
            [s["parent_id"] for s in states],
        ]
    await conn.execute(
        "WITH l AS (INSERT INTO events.ledger (battery_id, sequence, event_id, type, occurred_at, recorded_at, "
        "actor, actor_role, location, data, state_after, custodian_after, prev_hash, hash, request_digest) "
        "SELECT * FROM unnest($1::text[], $2::int[], $3::uuid[], $4::text[], $5::timestamptz[], "
        "$6::timestamptz[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::text[], "
        "$13::text[], $14::text[], $15::text[]) RETURNING 1)"
        + state_cte
        + " INSERT INTO events.outbox (topic, key, payload) "
        "SELECT * FROM unnest($16::text[], $17::text[], $18::jsonb[])",
        *args,
    )
