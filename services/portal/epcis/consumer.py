"""The EPCIS view's consumer: battery.lifecycle.v1 (every ledger event, mapped to EPCIS) and battery.epcis.v1
(EPCIS events as captured, battery or not) into `portal.epcis_events`. Its own consumer group, so the main
read models never wait for it; idempotent (upserts keyed by eventID), offsets committed after the commit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.portal.epcis import repository as repo
from services.portal.epcis.service import TOPIC_EPCIS, decode
from services.portal.models import SCHEMA
from shared.kafka import BatchHandler, ConsumerLoop, ConsumerRecord, ensure_topics
from shared.settings import TOPIC_LIFECYCLE, PortalSettings

log = logging.getLogger("batterytrace.portal.epcis")


def handler(sessionmaker: async_sessionmaker[AsyncSession]) -> BatchHandler:
    async def handle(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        batch = decode(records)  # PoisonMessage for a bad record (the loop dead-letters it alone)
        async with sessionmaker() as session, session.begin():
            await repo.lock(session)
            await repo.add_captured(session, batch.captured)
            await repo.add_ledger(session, batch.ledger)
            await repo.add_declarations(session, batch.declarations)
            await repo.mark_declared(session, batch.declared)

    return handle


@contextlib.asynccontextmanager
async def epcis_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: PortalSettings = app.state.settings
    loop: ConsumerLoop | None = None
    if settings.consumers_enabled:
        topics = [settings.topic(TOPIC_LIFECYCLE), settings.topic(TOPIC_EPCIS)]
        try:
            await ensure_topics(settings.kafka_bootstrap_servers, topics, settings.kafka_partitions)
        except Exception as exc:  # the loop retries until the broker is back
            log.warning("portal epcis: could not ensure topics %s: %r", topics, exc)
        loop = ConsumerLoop.for_service(
            settings,
            topics=topics,
            group_id=f"{settings.consumer_group}-epcis",
            handler=handler(app.state.sessionmaker),
            name="portal.epcis",
            engine=app.state.engine,
            schema=SCHEMA,
        )
        loop.start()
    app.state.epcis_consumer = loop
    try:
        yield
    finally:
        if loop is not None:
            await loop.stop()
