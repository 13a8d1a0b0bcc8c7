"""Bulk writes of the consumer: one statement per table per batch (arrays unnested server-side). The
statements are generated once, at import, from the models' columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.ingest.models import AppliedEvent
from services.portal.models import Alias, Amendment, Battery, BatteryModel, Event, Handler, Participant
from services.portal.views.models import CurrentCount, FlowStat
from shared.db import column_arrays, insert_rows, names, pg_type, qualified, raw_connection, unnest

_applied = AppliedEvent.__table__
_batteries = Battery.__table__
_events = Event.__table__
_flows = FlowStat.__table__
_counts = CurrentCount.__table__


def _written(table: Table) -> list[Column[Any]]:
    """The columns a consumer writes: all but those the database fills in (applied_at)."""
    return [c for c in table.c if c.server_default is None]


def _upsert(table: Table) -> tuple[list[Column[Any]], str]:
    """A mirror of a registry table: insert, or overwrite every column but the key."""
    columns = list(table.c)
    keys = list(table.primary_key.columns)
    sets = ", ".join(f"{c.name} = excluded.{c.name}" for c in columns if not c.primary_key)
    return columns, f"{insert_rows(table, columns)} ON CONFLICT ({names(keys)}) DO UPDATE SET {sets}"


_CLAIM = f"{insert_rows(_applied, _written(_applied))} ON CONFLICT DO NOTHING RETURNING stream, event_id"
_UPSERT_PARTICIPANTS = _upsert(Participant.__table__)
_UPSERT_MODELS = _upsert(BatteryModel.__table__)
_UPSERT_ALIASES = _upsert(Alias.__table__)
_ADD_HANDLERS = f"{insert_rows(Handler.__table__, list(Handler.__table__.c))} ON CONFLICT DO NOTHING"
#: A correction takes back the relation a declared event proved: the battery's handlers become what its corrected
#: timeline proves.
_KEEP_HANDLERS = (
    f"DELETE FROM {qualified(Handler.__table__)} h USING unnest($1::text[], $2::text[]) AS k(battery_id, orgs) "
    "WHERE h.battery_id = k.battery_id AND NOT h.org = ANY(string_to_array(k.orgs, chr(31)))"
)
_AMENDMENT_COLUMNS = list(Amendment.__table__.c)
_INSERT_AMENDMENTS = f"{insert_rows(Amendment.__table__, _AMENDMENT_COLUMNS)} ON CONFLICT DO NOTHING"
_CREATE_BATTERIES = (
    f"INSERT INTO {qualified(_batteries)} (id) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING"
)
_LOCK_BATTERIES = f"SELECT * FROM {qualified(_batteries)} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
_EVENT_COLUMNS = _written(_events)
_INSERT_EVENTS = (
    f"{insert_rows(_events, _EVENT_COLUMNS)} ON CONFLICT DO NOTHING RETURNING battery_id, sequence, applied_at"
)
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
    f"{insert_rows(_flows, list(_flows.c))} ON CONFLICT ON CONSTRAINT {_flows.primary_key.name} DO UPDATE "
    f"SET n = flow_stats.n + excluded.n, amounts = {_flows.schema}.jsonb_add(flow_stats.amounts, excluded.amounts)"
)
#: A flow no event adds to any more (all taken back by corrections) is gone, not a row of zeros.
_DROP_EMPTY_FLOWS = (
    f"DELETE FROM {qualified(_flows)} f USING {unnest(_FLOW_KEYS)} AS k({names(_FLOW_KEYS)}) WHERE "
    + " AND ".join(f"f.{c.name} = k.{c.name}" for c in _FLOW_KEYS)
    + " AND f.n = 0"
)
_COUNT_KEYS = list(_counts.primary_key.columns)
_DROP_EMPTY_COUNTS = (
    f"DELETE FROM {qualified(_counts)} c USING {unnest(_COUNT_KEYS)} AS k({names(_COUNT_KEYS)}) WHERE "
    + " AND ".join(f"c.{col.name} = k.{col.name}" for col in _COUNT_KEYS)
    + " AND c.n = 0"
)
#: Marks (or unmarks) events declared in error: the sequence of the declaration, on the battery's own rows.
_MARK_DECLARED = (
    f"UPDATE {qualified(_events)} AS e SET declared_by = u.by "
    "FROM unnest($1::text[], $2::int[], $3::int[]) AS u(battery_id, sequence, by) "
    "WHERE e.battery_id = u.battery_id AND e.sequence = u.sequence"
)
_ADD_COUNTS = (
    f"{insert_rows(_counts, list(_counts.c))} ON CONFLICT ON CONSTRAINT {_counts.primary_key.name} DO UPDATE "
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


async def keep_handlers(session: AsyncSession, proven: dict[str, set[str]]) -> None:
    """Drop each battery's handlers that `proven` no longer names."""
    if not proven:
        return
    conn = await raw_connection(session)
    ids = sorted(proven)
    await conn.execute(_KEEP_HANDLERS, ids, [chr(31).join(sorted(proven[b])) for b in ids])


async def insert_amendments(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = await raw_connection(session)
    await conn.execute(_INSERT_AMENDMENTS, *column_arrays(rows, _AMENDMENT_COLUMNS))


async def lock_batteries(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Create the rows that do not exist yet, then lock all of them in ID order (two consumers of
    different partitions may touch one battery: one via the registry stream, one via the lifecycle)."""
    conn = await raw_connection(session)
    ids = sorted(set(ids))
    await conn.execute(_CREATE_BATTERIES, ids)
    rows = await conn.fetch(_LOCK_BATTERIES, ids)
    return {r["id"]: dict(r) for r in rows}


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], datetime]:
    """Append events; returns the (battery, sequence) keys that were new (a known sequence is never
    overwritten), each with the `applied_at` the database gave it."""
    if not rows:
        return {}
    conn = await raw_connection(session)
    inserted = await conn.fetch(_INSERT_EVENTS, *column_arrays(rows, _EVENT_COLUMNS, missing_as_null=True))
    return {(r["battery_id"], r["sequence"]): r["applied_at"] for r in inserted}


async def events_of(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    if not ids:
        return {}
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
    columns = [[k[i] for k in keys] for i in range(len(_FLOW_KEYS))]
    await conn.execute(
        _ADD_FLOWS, *columns, [rows[k][0] for k in keys], [orjson.dumps(rows[k][1]).decode() for k in keys]
    )
    taken = [k for k in keys if rows[k][0] < 0]
    if taken:
        await conn.execute(_DROP_EMPTY_FLOWS, *[[k[i] for k in taken] for i in range(len(_FLOW_KEYS))])


async def mark_declared(session: AsyncSession, marks: Sequence[tuple[str, int, int | None]]) -> None:
    """Set each (battery, sequence)'s `declared_by` (None: no longer declared)."""
    if not marks:
        return
    conn = await raw_connection(session)
    await conn.execute(_MARK_DECLARED, [m[0] for m in marks], [m[1] for m in marks], [m[2] for m in marks])


async def add_counts(session: AsyncSession, deltas: dict[tuple[str, ...], int]) -> None:
    keys = sorted(k for k, v in deltas.items() if v)
    if not keys:
        return
    conn = await raw_connection(session)
    width = len(_counts.primary_key.columns)
    await conn.execute(_ADD_COUNTS, *[[k[i] for k in keys] for i in range(width)], [deltas[k] for k in keys])
    emptied = [k for k in keys if deltas[k] < 0]
    if emptied:  # a cell no battery is in any more is gone, whatever the batching that emptied it
        await conn.execute(_DROP_EMPTY_COUNTS, *[[k[i] for k in emptied] for i in range(width)])
