"""Reads for histories, composition and search (each an indexed lookup, no scans)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Column, Table, and_, exists, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.history.schemas import BatterySearch
from services.portal.models import Alias, Amendment, Battery, Event, Handler, Participant
from shared.db import json_value, qualified, row_dict
from shared.pagination import keyset

aliases = Alias.__table__
amendments = Amendment.__table__
batteries = Battery.__table__
handlers = Handler.__table__
participants = Participant.__table__
events = Event.__table__

# The history's reads run as plain statements on an asyncpg connection: a reader (shared.db.ReaderDep) on
# the hot path, or the session's own connection (shared.db.raw_connection) inside a unit of work.
BATTERIES = qualified(batteries)
ALIASES = qualified(aliases)
EVENTS = qualified(Event.__table__)
HANDLERS = qualified(handlers)


#: Statements the public paths issue (the resolver, the public passport): exact look-ups on indexed keys
#: (tests/attacks/test_epcis_and_public.py EXPLAINs them).
GET_BATTERY = f"SELECT * FROM {BATTERIES} WHERE id = $1"
RESOLVE_ALIAS = (
    f"SELECT coalesce((SELECT battery_id FROM {ALIASES} WHERE value = $1), "
    f"(SELECT id FROM {BATTERIES} WHERE vin = $1 ORDER BY id LIMIT 1))"
)
TIMELINE = f"SELECT * FROM {EVENTS} WHERE battery_id = $1 ORDER BY sequence"
AMENDMENTS = f"SELECT * FROM {qualified(amendments)} WHERE battery_id = $1 ORDER BY number"
#: Composition, state and relations read only events in effect (an event declared in error has none).
IN_EFFECT = "declared_by IS NULL"


def _rows(table: Table, columns: Sequence[Column[Any]], where: str) -> str:
    """The table's rows that match `where` (on alias `t`; ordered there too) as one array of records, their
    fields in `columns` order. JSONB travels as text: the readers' JSONB codec is a text one, and asyncpg
    decodes records only in binary."""
    fields = ", ".join(f"t.{c.name}" + ("::text" if isinstance(c.type, JSONB) else "") for c in columns)
    return f"ARRAY(SELECT ROW({fields}) FROM {qualified(table)} t WHERE {where})"


def _dicts(columns: Sequence[Column[Any]], records: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The records of `_rows` as rows (dicts by column name, JSONB decoded)."""
    names = [c.name for c in columns]
    documents = [c.name for c in columns if isinstance(c.type, JSONB)]
    out = []
    for record in records:
        row = dict(zip(names, record, strict=True))
        for name in documents:
            row[name] = json_value(row[name])
        out.append(row)
    return out


_TIMELINE_COLUMNS = list(events.c)
_ALIAS_COLUMNS = [aliases.c.scheme, aliases.c.value]
_AMENDMENT_COLUMNS = list(amendments.c)
#: A battery's history in one statement, each part on its own index: its row (primary key), its timeline (the
#: events' primary key), its aliases and amendments (by battery), and whether anything was ever assembled into it
#: (ix_events_parent; only then is its composition looked up).
HISTORY = (
    f"SELECT b.*, {_rows(events, _TIMELINE_COLUMNS, 't.battery_id = b.id ORDER BY t.sequence')} AS timeline, "
    f"{_rows(aliases, _ALIAS_COLUMNS, 't.battery_id = b.id ORDER BY t.value')} AS aliases, "
    f"{_rows(amendments, _AMENDMENT_COLUMNS, 't.battery_id = b.id ORDER BY t.number')} AS amendments, "
    f"EXISTS (SELECT 1 FROM {EVENTS} c WHERE c.parent_id = b.id) AS assembled_into "
    f"FROM {BATTERIES} b WHERE b.id = $1"
)
_HISTORY_PARTS = ("timeline", "aliases", "amendments", "assembled_into")


@dataclass(frozen=True, slots=True)
class HistoryRows:
    """What a battery's history is made from (`HISTORY`): its row, its events in sequence order, its aliases, its
    amendments in number order, and whether any battery was ever assembled into it."""

    battery: dict[str, Any]
    timeline: list[dict[str, Any]]
    aliases: list[dict[str, Any]]
    amendments: list[dict[str, Any]]
    assembled_into: bool


async def history_of(conn: asyncpg.Connection, battery_id: str) -> HistoryRows | None:
    row = await conn.fetchrow(HISTORY, battery_id)
    if row is None:
        return None
    return HistoryRows(
        battery={k: v for k, v in row.items() if k not in _HISTORY_PARTS},
        timeline=_dicts(_TIMELINE_COLUMNS, row["timeline"]),
        aliases=_dicts(_ALIAS_COLUMNS, row["aliases"]),
        amendments=_dicts(_AMENDMENT_COLUMNS, row["amendments"]),
        assembled_into=row["assembled_into"],
    )


async def get_battery(conn: asyncpg.Connection, battery_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET_BATTERY, battery_id)
    return dict(row) if row else None


