"""Every query of the lifecycle domain. Set-based: one statement per step whatever the batch size.

These run on the asyncpg connection under the request's session (same transaction), because the
capture path is the hot path of the whole system: arrays in, arrays out, no ORM objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle.models import BatteryState, LedgerEntry
from services.events.models import Outbox
from shared.db import (
    column_arrays,
    column_values,
    insert_rows,
    json_text,
    json_value,
    names,
    pg_type,
    qualified,
    raw_connection,
    select_list,
    unnest,
)
from shared.outbox import message_columns, payload_text

_state = BatteryState.__table__
_ledger = LedgerEntry.__table__
_outbox = Outbox.__table__

#: A battery's state as the rules see it (all but the bookkeeping `updated_at`).
_STATE = [c for c in _state.c if c.name != "updated_at"]
#: What a battery's genesis sets: the state's required columns (the rest start null or at their default).
_GENESIS = [c for c in _STATE if not c.nullable]
#: What an event moves: all but the facts its genesis fixed.
_MOVED = [c for c in _STATE if c.name not in ("kind", "model_id", "manufacturer")]
_LEDGER = list(_ledger.c)
_MESSAGE = message_columns(_outbox)

STATE_COLUMNS = names(_STATE)
_SELECT_STATE = f"SELECT {STATE_COLUMNS} FROM {qualified(_state)}"
_LOCK_STATES = f"{_SELECT_STATE} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id FOR UPDATE"
_GET_STATES = f"{_SELECT_STATE} WHERE battery_id = ANY($1::text[])"
#: Whole ledgers, for the batteries an ERROR_DECLARED corrects (their states are locked: no row is added meanwhile).
_LEDGERS = f"SELECT {names(_LEDGER)} FROM {qualified(_ledger)} WHERE battery_id = ANY($1::text[]) ORDER BY battery_id, sequence"
_GET_STATE = f"{_SELECT_STATE} WHERE battery_id = $1"
#: What a retried or replayed event is checked against.
_FOUND = [
    _ledger.c[n]
    for n in (
        "event_id",
        "battery_id",
        "sequence",
        "type",
        "actor",
        "hash",
        "state_after",
        "custodian_after",
        "request_digest",
    )
]
#: A poster's own events by ID (event IDs are unique per poster; the server's MANUFACTURED rows are not a poster's).
_FIND_EVENTS = (
    f"SELECT {select_list(_FOUND)} FROM {qualified(_ledger)} "
    "WHERE actor = $1 AND event_id = ANY($2::uuid[]) AND type <> 'MANUFACTURED'"
)
#: Events an ERROR_DECLARED may name: by ID, on the declaring batteries or the poster's own.
_FIND_DECLARABLE = (
    f"SELECT {select_list(_FOUND)} FROM {qualified(_ledger)} "
    "WHERE event_id = ANY($1::uuid[]) AND (battery_id = ANY($2::text[]) OR actor = $3)"
)
#: Serialises one poster's concurrent posts of one event ID (on different batteries the row locks do not), so
#: the second finds the first instead of hitting the unique index. Taken before the row locks, in key order.
_LOCK_EVENT_IDS = (
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended($1 || '/' || i, 0) AS k "
    "FROM unnest($2::text[]) AS i ORDER BY k) AS keys"
)
_INSERT_GENESIS = f"{insert_rows(_state, _GENESIS)} ON CONFLICT (battery_id) DO NOTHING RETURNING battery_id"
_MOVE_STATES = (
    f", s AS (UPDATE {qualified(_state)} b SET "
    + ", ".join(f"{c.name} = u.{c.name}" for c in _MOVED if not c.primary_key)
    + f", updated_at = now() FROM {unnest(_MOVED, len(_LEDGER) + len(_MESSAGE) + 1)} AS u({names(_MOVED)}) "
    "WHERE b.battery_id = u.battery_id RETURNING 1)"
)
#: A registration arriving after the battery's ledger began by read-through (which answers no material content)
#: completes the facts the plausibility rules use; rows locked in ID order, as capture locks them.
_FILL_FACTS = (
    f"WITH u AS (SELECT * FROM unnest($1::text[], $2::jsonb[]) AS u(battery_id, facts)), "
    f"l AS (SELECT b.battery_id FROM {qualified(_state)} b JOIN u USING (battery_id) "
    "WHERE b.facts IS DISTINCT FROM u.facts ORDER BY b.battery_id FOR UPDATE OF b) "
    f"UPDATE {qualified(_state)} b SET facts = u.facts FROM u JOIN l USING (battery_id) "
    "WHERE b.battery_id = u.battery_id"
)
#: One event's battery and the poster's own event with its ID, in one snapshot, outside any transaction: what the
#: optimistic single-event capture (`append_one`) decides on. `row_version` (the state row's xmin) is the version
#: the decision was made on; `prior_*` are the poster's event with that ID, if there is one.
_READ_ONE = (
    "SELECT "
    + ", ".join(f"s.{c.name}" for c in _STATE)
    + ", s.xmin::text AS row_version, "
    + ", ".join(
        f"p.{c.name}::text AS prior_{c.name}" if isinstance(c.type, UUID) else f"p.{c.name} AS prior_{c.name}"
        for c in _FOUND
    )
    + f" FROM (SELECT 1) AS one LEFT JOIN {qualified(_state)} s ON s.battery_id = $1 "
    f"LEFT JOIN {qualified(_ledger)} p ON p.actor = $2 AND p.event_id = $3::uuid AND p.type <> 'MANUFACTURED'"
)
_APPEND = (
    f"WITH l AS ({insert_rows(_ledger, _LEDGER)} RETURNING 1)",
    f" {insert_rows(_outbox, _MESSAGE, len(_LEDGER) + 1)}",
)


def _append_one() -> str:
    """One event appended in one autocommit statement, only if its battery's state row is still the version its
    decision read (xmin): the state moved, the ledger row and the outbox row, or nothing. The poster's event-ID
    lock (`_LOCK_EVENT_IDS`) is taken first (a one-time filter, evaluated before any row is read or locked),
    so it orders against batch captures as their own locks do. Scalar parameters (one row: no arrays to encode
    and unnest); JSON goes as text (on the statement pool too, whose connections would encode a JSONB parameter
    once more)."""
    ledger, message = len(_LEDGER), len(_MESSAGE)
    moved = {c.name: i for i, c in enumerate(_MOVED, ledger + message + 1)}
    version = ledger + message + len(_MOVED) + 1
    at = {c.name: i for i, c in enumerate(_LEDGER, 1)}
    return (
        f"WITH s AS (UPDATE {qualified(_state)} SET "
        + ", ".join(f"{c.name} = {_param(moved[c.name], c)}" for c in _MOVED if not c.primary_key)
        + f", updated_at = now() WHERE battery_id = ${moved['battery_id']}::text AND xmin = ${version}::text::xid "
        "AND (SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended("
        f"${at['actor']}::text || '/' || ${at['event_id']}::text, 0))) AS k) = 1 RETURNING 1), "
        f"l AS (INSERT INTO {qualified(_ledger)} ({names(_LEDGER)}) SELECT "
        + ", ".join(_param(i, c) for i, c in enumerate(_LEDGER, 1))
        + " WHERE EXISTS (SELECT FROM s) RETURNING 1) "
        f"INSERT INTO {qualified(_outbox)} ({names(_MESSAGE)}) SELECT "
        + ", ".join(_param(i, c) for i, c in enumerate(_MESSAGE, ledger + 1))
        + " WHERE EXISTS (SELECT FROM s)"
    )


def _param(i: int, column: Any) -> str:
    """`$i` typed as the column; JSON and JSONB (the outbox payload, the ledger's data) as text cast to the
    column's type (see `_append_one`)."""
    cast = "::text" if isinstance(column.type, JSON) else ""  # JSONB is a JSON
    return f"${i}{cast}::{pg_type(column)}"


_APPEND_ONE = _append_one()


_JSON_STATE = [c.name for c in _STATE if isinstance(c.type, JSONB)]


def _state_row(r: Any) -> dict[str, Any]:
    d = dict(r)
    for name in _JSON_STATE:
        if d.get(name) is not None:
            d[name] = json_value(d[name])
    return d


async def lock_states(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Current states, row-locked in ID order (so concurrent writers never deadlock or fork a chain)."""
    conn = await raw_connection(session)
    rows = await conn.fetch(_LOCK_STATES, list(battery_ids))
    return {r["battery_id"]: _state_row(r) for r in rows}


async def get_states(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Current states, unlocked (what a correction's fold reads of the assembly parents)."""
    conn = await raw_connection(session)
    return {r["battery_id"]: _state_row(r) for r in await conn.fetch(_GET_STATES, list(battery_ids))}


async def ledgers(session: AsyncSession, battery_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each battery's whole ledger in sequence order."""
    conn = await raw_connection(session)
    out: dict[str, list[dict[str, Any]]] = {b: [] for b in battery_ids}
    for r in await conn.fetch(_LEDGERS, list(battery_ids)):
        row = dict(r)
        row["location"], row["data"] = json_value(row["location"]), json_value(row["data"])
        out[row["battery_id"]].append(row)
    return out


async def get_state(session: AsyncSession, battery_id: str) -> dict[str, Any] | None:
    conn = await raw_connection(session)
    r = await conn.fetchrow(_GET_STATE, battery_id)
    return _state_row(r) if r else None


async def lock_event_ids(session: AsyncSession, actor: str, event_ids: Sequence[str]) -> None:
    """Hold the poster's event IDs until the transaction ends (see `_LOCK_EVENT_IDS`)."""
    conn = await raw_connection(session)
    await conn.execute(_LOCK_EVENT_IDS, actor, list(event_ids))


async def find_events(session: AsyncSession, actor: str, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The poster's own events with these IDs."""
    conn = await raw_connection(session)
    rows = await conn.fetch(_FIND_EVENTS, actor, list(event_ids))
    return {r["event_id"]: dict(r) for r in rows}


async def find_declarable(
    session: AsyncSession, event_ids: Sequence[str], battery_ids: Sequence[str], actor: str
) -> list[dict[str, Any]]:
    """Events with these IDs on these batteries, or the poster's own anywhere."""
    conn = await raw_connection(session)
    rows = await conn.fetch(_FIND_DECLARABLE, list(event_ids), list(battery_ids), actor)
    return [dict(r) for r in rows]


async def insert_genesis(session: AsyncSession, states: Sequence[dict[str, Any]]) -> set[str]:
    """Insert battery states that do not exist yet; returns the IDs actually inserted."""
    if not states:
        return set()
    conn = await raw_connection(session)
    rows = await conn.fetch(_INSERT_GENESIS, *column_arrays(states, _GENESIS))
    return {r["battery_id"] for r in rows}


async def fill_facts(session: AsyncSession, facts: Mapping[str, dict[str, Any]]) -> None:
    """Set the registry facts of batteries whose ledgers exist (by battery ID)."""
    if not facts:
        return
    conn = await raw_connection(session)
    ids = sorted(facts)
    await conn.execute(_FILL_FACTS, ids, [json_text(facts[i]) for i in ids])


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
    topics, keys, payloads = [m[0] for m in outbox], [m[1] for m in outbox], [payload_text(m[2]) for m in outbox]
    args = [*column_arrays(ledger_rows, _LEDGER), topics, keys, payloads]
    moves = update_states and bool(states)
    if moves:
        args += column_arrays(states, _MOVED)
    await conn.execute(_APPEND[0] + (_MOVE_STATES if moves else "") + _APPEND[1], *args)


async def read_one(
    conn: Any, battery_id: str, actor: str, event_id: str
) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """(the battery's state, its row version, the poster's own event with this ID), in one snapshot: on a
    connection outside any transaction (the statement pool), for `append_one`."""
    r = await conn.fetchrow(_READ_ONE, battery_id, actor, event_id)
    prior = {c.name: r[f"prior_{c.name}"] for c in _FOUND} if r["prior_event_id"] is not None else None
    if r["battery_id"] is None:
        return None, None, prior
    return _state_row({c.name: r[c.name] for c in _STATE}), r["row_version"], prior


async def append_one(
    conn: Any,
    row: dict[str, Any],
    state: dict[str, Any],
    message: tuple[str, str, dict[str, Any]],
    *,
    version: str,
) -> bool:
    """Append one ledger row, move its battery's state and enqueue its message in one autocommit statement, if the
    state row is still at `version` (see `_append_one`). False: the state moved meanwhile and nothing was written.
    A concurrent twin (the poster's same event ID) raises UniqueViolationError; nothing is written then either."""
    topic, key, payload = message
    args = [*column_values(row, _LEDGER), topic, key, payload_text(payload), *column_values(state, _MOVED), version]
    status: str = await conn.execute(_APPEND_ONE, *args)
    return status.endswith(" 1")
