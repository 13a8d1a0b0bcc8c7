"""Rebuild: drop the portal's read models and project them again from the streams.

Safe while the portal runs: every message is claimed once in `applied_events`, and a battery's state is
recomputed from all its events in sequence order, so the live consumer and the rebuild can interleave.
If Kafka retention has dropped old messages, run `batterytrace events republish` and
`batterytrace registry republish` first: the producers' outboxes keep every message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from services.portal.epcis.consumer import handler as epcis_handler
from services.portal.ingest.consumer import Ingestor
from services.portal.settings import PortalSettings
from shared.contract.streams import TOPIC_EPCIS, TOPIC_LIFECYCLE, TOPIC_REGISTRY
from shared.db import make_engine, make_sessionmaker
from shared.kafka import PoisonMessage

#: Operational tables that are not read models.
KEEP = {"outbox", "stream_positions"}


async def read_model_tables(engine: Any) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'portal' "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        )
        return [r[0] for r in rows if r[0] not in KEEP]


async def rebuild(
    settings: PortalSettings, *, idle_s: float = 2.0, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    engine = make_engine(settings.database_url)
    try:
        tables = await read_model_tables(engine)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE " + ", ".join(f"portal.{t}" for t in tables)))
        maker = make_sessionmaker(engine)
        ingestor = Ingestor(maker)
        main = await _project(
            settings,
            [settings.topic(TOPIC_REGISTRY), settings.topic(TOPIC_LIFECYCLE)],
            ingestor.handle,
            idle_s,
            progress,
        )
        # The EPCIS view is its own projection of the lifecycle stream and the EPCIS stream.
        epcis = await _project(
            settings,
            [settings.topic(TOPIC_LIFECYCLE), settings.topic(TOPIC_EPCIS)],
            epcis_handler(maker),
            idle_s,
            progress,
        )
        return {"tables": len(tables), "records": main[0] + epcis[0], "poison": main[1] + epcis[1]}
    finally:
        await engine.dispose()


async def _project(
    settings: PortalSettings,
    topics: list[str],
    handle: Callable[[Any], Awaitable[None]],
    idle_s: float,
    progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Apply every record of `topics`, from the beginning, until they have been quiet for `idle_s`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    read = poison = 0
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + idle_s
        while loop.time() < quiet_until:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            # Registry facts first, then lifecycle, as the live consumer may see them in any order anyway.
            records = [
                r for tp in sorted(batches, key=lambda tp: (tp.topic != topics[0], tp.partition)) for r in batches[tp]
            ]
            if not records:
                continue
            quiet_until = loop.time() + idle_s
            try:
                await handle(records)
            except PoisonMessage:
                for r in records:
                    try:
                        await handle([r])
                    except PoisonMessage:
                        poison += 1  # already in the dead-letter topic from the live consumer
            read += len(records)
            if progress:
                progress(len(records))
    finally:
        await consumer.stop()
    return read, poison
