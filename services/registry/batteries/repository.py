from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import asyncpg
import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.amendments.models import Amendment
from services.registry.batteries.models import Alias, Battery
from services.registry.batteries.schemas import BatteryFilter
from services.registry.catalog.models import BatteryModel
from shared.db import insert_rows, json_value, qualified, raw_connection, row_dict
from shared.pagination import keyset

batteries = Battery.__table__
aliases = Alias.__table__
battery_models = BatteryModel.__table__

#: What a registration writes: every column but those the database fills in (created_at).
_INSERTED = [c for c in batteries.c if c.server_default is None]
_INSERTED_NAMES = [c.name for c in _INSERTED]
_INSERTED_JSON = [i for i, c in enumerate(_INSERTED) if isinstance(c.type, JSONB)]
#: A few rows in one statement; the IDs already registered are skipped (and told by what it returns).
_INSERT = f"{insert_rows(batteries, _INSERTED)} ON CONFLICT (id) DO NOTHING RETURNING id"
_values = itemgetter(*_INSERTED_NAMES)
#: From this many rows on, COPY (one statement's parameters would hold every value twice over).
COPY_FROM_ROWS = 50

_MODEL_FACTS = [
    battery_models.c.rated_capacity_ah,
    battery_models.c.nominal_voltage_v,
    battery_models.c.rated_energy_kwh,
    battery_models.c.mass_kg,
]


async def existing_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    conn = await raw_connection(session)
    rows = await conn.fetch(f"SELECT id FROM {qualified(batteries)} WHERE id = ANY($1::text[])", list(ids))
    return {r["id"] for r in rows}


async def insert_batteries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str] | None:
    """Insert every row, or none: None when all were inserted, else the IDs among them registered already (the
    caller refuses the registration, which rolls back what was inserted). Many rows go by COPY, which stops at the
    first ID taken; the IDs taken are then looked up (a set empty only if a concurrent registration that took
    one is not visible yet)."""
    conn = await raw_connection(session)
    records = [_record(r) for r in rows]
    if len(records) < COPY_FROM_ROWS:
        inserted = await conn.fetch(_INSERT, *zip(*records, strict=True))
        if len(inserted) == len(rows):
            return None
        return {r["id"] for r in rows} - {r["id"] for r in inserted}
    try:
        async with conn.transaction():  # a savepoint: the unit of work goes on to look up the IDs taken
            await conn.copy_records_to_table(
                batteries.name, schema_name=batteries.schema, columns=_INSERTED_NAMES, records=records
            )
    except UniqueViolationError:
        return await existing_ids(session, [r["id"] for r in rows])
    return None


def _record(row: dict[str, Any]) -> list[Any]:
    values = list(_values(row))
    for i in _INSERTED_JSON:
        values[i] = orjson.dumps(values[i]).decode()
    return values


def _battery_query() -> Any:
    return select(batteries, *_MODEL_FACTS).join(battery_models, battery_models.c.id == batteries.c.model_id)


# One battery in one statement: the record, its model's rated facts, its aliases (oldest first) and the changes of
# its amendments (in number order, as `amendments.service.current` applies them).
_ALIAS_FIELDS = ", ".join(f"'{c.name}', a.{c.name}" for c in aliases.c if c.name != "created_at")
_amendments = Amendment.__table__
_READ_BATTERY = f"""
SELECT b.*, {", ".join(f"m.{c.name}" for c in _MODEL_FACTS)},
       COALESCE((SELECT jsonb_agg(jsonb_build_object({_ALIAS_FIELDS}) ORDER BY a.created_at)
                 FROM {qualified(aliases)} a WHERE a.battery_id = b.id), '[]'::jsonb) AS aliases,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('changes', am.changes) ORDER BY am.number)
                 FROM {qualified(_amendments)} am WHERE am.battery_id = b.id), '[]'::jsonb) AS amendments
FROM {qualified(batteries)} b JOIN {qualified(battery_models)} m ON m.id = b.model_id
WHERE b.id = $1
"""


async def read_battery(conn: asyncpg.Connection, battery_id: str) -> tuple[dict[str, Any], list[Any]] | None:
    """The full record as registered, with aliases, and its amendments (`{"changes": ...}` each, in number order),
    on any asyncpg connection (a reader, or a unit of work's own)."""
    row = await conn.fetchrow(_READ_BATTERY, battery_id)
    if row is None:
        return None
    record = dict(row)
    return record, json_value(record.pop("amendments"))


async def list_batteries(
    session: AsyncSession, f: BatteryFilter, after: str | None, limit: int
) -> list[dict[str, Any]]:
    equal = (
        (batteries.c.manufacturer, f.manufacturer or None),
        (batteries.c.kind, f.kind),
        (batteries.c.chemistry, f.chemistry),
    )
    q = keyset(_battery_query(), batteries.c.id, after, limit, equal)
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
