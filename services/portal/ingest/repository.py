"""Bulk writes of the consumer: one statement per table per batch (arrays unnested server-side)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.ingest.projection import HEAD_COLUMNS
from services.portal.tables import SCHEMA
from shared.db import raw_connection

S = SCHEMA


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def claim(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record (stream, event_id) as applied; returns the keys not applied before."""
    if not keys:
        return set()
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"INSERT INTO {S}.applied_events (stream, event_id) SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT DO NOTHING RETURNING stream, event_id",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["stream"], r["event_id"]) for r in rows}


async def upsert_participants(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(
        f"""INSERT INTO {S}.participants (id, name, role, ministry, region, created_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, ministry = excluded.ministry,
            region = excluded.region, created_at = excluded.created_at""",
        *_columns(rows, ["id", "name", "role", "ministry", "region", "created_at"]),
    )


async def upsert_models(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    cols = [
        "id",
        "manufacturer",
        "kind",
        "chemistry",
        "rated_capacity_ah",
        "nominal_voltage_v",
        "rated_energy_kwh",
        "mass_kg",
        "created_at",
    ]
    await conn.execute(
        f"""INSERT INTO {S}.battery_models ({", ".join(cols)})
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[],
                             $7::float8[], $8::float8[], $9::timestamptz[])
        ON CONFLICT (id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in cols[1:])}""",
        *_columns(rows, cols),
    )


async def upsert_aliases(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(
        f"""INSERT INTO {S}.aliases (value, scheme, battery_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
        ON CONFLICT (value) DO UPDATE SET scheme = excluded.scheme, battery_id = excluded.battery_id""",
        *_columns(rows, ["value", "scheme", "battery_id"]),
    )


async def add_handlers(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> None:
    pairs = sorted(set(pairs))
    if not pairs:
        return
    conn = await raw_connection(session)
    await conn.execute(
        f"INSERT INTO {S}.handlers (org, battery_id) SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT DO NOTHING",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )


async def lock_batteries(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Create the rows that do not exist yet, then lock all of them in ID order (two consumers of
    different partitions may touch one battery: one via the registry stream, one via the lifecycle)."""
    conn = await raw_connection(session)
    ids = sorted(set(ids))
    await conn.execute(
        f"INSERT INTO {S}.batteries (id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING", ids
    )
    rows = await conn.fetch(f"SELECT * FROM {S}.batteries WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids)
    return {r["id"]: dict(r) for r in rows}


_EVENT_COLUMNS = [
    "battery_id",
    "sequence",
    "event_id",
    "type",
    "occurred_at",
    "recorded_at",
    "actor",
    "actor_role",
    "location",
    "data",
    "state_after",
    "custodian_after",
    "prev_hash",
    "hash",
    "parent_id",
]


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Append events; returns the event IDs that were new (a known sequence is never overwritten)."""
    if not rows:
        return set()
    conn = await raw_connection(session)
    cols = _columns(rows, _EVENT_COLUMNS)
    cols[8] = [_json(v) for v in cols[8]]
    cols[9] = [_json(v) for v in cols[9]]
    inserted = await conn.fetch(
        f"""INSERT INTO {S}.events ({", ".join(_EVENT_COLUMNS)})
        SELECT b, s, i, t, o, r, a, ar, l::jsonb, d::jsonb, sa, ca, ph, h, p
        FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                    $14::text[], $15::text[]) AS u(b, s, i, t, o, r, a, ar, l, d, sa, ca, ph, h, p)
        ON CONFLICT DO NOTHING RETURNING event_id""",
        *cols,
    )
    return {r["event_id"] for r in inserted}


async def events_of(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    conn = await raw_connection(session)
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    rows = await conn.fetch(
        f"SELECT * FROM {S}.events WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, sequence", list(ids)
    )
    for r in rows:
        out[r["battery_id"]].append(dict(r))
    return out


_FACT_COLUMNS = [
    ("registered", "bool"),
    ("model_id", "text"),
    ("kind", "text"),
    ("chemistry", "text"),
    ("manufacturer", "text"),
    ("serial_number", "text"),
    ("manufactured_at", "timestamptz"),
    ("manufacturing_site", "text"),
    ("materials_kg", "jsonb"),
    ("recycled_content_pct", "jsonb"),
    ("carbon_footprint_kg_co2e_per_kwh", "float8"),
    ("model", "jsonb"),
]
_HEAD_TYPES = {
    "sequence": "int",
    "life": "int",
    "cycle_count": "int",
    "soh_pct": "float8",
    "state_since": "timestamptz",
    "installed_at": "timestamptz",
    "last_recorded_at": "timestamptz",
    "last_applied_at": "timestamptz",
    "recycled_month": "date",
}
_SAVE_COLUMNS = [
    *_FACT_COLUMNS,
    *[(c, _HEAD_TYPES.get(c, "text")) for c in HEAD_COLUMNS],
    ("contained_counted", "bool"),
]


async def save_batteries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write each battery's facts and folded head in one UPDATE."""
    if not rows:
        return
    conn = await raw_connection(session)
    names = ["id"] + [c for c, _ in _SAVE_COLUMNS]
    arrays = _columns(rows, names)
    types = ["text"] + [("text" if t == "jsonb" else t) for _, t in _SAVE_COLUMNS]
    for i, (_, t) in enumerate(_SAVE_COLUMNS, start=1):
        if t == "jsonb":
            arrays[i] = [_json(v) for v in arrays[i]]
    params = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    sets = ", ".join(f"{c} = u.{c}" + ("::jsonb" if t == "jsonb" else "") for c, t in _SAVE_COLUMNS)
    await conn.execute(
        f"UPDATE {S}.batteries AS b SET {sets} FROM unnest({params}) AS u({', '.join(names)}) WHERE b.id = u.id",
        *arrays,
    )


async def add_flows(session: AsyncSession, rows: dict[tuple[Any, ...], tuple[int, dict[str, float]]]) -> None:
    """Add to `flow_stats` (keys sorted, so concurrent consumers lock rows in one order)."""
    if not rows:
        return
    conn = await raw_connection(session)
    keys = sorted(rows)
    await conn.execute(
        f"""INSERT INTO {S}.flow_stats (metric, month, region, k1, k2, k3, n, amounts)
        SELECT m, mo, r, a, b, c, n, am::jsonb
        FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                    $8::text[]) AS u(m, mo, r, a, b, c, n, am)
        ON CONFLICT ON CONSTRAINT pk_flow_stats DO UPDATE
        SET n = flow_stats.n + excluded.n, amounts = {S}.jsonb_add(flow_stats.amounts, excluded.amounts)""",
        *[[k[i] for k in keys] for i in range(6)],
        [rows[k][0] for k in keys],
        [_json(rows[k][1]) for k in keys],
    )


async def add_counts(session: AsyncSession, deltas: dict[tuple[str, ...], int]) -> None:
    keys = sorted(k for k, v in deltas.items() if v)
    if not keys:
        return
    conn = await raw_connection(session)
    await conn.execute(
        f"""INSERT INTO {S}.current_counts (state, region, manufacturer, chemistry, kind, status, safety, grade, n)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::bigint[])
        ON CONFLICT ON CONSTRAINT pk_current_counts DO UPDATE SET n = current_counts.n + excluded.n""",
        *[[k[i] for k in keys] for i in range(8)],
        [deltas[k] for k in keys],
    )


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    return [[r.get(n) for r in rows] for n in names]
