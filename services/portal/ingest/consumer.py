"""The portal's consumer: both streams into the read models, one database transaction per fetched batch.

Idempotent: every message is claimed in `applied_events` first, and only the newly claimed ones change
anything; ConsumerLoop commits the offsets after this transaction, so a crash in between only replays
messages that are then skipped."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.portal.ingest import repository as repo
from services.portal.ingest import service
from services.portal.ingest.schemas import AliasAddedIn, BatteryRegisteredIn, LifecycleEventIn, ModelIn, ParticipantIn
from services.portal.ingest.service import Flows, Message
from services.portal.models import SCHEMA
from shared.kafka import ConsumerLoop, ConsumerRecord, ensure_topics
from shared.settings import TOPIC_LIFECYCLE, TOPIC_REGISTRY, PortalSettings

log = logging.getLogger("batterytrace.portal")


class Ingestor:
    """Applies batches of stream records; `lag` facts for operations."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.last_applied_at: datetime | None = None

    async def handle(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        messages = service.unique(service.decode(r) for r in records)  # PoisonMessage for a bad one
        async with self.sessionmaker() as session, session.begin():
            await apply(session, messages)
        self.last_applied_at = datetime.now(UTC)


async def apply(session: AsyncSession, messages: Sequence[Message]) -> None:
    fresh = await repo.claim(session, [(m.stream, m.event_id) for m in messages])
    messages = [m for m in messages if (m.stream, m.event_id) in fresh]
    if not messages:
        return
    flows = Flows()
    participants, models, aliases = [], [], []
    registrations: dict[str, BatteryRegisteredIn] = {}
    events: list[LifecycleEventIn] = []
    for m in messages:
        body = m.body
        if isinstance(body, ParticipantIn):
            participants.append(body.model_dump())
        elif isinstance(body, ModelIn):
            models.append(body.model_dump())
        elif isinstance(body, AliasAddedIn):
            aliases.append(body.model_dump())
        elif isinstance(body, BatteryRegisteredIn):
            registrations[body.id] = body
            service.registration_flows(flows, body)
        elif isinstance(body, LifecycleEventIn):
            events.append(body)
    await repo.upsert_participants(session, _dedupe(participants, "id"))
    await repo.upsert_models(session, _dedupe(models, "id"))
    await repo.upsert_aliases(session, _dedupe(aliases, "value"))

    touched = sorted(set(registrations) | {e.battery_id for e in events})
    if not touched:
        return
    before = await repo.lock_batteries(session, touched)
    inserted = await repo.insert_events(session, [_event_row(e) for e in events])
    await repo.add_handlers(
        session,
        [(b.manufacturer, b.id) for b in registrations.values()]
        + [(org, e.battery_id) for e in events if e.event_id in inserted for org in (e.actor, e.custodian_after)]
        + [(e.manufacturer, e.battery_id) for e in events if e.manufacturer and e.event_id in inserted],
    )
    timelines = await repo.events_of(session, touched)
    envelope_facts = {e.battery_id: {"kind": e.kind, "manufacturer": e.manufacturer} for e in events}
    rows: list[dict[str, Any]] = []
    deltas: dict[tuple[str, ...], int] = {}
    for bid in touched:
        old = before[bid]
        row = dict(old)
        if bid in registrations:
            row.update(_facts(registrations[bid]))
        timeline = timelines[bid]
        if timeline:
            row.update(service.fold(timeline))
        for name, value in envelope_facts.get(bid, {}).items():
            row[name] = row.get(name) or value  # until the registration arrives
        for e in timeline:
            if e["event_id"] in inserted:
                service.event_flows(flows, e, timeline, row)
        if service.contained_flows(flows, row):
            row["contained_counted"] = True
        old_key, new_key = service.count_key(old), service.count_key(row)
        if old_key != new_key:
            if old_key:
                deltas[old_key] = deltas.get(old_key, 0) - 1
            if new_key:
                deltas[new_key] = deltas.get(new_key, 0) + 1
        rows.append(row)
    await repo.save_batteries(session, rows)
    await repo.add_counts(session, deltas)
    await repo.add_flows(session, flows.rows)


#: The registry facts a battery row keeps (the history answers them as they are).
REGISTRY_FACTS = (
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
    "model",
)


def _facts(b: BatteryRegisteredIn) -> dict[str, Any]:
    return {"registered": True, **b.model_dump(include=set(REGISTRY_FACTS))}


def _event_row(e: LifecycleEventIn) -> dict[str, Any]:
    row = e.model_dump(mode="python", exclude={"kind", "manufacturer"})
    row["type"] = e.type.value
    row["state_after"] = e.state_after.value
    row["location"] = e.location.model_dump(exclude_none=True)
    row["parent_id"] = e.data.get("parent_id") if e.type.value in ("ASSEMBLED", "DISASSEMBLED") else None
    return row


def _dedupe(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The last version of each row wins (one upsert may not touch a row twice)."""
    return list({r[key]: r for r in rows}.values())


@contextlib.asynccontextmanager
async def consumer_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: PortalSettings = app.state.settings
    ingestor = Ingestor(app.state.sessionmaker)
    app.state.ingestor = ingestor
    loop: ConsumerLoop | None = None
    if settings.consumers_enabled:
        topics = [settings.topic(TOPIC_REGISTRY), settings.topic(TOPIC_LIFECYCLE)]
        try:
            await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.kafka_partitions)
        except Exception as exc:  # the loop retries until the broker is back
            log.warning("portal: could not ensure topics %s: %r", topics, exc)
        loop = ConsumerLoop.for_service(
            settings,
            topics=topics,
            group_id=settings.consumer_group,
            handler=ingestor.handle,
            name="portal",
            engine=app.state.engine,
            schema=SCHEMA,
        )
        loop.start()
    app.state.consumer = loop
    try:
        yield
    finally:
        if loop is not None:
            await loop.stop()
