"""The EPCIS view's consumer: battery.lifecycle.v1 (every ledger event, mapped to EPCIS) and battery.epcis.v1
(EPCIS events as captured, battery or not) into `portal.epcis_events`. Its own consumer group, so the main
read models never wait for it; idempotent (upserts keyed by eventID), offsets committed after the commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.portal.epcis import repository as repo
from services.portal.epcis.service import decode
from services.portal.settings import PortalSettings
from services.portal.subscriptions import repository as subscriptions
from shared.contract.streams import TOPIC_EPCIS, TOPIC_LIFECYCLE
from shared.kafka import BatchHandler, ConsumerSpec, Records


def handler(sessionmaker: async_sessionmaker[AsyncSession]) -> BatchHandler:
    async def handle(records: Records) -> None:
        batch = decode(records)  # PoisonMessage for a bad record (the loop dead-letters it alone)
        async with sessionmaker() as session, session.begin():
            await repo.lock(session)
            await repo.add_captured(session, batch.captured)
            await repo.add_ledger(session, batch.ledger)
            await repo.add_declarations(session, batch.declarations)
            await repo.mark_declared(session, batch.declared)
            if batch.captured or batch.ledger or batch.declared or batch.declarations:
                await subscriptions.notify(session)  # streaming subscriptions wake (services/portal/subscriptions)

    return handle


def consumer(settings: PortalSettings) -> ConsumerSpec:
    return ConsumerSpec(
        name="portal.epcis",
        group=f"{settings.consumer_group}-epcis",
        topics=(TOPIC_LIFECYCLE, TOPIC_EPCIS),
        handler=handler,
    )
