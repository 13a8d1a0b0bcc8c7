"""Bulk writes of the consumer: one statement per table per batch (arrays unnested server-side). The
statements are generated once, at import, from the models' columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Column, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.ingest.models import AppliedEvent
from services.portal.models import Alias, Battery, BatteryModel, Event, Handler, Participant
from services.portal.views.models import CurrentCount, FlowStat
from shared.db import column_arrays, names, pg_type, qualified, raw_connection, unnest

_applied = AppliedEvent.__table__
_batteries = Battery.__table__
_events = Event.__table__
_flows = FlowStat.__table__
_counts = CurrentCount.__table__


def _written(table: Table) -> list[Column[Any]]:
    """The columns a consumer writes: all but those the database fills in (applied_at)."""
    return [c for c in table.c if c.server_default is None]


def _insert(table: Table, columns: Sequence[Column[Any]]) -> str:
    return f"INSERT INTO {qualified(table)} ({names(columns)}) SELECT * FROM {unnest(columns)}"


def _upsert(table: Table) -> tuple[list[Column[Any]], str]:
    """A mirror of a registry table: insert, or overwrite every column but the key."""
    columns = list(table.c)
    keys = list(table.primary_key.columns)
    sets = ", ".join(f"{c.name} = excluded.{c.name}" for c in columns if not c.primary_key)
    return columns, f"{_insert(table, columns)} ON CONFLICT ({names(keys)}) DO UPDATE SET {sets}"


_CLAIM = f"{_insert(_applied, _written(_applied))} ON CONFLICT DO NOTHING RETURNING stream, event_id"
_UPSERT_PARTICIPANTS = _upsert(Participant.__table__)
_UPSERT_MODELS = _upsert(BatteryModel.__table__)
_UPSERT_ALIASES = _upsert(Alias.__table__)
_ADD_HANDLERS = f"{_insert(Handler.__table__, list(Handler.__table__.c))} ON CONFLICT DO NOTHING"
_CREATE_BATTERIES = (
    f"INSERT INTO {qualified(_batteries)} (id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING"
)
_LOCK_BATTERIES = f"SELECT * FROM {qualified(_batteries)} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_EVENT_COLUMNS = _written(_events)
_INSERT_EVENTS = f"{_insert(_events, _EVENT_COLUMNS)} ON CONFLICT DO NOTHING RETURNING battery_id, sequence"
_EVENTS_OF = f"SELECT * FROM {qualified(_events)} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, sequence"
#: A battery's facts and folded head: every column but the key. JSONB travels as text (no jsonb[] here).
_SAVED = [c for c in _batteries.c if not c.primary_key]
_SAVE_TYPES = ["TEXT"] + ["TEXT" if isinstance(c.type, JSONB) else pg_type(c) for c in _SAVED]
_SAVE_BATTERIES = (
    f"UPDATE {qualified(_batteries)} AS b SET "
    + ", ".join(f"{c.name} = u.{c.name}" + ("::jsonb" if isinstance(c.type, JSONB) else "") for c in _SAVED)
    + " FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_SAVE_TYPES, 1))
    + f") AS u(id, {names(_SAVED)}) WHERE b.id = u.id"
)
_FLOW_KEYS = list(_flows.primary_key.columns)
_ADD_FLOWS = (
    f"{_insert(_flows, list(_flows.c))} ON CONFLICT ON CONSTRAINT {_flows.primary_key.name} DO UPDATE "
    f"SET n = flow_stats.n + excluded.n, amounts = {_flows.schema}.jsonb_add(flow_stats.amounts, excluded.amounts)"
)
_ADD_COUNTS = (
    f"{_insert(_counts, list(_counts.c))} ON CONFLICT ON CONSTRAINT {_counts.primary_key.name} DO UPDATE "
    "SET n = current_counts.n + excluded.n"
)


async def claim(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record (stream, event_id) as applied; returns the keys not applied before."""
    if not keys:
        return set()
    conn = await raw_connection(session)
    rows = await conn.fetch(_CLAIM, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["stream"], r["event_id"]) for r in rows}


async def _upsert_rows(
    session: AsyncSession, upsert: tuple[list[Column[Any]], str], rows: Sequence[dict[str, Any]]
) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    columns, sql = upsert
    await conn.execute(sql, *column_arrays(rows, columns, missing_as_null=True))


async def upsert_participants(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await _upsert_rows(session, _UPSERT_PARTICIPANTS, rows)


async def upsert_models(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await _upsert_rows(session, _UPSERT_MODELS, rows)


async def upsert_aliases(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await _upsert_rows(session, _UPSERT_ALIASES, rows)


async def add_handlers(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> None:
    pairs = sorted(set(pairs))
    if not pairs:
        return
    conn = await raw_connection(session)
    await conn.execute(_ADD_HANDLERS, [p[0] for p in pairs], [p[1] for p in pairs])


async def lock_batteries(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Create the rows that do not exist yet, then lock all of them in ID order (two consumers of
    different partitions may touch one battery: one via the registry stream, one via the lifecycle)."""
    conn = await raw_connection(session)
    ids = sorted(set(ids))
    await conn.execute(_CREATE_BATTERIES, ids)
    rows = await conn.fetch(_LOCK_BATTERIES, ids)
    return {r["id"]: dict(r) for r in rows}


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[tuple[str, int]]:
    """Append events; returns the (battery, sequence) keys that were new (a known sequence is never
    overwritten)."""
    if not rows:
        return set()
    conn = await raw_connection(session)
    inserted = await conn.fetch(_INSERT_EVENTS, *column_arrays(rows, _EVENT_COLUMNS, missing_as_null=True))
    return {(r["battery_id"], r["sequence"]) for r in inserted}


async def events_of(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    conn = await raw_connection(session)
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    rows = await conn.fetch(_EVENTS_OF, list(ids))
    for r in rows:
        out[r["battery_id"]].append(dict(r))
    return out


async def save_batteries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write each battery's facts and folded head in one UPDATE."""
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(_SAVE_BATTERIES, *column_arrays(rows, [_batteries.c.id, *_SAVED], missing_as_null=True))


async def add_flows(session: AsyncSession, rows: dict[tuple[Any, ...], tuple[int, dict[str, float]]]) -> None:
    """Add to `flow_stats` (keys sorted, so concurrent consumers lock rows in one order)."""
    if not rows:
        return
    conn = await raw_connection(session)
    keys = sorted(rows)
    await conn.execute(
        _ADD_FLOWS,
        *[[k[i] for k in keys] for i in range(len(_FLOW_KEYS))],
        [rows[k][0] for k in keys],
        [orjson.dumps(rows[k][1]).decode() for k in keys],
    )


async def add_counts(session: AsyncSession, deltas: dict[tuple[str, ...], int]) -> None:
    keys = sorted(k for k, v in deltas.items() if v)
    if not keys:
        return
    conn = await raw_connection(session)
    await conn.execute(
        _ADD_COUNTS,
        *[[k[i] for k in keys] for i in range(len(_counts.primary_key.columns))],
        [deltas[k] for k in keys],
    )
