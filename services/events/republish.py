"""Republish from the system of record: every ledger event, read from `events.ledger` in each battery's
sequence order and queued on the outbox again as the lifecycle message it was (same CloudEvent ID, same
data); the relay leader publishes them after whatever is queued already. The outbox is only a buffer (pruned
after `outbox_retention_days`), so this is what brings battery.lifecycle.v1 back after the broker lost it
(and, for a whole republish, battery.vins.v1 and battery.log.checkpoints.v1 from their tables).
Consumers dedupe on the event ID and fold a battery's events in sequence order, so re-sent events change
nothing they have."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events.lifecycle.models import BatteryState, LedgerEntry
from services.events.lifecycle.service import lifecycle_message
from services.events.log.models import LogCheckpoint, LogCosignature
from services.events.log.repository import StoredCheckpoint
from services.events.log.service import checkpoint_message
from services.events.models import SCHEMA
from services.events.vins.models import Vin
from services.events.vins.service import recorded_message
from shared.contract.streams import TOPIC_VINS
from shared.db import make_sessionmaker, row_dict
from shared.outbox import OutboxMessage, enqueue
from shared.records import LedgerRecordFields

#: Ledger events read and queued per transaction.
CHUNK = 5_000


async def republish(
    engine: AsyncEngine,
    *,
    battery: str | None = None,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Queue every ledger event (or one battery's, or those recorded at or after `since`), battery by battery
    in sequence order. Returns how many were queued."""
    ledger, states = LedgerEntry.__table__, BatteryState.__table__
    columns = [ledger.c[name] for name in LedgerRecordFields.model_fields]
    base = (
        select(*columns, states.c.kind, states.c.manufacturer)
        .join(states, states.c.battery_id == ledger.c.battery_id)
        .order_by(ledger.c.battery_id, ledger.c.sequence)
        .limit(CHUNK)
    )
    if battery is not None:
        base = base.where(ledger.c.battery_id == battery)
    if since is not None:
        base = base.where(ledger.c.recorded_at >= since)
    maker = make_sessionmaker(engine)
    after: tuple[str, int] | None = None
    total = 0
    while True:
        stmt = base if after is None else base.where(tuple_(ledger.c.battery_id, ledger.c.sequence) > after)
        async with engine.connect() as conn:
            rows = [row_dict(r) for r in (await conn.execute(stmt)).mappings()]
        if not rows:
            if battery is None:
                total += await _republish_vins(engine, since)
                total += await _republish_checkpoints(engine, since)
            return total
        messages = [OutboxMessage(*lifecycle_message(_ledger_row(r), r["kind"], r["manufacturer"])) for r in rows]
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, messages)
        total += len(rows)
        if progress:
            progress(len(rows))
        after = (rows[-1]["battery_id"], rows[-1]["sequence"])


def _ledger_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in LedgerRecordFields.model_fields}


async def _republish_vins(engine: AsyncEngine, since: datetime | None) -> int:
    """The plain VINs behind the pseudonyms (battery.vins.v1), from `events.vins`: each kept VIN again, each
    erased one as its tombstone, so a portal rebuilt after the broker lost everything has them (and no erased
    one). Returns how many were queued."""
    vins = Vin.__table__
    stmt = select(vins.c.pseudonym, vins.c.vin).order_by(vins.c.pseudonym)
    if since is not None:
        stmt = stmt.where(vins.c.recorded_at >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    messages = [recorded_message(p, vin) if vin is not None else OutboxMessage(TOPIC_VINS, p, None) for p, vin in rows]
    maker = make_sessionmaker(engine)
    for start in range(0, len(messages), CHUNK):
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, messages[start : start + CHUNK])
    return len(messages)


async def _republish_checkpoints(engine: AsyncEngine, since: datetime | None) -> int:
    """The log's signed checkpoints (battery.log.checkpoints.v1), from `events.log_checkpoints`, each with
    every cosignature collected for it, smallest tree first: what the topic last said of each, so a portal
    rebuilt after the broker lost everything holds the same checkpoints. Returns how many were queued."""
    cps, cosigs = LogCheckpoint.__table__, LogCosignature.__table__
    stmt = select(cps.c.tree_size, cps.c.root_hash, cps.c.note, cps.c.log_key).order_by(cps.c.tree_size)
    if since is not None:
        stmt = stmt.where(cps.c.created_at >= since)
    signatures = select(cosigs.c.tree_size, cosigs.c.witness, cosigs.c.signature).order_by(
        cosigs.c.tree_size, cosigs.c.witness
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        signed: dict[int, list[tuple[str, str]]] = {}
        for size, witness, signature in (await conn.execute(signatures)).all():
            signed.setdefault(size, []).append((witness, signature))
    messages = [
        checkpoint_message(StoredCheckpoint(size, bytes(root), note, key), signed.get(size, []))
        for size, root, note, key in rows
    ]
    maker = make_sessionmaker(engine)
    for start in range(0, len(messages), CHUNK):
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, messages[start : start + CHUNK])
    return len(messages)
