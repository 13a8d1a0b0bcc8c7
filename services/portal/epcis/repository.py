"""Every query of the portal's EPCIS view (tables `portal.epcis_events`, `portal.epcis_declarations`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.epcis import query
from services.portal.epcis.models import EpcisDeclaration, EpcisEvent
from services.portal.models import Alias, Handler
from shared.contract.epcis import event_uri
from shared.db import json_text, json_value, names, pg_type, qualified, raw_connection

_events = EpcisEvent.__table__
EVENTS = qualified(_events)
DECLARATIONS = qualified(EpcisDeclaration.__table__)
HANDLERS = qualified(Handler.__table__)
ALIASES = qualified(Alias.__table__)
#: What a projection writes: every column but the error declaration (`mark_declared` sets it) and the arrival
#: order (`seq`, the identity column).
COLUMNS = [c for c in _events.c if c.name not in ("error_declaration", "seq")]
_ARRAYS = {c.name for c in COLUMNS if isinstance(c.type, ARRAY)}
_JSON = {c.name for c in COLUMNS if isinstance(c.type, JSONB)}
#: One projection transaction at a time: a captured document replaces the ledger-made rows it covers, and a
#: ledger-made row is only added while no captured document covers it (the two arrive on different topics).
LOCK_KEY = 0x65706369  # 'epci'


def _pg_array(values: Sequence[str]) -> str:
    """A text[] literal (arrays of arrays cannot travel through unnest)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


async def lock(session: AsyncSession) -> None:
    conn = await raw_connection(session)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)