async def resolve_alias(conn: asyncpg.Connection, value: str) -> str | None:
    """An alias (GS1 Digital Link, EPC, VIN) from the registry, else the VIN the battery was installed in."""
    found: str | None = await conn.fetchval(RESOLVE_ALIAS, value)
    return found


async def timeline(conn: asyncpg.Connection, battery_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(TIMELINE, battery_id)
    return [dict(r) for r in rows]


async def amendments_of(conn: asyncpg.Connection, battery_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(AMENDMENTS, battery_id)
    return [{**dict(r), "changes": json_value(r["changes"])} for r in rows]


async def relation_facts(conn: asyncpg.Connection, org: str, battery_id: str) -> dict[str, bool]:
    """What the battery's timeline proves about `org`: a custodian of it once (`past`), named its consignee
    (`consigned`), posted a SAFETY_INSPECTED for it (`certified`). On the battery's own rows (primary key)."""
    row = await conn.fetchrow(
        f"SELECT EXISTS (SELECT 1 FROM {EVENTS} WHERE battery_id = $2 AND custodian_after = $1 AND {IN_EFFECT}) "
        f"AS past, EXISTS (SELECT 1 FROM {EVENTS} WHERE battery_id = $2 AND data->>'consignee' = $1 AND {IN_EFFECT}) "
        f"AS consigned, EXISTS (SELECT 1 FROM {EVENTS} WHERE battery_id = $2 AND type = 'SAFETY_INSPECTED' "
        f"AND actor = $1 AND {IN_EFFECT}) AS certified",
        org,
        battery_id,
    )
    return {k: bool(row[k]) for k in ("past", "consigned", "certified")} if row else {}


async def participants_by_id(session: AsyncSession, ids: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    """The participants of these IDs (one statement); an unknown one is absent."""
    wanted = sorted({i for i in ids if i})
    rows = (await session.execute(select(participants).where(participants.c.id.in_(wanted)))).mappings()
    return {r["id"]: row_dict(r) for r in rows}


async def children_at(conn: asyncpg.Connection, parent_ids: Sequence[str], at: datetime) -> dict[str, str]:
    """{child: parent} for the batteries inside `parent_ids` at time `at`: a battery is inside the parent
    of its last ASSEMBLED (not followed by a DISASSEMBLED) that occurred by then."""
    if not parent_ids:
        return {}
    # Two indexed steps: who was ever assembled into these parents (ix_events_parent), then each one's
    # last assembly event by then (primary key). One joined statement let the planner scan the table.
    candidates = [
        r["battery_id"]
        for r in await conn.fetch(
            f"SELECT DISTINCT battery_id FROM {EVENTS} WHERE parent_id = ANY($1::text[])", list(parent_ids)
        )
    ]
    if not candidates:
        return {}
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (battery_id) battery_id, type, parent_id FROM {EVENTS} "
        "WHERE battery_id = ANY($1::text[]) AND type IN ('ASSEMBLED', 'DISASSEMBLED') AND occurred_at <= $2 "
        f"AND {IN_EFFECT} ORDER BY battery_id, sequence DESC",
        candidates,
        at,
    )
    wanted = set(parent_ids)
    return {r["battery_id"]: r["parent_id"] for r in rows if r["type"] == "ASSEMBLED" and r["parent_id"] in wanted}


async def parent_at(conn: asyncpg.Connection, battery_id: str, at: datetime) -> str | None:
    row = await conn.fetchrow(
        f"SELECT type, parent_id FROM {EVENTS} WHERE battery_id = $1 AND type IN ('ASSEMBLED', 'DISASSEMBLED') "
        f"AND occurred_at <= $2 AND {IN_EFFECT} ORDER BY sequence DESC LIMIT 1",
        battery_id,
        at,
    )
    return row["parent_id"] if row is not None and row["type"] == "ASSEMBLED" else None


async def summaries(conn: asyncpg.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT id, kind, model_id, manufacturer, state FROM {BATTERIES} WHERE id = ANY($1::text[])", list(ids)
    )
    return {r["id"]: dict(r) for r in rows}


async def search(
    session: AsyncSession, f: BatterySearch, handler_org: str | None, after: str | None, limit: int
) -> list[dict[str, Any]]:
    """`f.vin`: the VIN's pseudonym as the ledger holds it."""
    equal = (
        (batteries.c.state, f.state),
        (batteries.c.manufacturer, f.manufacturer),
        (batteries.c.chemistry, f.chemistry),
        (batteries.c.region, f.region),
    )
    q = keyset(select(batteries), batteries.c.id, after, limit, equal)
    if (vin := f.vin) is not None:  # ever installed into the vehicle (ix_events_installed_vin), or a legacy VIN alias
        by_alias = select(aliases.c.battery_id).where(aliases.c.value == vin, aliases.c.scheme == "vin")
        installed = select(events.c.battery_id).where(events.c.type == "INSTALLED", events.c.data["vin"].astext == vin)
        q = q.where(or_(batteries.c.id.in_(installed), batteries.c.id.in_(by_alias)))
    if handler_org is not None:
        q = q.where(exists().where(and_(handlers.c.org == handler_org, handlers.c.battery_id == batteries.c.id)))
    return [row_dict(r) for r in (await session.execute(q)).mappings()]
