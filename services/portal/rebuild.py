"""Rebuild: drop the portal's read models and project them again from the streams.

Safe while the portal runs: every registry message is claimed once in `applied_events`, every lifecycle event
is inserted once into `events` (its primary key), and a battery's state is recomputed from all its events in
sequence order, so the live consumer and the rebuild can interleave.
Each replay reads its topics one after the other, each until the broker answers a fetch at every partition's
position with nothing more (`shared.kafka.EndWatch`; not until a quiet period). If Kafka has lost messages (retention, a broker that lost its data), run `batterytrace
registry republish` and `batterytrace events republish` first: they re-send from the system of record
(the registry's tables, the ledger), not from the outboxes, which are pruned."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.portal.epcis import consumer as epcis_consumer
from services.portal.ingest import consumer as ingest_consumer
from services.portal.log import consumer as log_consumer
from services.portal.models import SCHEMA
from services.portal.settings import PortalSettings
from shared.db import make_engine, make_sessionmaker
from shared.kafka import ConsumerLoop

#: Tables that are not read models: the consumers' positions, the UI's sessions, and the audit log (who read what must outlive
#: any rebuild of what they read; it is kept for years, README: Retention).
KEEP = {"stream_positions", "audit_log", "ui_sessions", "epcis_queries", "epcis_subscriptions"}


async def read_model_tables(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"
            ),
            {"schema": SCHEMA},
        )
        return [r[0] for r in rows if r[0] not in KEEP]


async def rebuild(settings: PortalSettings, *, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Empty the read models, then replay each of the portal's consumers over its topics, one after the
    other (the EPCIS view is its own projection of the lifecycle and EPCIS streams)."""
    engine = make_engine(settings.database_url)
    try:
        tables = await read_model_tables(engine)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE " + ", ".join(f"{SCHEMA}.{t}" for t in tables)))
        maker = make_sessionmaker(engine)
        records = rejected = 0
        specs = (ingest_consumer.consumer(settings), epcis_consumer.consumer(settings), log_consumer.consumer(settings))
        for spec in specs:
            loop = ConsumerLoop.for_spec(spec, settings, maker, max_records=2000)
            done = await loop.replay(progress=progress)
            records, rejected = records + done.records, rejected + done.rejected
        return {"tables": len(tables), "records": records, "poison": rejected}
    finally:
        await engine.dispose()
