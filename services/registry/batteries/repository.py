from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.tables import SCHEMA, aliases, batteries, battery_models
from shared.db import raw_connection, row_dict

_COLUMNS = [
    "id",
    "model_id",
    "kind",
    "chemistry",
    "manufacturer",
    "serial_number",
    "manufactured_at",
    "manufacturing_site",
    "materials_kg",
    "recycled_content_pct",
    "carbon_footprint_kg_co2e_per_kwh",
]

_MODEL_FACTS = [
    battery_models.c.rated_capacity_ah,
    battery_models.c.nominal_voltage_v,
    battery_models.c.rated_energy_kwh,
    battery_models.c.mass_kg,
]


async def existing_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    conn = await raw_connection(session)
    rows = await conn.fetch(f"SELECT id FROM {SCHEMA}.batteries WHERE id = ANY($1::text[])", list(ids))
    return {r["id"] for r in rows}


async def insert_batteries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """COPY for throughput; the caller has checked duplicates (a race still fails on the primary key)."""
    conn = await raw_connection(session)
    records = [
        (
            r["id"],
            r["model_id"],
            r["kind"],
            r["chemistry"],
            r["manufacturer"],
            r["serial_number"],
            r["manufactured_at"],
            r["manufacturing_site"],
            orjson.dumps(r["materials_kg"]).decode(),
            orjson.dumps(r["recycled_content_pct"]).decode(),
            r["carbon_footprint_kg_co2e_per_kwh"],
        )
        for r in rows
    ]
    if len(records) >= 50:
        await conn.copy_records_to_table("batteries", schema_name=SCHEMA, columns=_COLUMNS, records=records)
    else:
        await conn.executemany(
            f"INSERT INTO {SCHEMA}.batteries ({', '.join(_COLUMNS)}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11)",
            records,
        )


def _battery_query() -> Any:
    return select(batteries, *_MODEL_FACTS).join(battery_models, battery_models.c.id == batteries.c.model_id)


# One battery in one statement: the record, its model's rated facts and its aliases (oldest first).
_READ_BATTERY = f"""
SELECT b.*, m.rated_capacity_ah, m.nominal_voltage_v, m.rated_energy_kwh, m.mass_kg,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('scheme', a.scheme, 'value', a.value, 'battery_id', a.battery_id)
                                  ORDER BY a.created_at)
                 FROM {SCHEMA}.aliases a WHERE a.battery_id = b.id), '[]'::jsonb) AS aliases
FROM {SCHEMA}.batteries b JOIN {SCHEMA}.battery_models m ON m.id = b.model_id
WHERE b.id = $1
"""


async def read_battery(conn: asyncpg.Connection, battery_id: str) -> dict[str, Any] | None:
    """The full record with aliases, on any asyncpg connection (a reader, or a unit of work's own)."""
    row = await conn.fetchrow(_READ_BATTERY, battery_id)
    return dict(row) if row else None


async def list_batteries(
    session: AsyncSession,
    *,
    manufacturer: str | None,
    kind: str | None,
    chemistry: str | None,
    after: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    q = _battery_query().order_by(batteries.c.id).limit(limit)
    if manufacturer:
        q = q.where(batteries.c.manufacturer == manufacturer)
    if kind:
        q = q.where(batteries.c.kind == kind)
    if chemistry:
        q = q.where(batteries.c.chemistry == chemistry)
    if after:
        q = q.where(batteries.c.id > after)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def aliases_of(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {b: [] for b in battery_ids}
    q = select(aliases).where(aliases.c.battery_id.in_(list(battery_ids))).order_by(aliases.c.created_at)
    for r in (await session.execute(q)).mappings():
        out[r["battery_id"]].append(row_dict(r))
    return out


async def insert_alias(session: AsyncSession, scheme: str, value: str, battery_id: str) -> bool:
    stmt = (
        pg_insert(aliases)
        .values(scheme=scheme, value=value, battery_id=battery_id)
        .on_conflict_do_nothing()
        .returning(aliases.c.value)
    )
    return (await session.execute(stmt)).first() is not None


async def get_alias(session: AsyncSession, value: str) -> dict[str, Any] | None:
    row = (await session.execute(select(aliases).where(aliases.c.value == value))).mappings().first()
    return row_dict(row) if row else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
