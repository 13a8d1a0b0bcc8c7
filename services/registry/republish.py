"""Republish from the system of record: every participant, battery model, battery and alias, read from the
registry's tables and queued on the outbox again (the relay leader publishes them in order, after whatever
is queued already). The outbox itself is only a buffer (pruned after `outbox_retention_days`), so this is
what brings battery.registry.v1 back after the broker lost it. Consumers dedupe: re-sent facts change
nothing they have."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.registry.batteries.models import Alias, Battery
from services.registry.catalog.models import BatteryModel
from services.registry.catalog.service import model_facts
from services.registry.events import MODEL_FACTS, registry_message
from services.registry.models import SCHEMA
from services.registry.participants.models import Participant
from shared.contract.streams import manufactured_event_id
from shared.db import make_sessionmaker, row_dict
from shared.outbox import OutboxMessage, enqueue

#: Rows read and queued per transaction.
CHUNK = 5_000


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def participant_message(row: dict[str, Any]) -> OutboxMessage:
    """The participant's whole current record (its status included) as its registration, with the ID that
    registration had. Each participant message carries the whole record, so one says everything; a consumer
    that had the later suspensions and reactivations already keeps its newer state."""
    return registry_message("participant.registered", row["id"], _json_ready(row))


def battery_message(row: dict[str, Any], model: dict[str, Any]) -> OutboxMessage:
    data = {k: v for k, v in row.items() if k != "created_at"}
    data["manufactured_at"] = row["manufactured_at"].isoformat()
    data["model"] = {**{k: model[k] for k in MODEL_FACTS}, "passport": model.get("passport")}  # as registered
    return registry_message("battery.registered", row["id"], data, event_id=manufactured_event_id(row["id"]))


def alias_message(row: dict[str, Any]) -> OutboxMessage:
    alias = {"scheme": row["scheme"], "value": row["value"], "battery_id": row["battery_id"]}
    return registry_message("battery.alias_added", row["battery_id"], alias)


async def republish(
    engine: AsyncEngine,
    *,
    key: str | None = None,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Queue every participant, model, battery and alias (facts before what refers to them), or only those with
    this key (a participant, model or battery ID) or made at or after `since`. Returns how many of each."""
    maker = make_sessionmaker(engine)
    models: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}

    async def pages(table: Any, order: Any, key_column: Any, created: Any) -> AsyncIterator[list[dict[str, Any]]]:
        after: Any = None
        while True:
            stmt: Select[Any] = select(table).order_by(order).limit(CHUNK)
            if key is not None:
                stmt = stmt.where(key_column == key)
            if since is not None and created is not None:
                stmt = stmt.where(created >= since)
            if after is not None:
                stmt = stmt.where(order > after)
            async with engine.connect() as conn:
                rows = [row_dict(r) for r in (await conn.execute(stmt)).mappings()]
            if not rows:
                return
            yield rows
            after = rows[-1][order.name]

    async def queue(kind: str, messages: list[OutboxMessage]) -> None:
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, messages)
        counts[kind] = counts.get(kind, 0) + len(messages)
        if progress:
            progress(len(messages))

    p, m, b, a = Participant.__table__, BatteryModel.__table__, Battery.__table__, Alias.__table__
    async for rows in pages(p, p.c.id, p.c.id, p.c.get("created_at")):
        await queue("participants", [participant_message(r) for r in rows])
    async with engine.connect() as conn:
        models = {r["id"]: row_dict(r) for r in (await conn.execute(select(m))).mappings()}
    async for rows in pages(m, m.c.id, m.c.id, m.c.get("created_at")):
        await queue("models", [registry_message("model.registered", r["id"], model_facts(r)) for r in rows])
    async for rows in pages(b, b.c.id, b.c.id, b.c.created_at):
        await queue("batteries", [battery_message(r, models[r["model_id"]]) for r in rows])
    async for rows in pages(a, a.c.value, a.c.battery_id, a.c.created_at):
        await queue("aliases", [alias_message(r) for r in rows])
    return counts