def _arrays(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for c in COLUMNS:
        values = [r.get(c.name) for r in rows]
        if c.name in _ARRAYS:
            values = [_pg_array(v or []) for v in values]
        elif c.name in _JSON:
            values = [json_text(v) for v in values]
        out.append(values)
    return out


def _select() -> str:
    # Arrays and JSON travel as text (arrays of arrays cannot go through unnest) and are cast back.
    params = ", ".join(
        f"${i}::{'TEXT' if c.name in _ARRAYS or c.name in _JSON else pg_type(c)}[]" for i, c in enumerate(COLUMNS, 1)
    )
    casts = ", ".join(
        f"u.{c.name}::{pg_type(c)}" if c.name in _ARRAYS or c.name in _JSON else f"u.{c.name}" for c in COLUMNS
    )
    return f"SELECT {casts} FROM unnest({params}) AS u({names(COLUMNS)})"


_INSERT = f"INSERT INTO {EVENTS} ({names(COLUMNS)}) {_select()}"
_SEARCHED = [
    _events.c[n]
    for n in (
        "source",
        "actor",
        "event_id",
        "record_time",
        "event_time",
        "ledger_event_ids",
        "battery_ids",
        "context",
        "body",
        "error_declaration",
        "seq",
    )
]


#: A ledger-made row is `from_ledger`'s: its eventID is its one ledger event's `event_uri`, so the rows a captured
#: document stands for are found by eventID (the primary key's first column).
_DELETE_COVERED = f"DELETE FROM {EVENTS} WHERE source = 'ledger' AND event_id = ANY($1::text[])"
#: The ledger IDs of `$1` that a captured EPCIS event stands for. Each ID is looked up on its own in the GIN index
#: (`@> ARRAY[id]`, one search each, no pending list), inside an ARRAY() sub-select, which PostgreSQL never turns
#: into a join: as a join with the thousand IDs of a batch (or as one `ledger_event_ids && $1`) the planner, which
#: estimates each `@>` at 0.5 % of the table whatever its size, chose a sequential scan testing every row against
#: every ID (seconds per batch at 200,000 rows, five minutes at 7,000,000: the view stopped keeping up). Per ID,
#: a search of the index is always cheaper than a scan of the table. The source is tested on the search's rows,
#: not in its condition: with statistics from before the first capture, `source = 'epcis'` would be planned as
#: reading every captured row for every ID.
_COVERING = (
    "SELECT i.id FROM unnest($1::text[]) AS i(id) WHERE 'epcis' = ANY (ARRAY("
    f"SELECT e.source FROM {EVENTS} e WHERE e.ledger_event_ids @> ARRAY[i.id]))"
)


async def add_captured(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Captured EPCIS events (upsert by capturer and eventID); the ledger-made rows they stand for give way.
    `ledger_event_ids` come from the events service (the ledger events the capture made), never from a body."""
    if not rows:
        return
    conn = await raw_connection(session)
    covered = sorted({event_uri(i) for r in rows for i in r["ledger_event_ids"]})
    if covered:
        await conn.execute(_DELETE_COVERED, covered)
    await conn.execute(
        f"{_INSERT} ON CONFLICT (source, actor, event_id) DO UPDATE SET body = excluded.body, epcs = excluded.epcs, "
        "battery_ids = excluded.battery_ids, ledger_event_ids = excluded.ledger_event_ids",
        *_arrays(rows),
    )


async def add_ledger(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Ledger-made EPCIS events, unless a captured document already stands for them."""
    if not rows:
        return
    conn = await raw_connection(session)
    ids = sorted({i for r in rows for i in r["ledger_event_ids"]})
    covered = {rec["id"] for rec in await conn.fetch(_COVERING, ids)}
    rows = [r for r in rows if not covered.intersection(r["ledger_event_ids"])]
    if not rows:
        return
    await conn.execute(
        f"{_INSERT} ON CONFLICT (source, actor, event_id) DO NOTHING",
        *_arrays(rows),
    )


async def _unnest(session: AsyncSession, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`sql` over `rows` given as one array a column (`$1`, `$2`, ...), the last column (a declaration) as
    JSON; nothing for no rows."""
    if rows:
        columns = [list(c) for c in zip(*rows, strict=True)]
        columns[-1] = [json_text(v) for v in columns[-1]]
        await (await raw_connection(session)).execute(sql, *columns)


async def add_declarations(session: AsyncSession, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
    sql = (
        f"INSERT INTO {DECLARATIONS} ({names(list(EpcisDeclaration.__table__.c))}) "
        "SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT (declared_event_id) DO UPDATE "
        "SET declaration = excluded.declaration"
    )
    await _unnest(session, sql, rows)


async def mark_declared(session: AsyncSession, rows: Sequence[tuple[str | None, str, dict[str, Any]]]) -> None:
    """Captured events (capturer, eventID) declared in error. A message from before capturers were named
    (capturer None) marks the captured events of that eventID."""
    sql = (
        f"UPDATE {EVENTS} e SET error_declaration = u.d "
        "FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(actor, id, d) "
        "WHERE e.source = 'epcis' AND e.event_id = u.id AND (u.actor IS NULL OR e.actor = u.actor)"
    )
    await _unnest(session, sql, rows)


def _declaration() -> str:
    """An event's error declaration, wherever the portal keeps it (captured with it, declared later, or a
    ledger event's ERROR_DECLARED)."""
    return (
        "COALESCE(e.error_declaration, e.body->'errorDeclaration', (SELECT d.declaration FROM "
        f"{DECLARATIONS} d WHERE d.declared_event_id = ANY(e.ledger_event_ids) LIMIT 1))"
    )


def _jsonpath_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def condition_sql(c: query.Condition, arg: Callable[[Any, str], str]) -> str:
    """One parsed query condition as a SQL predicate over `e` (a row of the portal's EPCIS table)."""
    if isinstance(c, query.Column):
        cast = "timestamptz" if c.column in ("event_time", "record_time") else "text"
        if c.op == "==":
            return f"e.{c.column} = ANY({arg(list(c.values), cast + '[]')})"
        return f"e.{c.column} {c.op} {arg(c.values[0], cast)}"
    if isinstance(c, query.Ids):
        ors = []
        if c.values and c.column == "epcs":
            ors.append(f"e.epcs && {arg(list(c.values), 'text[]')}")
        elif c.values and c.column == "any":
            p = arg(list(c.values), "text[]")
            ors.append(f"(e.epcs && {p} OR e.parent_id = ANY({p}))")
        for path in c.paths:
            tests = []
            if c.values and c.column is None:
                tests.append(f"x #>> '{{}}' = ANY({arg(list(c.values), 'text[]')})")
            if c.patterns:
                tests.append(f"x #>> '{{}}' ~ ANY({arg(list(c.patterns), 'text[]')})")
            if tests:
                ors.append(
                    f"EXISTS (SELECT 1 FROM jsonb_path_query(e.body, {arg(path, 'jsonpath')}) x "
                    f"WHERE {' OR '.join(tests)})"
                )
        return "(" + " OR ".join(ors) + ")" if ors else "FALSE"
    target = _declaration() if c.on_declaration else "e.body"
    if c.op == "exists":
        if c.paths == ("$",):
            return f"{target} IS NOT NULL"
        return "(" + " OR ".join(f"jsonb_path_exists({target}, {arg(p, 'jsonpath')})" for p in c.paths) + ")"
    names = [f"v{i}" for i in range(len(c.values))]
    variables = {n: _jsonpath_value(v) for n, v in zip(names, c.values, strict=True)}
    times = any(isinstance(v, datetime) for v in c.values)
    at = "@.datetime()" if times else "@"
    test = " || ".join(f"{at} {c.op} ${n}" + (".datetime()" if times else "") for n in names)
    return (
        "("
        + " OR ".join(
            f"jsonb_path_exists({target}, {arg(f'{p} ? ({test})', 'jsonpath')}, {arg(orjson.dumps(variables).decode(), 'jsonb')})"
            for p in c.paths
        )
        + ")"
    )


@dataclass
class Filters:
    event_types: list[str] = field(default_factory=list)
    ge_event_time: datetime | None = None
    lt_event_time: datetime | None = None
    ge_record_time: datetime | None = None
    lt_record_time: datetime | None = None
    biz_steps: list[str] = field(default_factory=list)
    dispositions: list[str] = field(default_factory=list)
    epcs: list[str] = field(default_factory=list)
    any_epcs: list[str] = field(default_factory=list)
    biz_locations: list[str] = field(default_factory=list)
    read_points: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    conditions: list[query.Condition] = field(default_factory=list)
    handler_org: str | None = None  # None: sees everything
    after: tuple[datetime, str, str, str] | None = None  # (order time, event_id, actor, source)
    order_by: str = "record_time"
    descending: bool = False
    #: Subscriptions: only rows that arrived after this `seq` (and then in arrival order, whatever `order_by`).
    after_seq: int | None = None


async def battery_uris_of_aliases(session: AsyncSession, values: Sequence[str]) -> dict[str, str]:
    if not values:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(f"SELECT value, battery_id FROM {ALIASES} WHERE value = ANY($1::text[])", list(values))
    return {r["value"]: r["battery_id"] for r in rows}


async def search(session: AsyncSession, f: Filters, limit: int) -> list[dict[str, Any]]:
    conn = await raw_connection(session)
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any, cast: str) -> str:
        args.append(value)
        return f"${len(args)}::{cast}"

    for column, values in (
        ("event_type", f.event_types),
        ("biz_step", f.biz_steps),
        ("disposition", f.dispositions),
        ("biz_location", f.biz_locations),
        ("read_point", f.read_points),
        ("event_id", f.event_ids),
    ):
        if values:
            where.append(f"e.{column} = ANY({arg(values, 'text[]')})")
    for column, op, value in (
        ("event_time", ">=", f.ge_event_time),
        ("event_time", "<", f.lt_event_time),
        ("record_time", ">=", f.ge_record_time),
        ("record_time", "<", f.lt_record_time),
    ):
        if value is not None:
            where.append(f"e.{column} {op} {arg(value, 'timestamptz')}")
    if f.epcs:
        where.append(f"e.epcs && {arg(f.epcs, 'text[]')}")
    if f.any_epcs:
        p = arg(f.any_epcs, "text[]")
        where.append(f"(e.epcs && {p} OR e.parent_id = ANY({p}))")
    where += [condition_sql(c, arg) for c in f.conditions]
    if f.handler_org is not None:
        p = arg(f.handler_org, "text")
        where.append(
            f"(e.actor = {p} OR EXISTS (SELECT 1 FROM {HANDLERS} h WHERE h.org = {p} "
            "AND h.battery_id = ANY(e.battery_ids)))"
        )
    order = "event_time" if f.order_by == "event_time" else "record_time"
    keys = f"e.{order}, e.event_id, e.actor, e.source"
    if f.after_seq is not None:
        where.append(f"e.seq > {arg(f.after_seq, 'bigint')}")
        keys = "e.seq"
    elif f.after is not None:
        t, i, a, src = f.after
        where.append(
            f"({keys}) {'<' if f.descending else '>'} "
            f"({arg(t, 'timestamptz')}, {arg(i, 'text')}, {arg(a, 'text')}, {arg(src, 'text')})"
        )
    direction = " DESC" if f.descending else ""
    sql = (
        f"SELECT {names(_SEARCHED)} "
        f"FROM {EVENTS} e {'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY {', '.join(k + direction for k in keys.split(', '))} LIMIT {arg(limit, 'int')}"
    )
    rows = await conn.fetch(sql, *args)
    return [
        {
            **dict(r),
            "context": json_value(r["context"]),
            "body": json_value(r["body"]),
            "error_declaration": json_value(r["error_declaration"]) if r["error_declaration"] is not None else None,
        }
        for r in rows
    ]


async def distinct(session: AsyncSession, column: str, handler_org: str | None, limit: int) -> list[str]:
    assert column in ("epcs", "biz_step", "biz_location", "read_point", "disposition")
    conn = await raw_connection(session)
    value = "v" if column == "epcs" else f"e.{column}"
    source = f"{EVENTS} e, unnest(e.epcs) v" if column == "epcs" else f"{EVENTS} e"
    where = [f"{value} IS NOT NULL"]
    args: list[Any] = [limit]
    if handler_org is not None:
        args.append(handler_org)
        where.append(
            f"(e.actor = $2 OR EXISTS (SELECT 1 FROM {HANDLERS} h WHERE h.org = $2 AND h.battery_id = ANY(e.battery_ids)))"
        )
    rows = await conn.fetch(
        f"SELECT DISTINCT {value} AS value FROM {source} WHERE {' AND '.join(where)} ORDER BY 1 LIMIT $1", *args
    )
    return [r["value"] for r in rows]


async def declarations(session: AsyncSession, ledger_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ledger_ids:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"SELECT declared_event_id, declaration FROM {DECLARATIONS} WHERE declared_event_id = ANY($1::text[])",
        list(ledger_ids),
    )
    return {r["declared_event_id"]: json_value(r["declaration"]) for r in rows}


async def preferred_aliases(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, str]:
    """Each battery's EPC alias (or else its GS1 Digital Link), to name it in EPCIS answers."""
    if not battery_ids:
        return {}
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (battery_id) battery_id, value FROM {ALIASES} "
        "WHERE battery_id = ANY($1::text[]) AND scheme IN ('epc', 'gs1_digital_link') "
        "ORDER BY battery_id, (scheme = 'epc') DESC, value",
        list(battery_ids),
    )
    return {r["battery_id"]: r["value"] for r in rows}
