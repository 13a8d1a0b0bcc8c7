"""Operations: dead letters are inspected and re-driven; the portal rebuilds identically from the streams,
even after the broker lost everything (republish from the outboxes)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from services.portal.app import create_app as create_portal
from services.portal.rebuild import read_model_tables, rebuild
from services.portal.settings import PortalSettings
from shared.db import make_engine
from shared.dlq import dlq_topics, read_dead_letters, replay
from shared.kafka import ConsumerLoop, PoisonMessage, ensure_topics, make_producer
from shared.outbox import requeue
from tests.conftest import eventually, serve
from tests.events_helpers import ORGS, Stack, stack


async def test_poison_goes_to_dlq_and_replay_applies_it_once(infra, topic_prefix) -> None:
    topic = topic_prefix + "demo.v1"
    await ensure_topics(infra.kafka.bootstrap, [topic], 1)
    applied: list[str] = []
    fixed = False

    async def handler(records) -> None:
        for r in records:
            if r.value == b"needs-the-fix" and not fixed:
                raise PoisonMessage("cannot apply this yet")
        applied.extend(r.value.decode() for r in records)

    loop = ConsumerLoop(
        bootstrap=infra.kafka.bootstrap,
        topics=[topic],
        group_id=topic_prefix + "g",
        handler=handler,
        name="t",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    loop.start()
    producer = make_producer(infra.kafka.bootstrap)
    await producer.start()
    try:
        for v in (b"a", b"needs-the-fix", b"b"):
            await producer.send_and_wait(topic, v, key=b"k")
        await eventually(lambda: applied == ["a", "b"] and loop.dead_lettered == 1, timeout_s=30)
        assert await dlq_topics(infra.kafka.bootstrap, topic_prefix) == [topic + ".dlq"]
        letters = await read_dead_letters(infra.kafka.bootstrap, [topic + ".dlq"])
        assert len(letters) == 1 and not letters[0].replayed
        assert letters[0].source.startswith(topic + ":") and "cannot apply" in letters[0].error
        fixed = True
        assert len(await replay(infra.kafka.bootstrap, letters)) == 1
        await eventually(lambda: applied == ["a", "b", "needs-the-fix"], timeout_s=30)
        again = await read_dead_letters(infra.kafka.bootstrap, [topic + ".dlq"])
        assert again[0].replayed
        assert await replay(infra.kafka.bootstrap, again) == []
        await asyncio.sleep(1)
        assert applied == ["a", "b", "needs-the-fix"]
    finally:
        await producer.stop()
        await loop.stop()


#: Columns a rebuild does not reproduce: when rows were applied, and the EPCIS view's arrival order (`seq`,
#: subscriptions' watermark); of a log checkpoint, when the portal received it and the time its publication
#: carried (a republished checkpoint is published again, now; its tree, root, note and signatures are compared).
VOLATILE = {"applied_at", "last_applied_at", "updated_at", "seq", "received_at", "published_at"}


def _same_number(value: Any) -> Any:
    """JSONB keeps a number as written: the same amount summed in one batch (Python) or across batches (SQL)
    reads back as 32 or 32.0. Compare amounts as numbers (to 9 significant digits), not as their spelling."""
    if isinstance(value, dict):
        return {k: _same_number(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_same_number(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(f"{float(value):.9g}")
    return value


async def snapshot(db_url: str) -> dict[str, list[Any]]:
    engine = make_engine(db_url)
    try:
        out = {}
        for table in await read_model_tables(engine):
            async with engine.connect() as conn:
                result = await conn.execute(text(f"SELECT * FROM portal.{table}"))
                cols = [c for c in result.keys() if c not in VOLATILE]
                rows = [tuple(str(_same_number(row._mapping[c])) for c in cols) for row in result]
            out[table] = sorted(rows)
        return out
    finally:
        await engine.dispose()


async def live_through(s: Stack) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INSPECTED", "inspector")
    await s.ok(bid, "REMOVED", "dismantler", data={"reason": "accident", "consignee": ORGS["collector"]})
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    await s.ok(bid, "GRADED", "assessor", data={"soh_pct": 55.0, "grade": "recycle"})
    await s.transfer_to(bid, "recycler")
    await s.ok(bid, "RECYCLED", "recycler")
    await s.battery()  # a second one that never leaves the factory


async def caught_up(s: Stack, portal) -> bool:
    """Every consumer has applied everything written upstream. Read in flow order (registry written, events
    applied, events written, portal applied): the events service writes a MANUFACTURED when it consumes a
    registration, so the portal is only compared with the events service's outbox once that has been read."""

    async def positions(svc) -> dict[str, Any]:
        body: dict[str, Any] = (await svc.get("/v1/ops/positions")).json()
        return body

    def applied_all(applied: list[dict[str, Any]], written: dict[str, int]) -> bool:
        """Every consumer group of the service that reads a topic has applied all of it (the portal reads
        the lifecycle stream in two groups: the read models' and the EPCIS repository's)."""
        groups: dict[str, list[int]] = {}
        for p in applied:
            groups.setdefault(p["topic"], []).append(p["applied_position"])
        return all(min(groups.get(t, [0])) >= w for t, w in written.items())

    registry_written = {p["topic"]: p["written_position"] for p in (await positions(s.registry))["published"]}
    events = await positions(s.events)
    consumed = {p["topic"] for p in events["applied"]}
    if not applied_all(events["applied"], {t: w for t, w in registry_written.items() if t in consumed}):
        return False
    events_written = {p["topic"]: p["written_position"] for p in (await positions(s.events))["published"]}
    return applied_all((await positions(portal))["applied"], registry_written | events_written)


#: Checkpoints are signed on a timer (one may land between two snapshots): the comparisons run without the log.
NO_LOG = {"log_enabled": False}


async def test_rebuilt_portal_is_identical(make_settings, token, db_url) -> None:
    async with stack(make_settings, token, streams=True, **NO_LOG) as s:
        portal_settings = make_settings(PortalSettings)
        async with serve(create_portal(portal_settings)) as portal:
            await live_through(s)
            await eventually(lambda: caught_up(s, portal), timeout_s=60)
            before = await snapshot(db_url)
            assert before["events"], "the portal has read models to compare"
            result = await rebuild(portal_settings)
            assert result["records"] >= 10
            assert await snapshot(db_url) == before


async def test_rebuild_after_the_broker_lost_everything(make_settings, token, db_url, own_broker) -> None:
    async with stack(make_settings, token, streams=True, kafka_bootstrap_servers=own_broker.bootstrap, **NO_LOG) as s:
        portal_settings = make_settings(PortalSettings, kafka_bootstrap_servers=own_broker.bootstrap)
        # Everything through the broker once, then it restarts empty (memory-only): Kafka retention is gone.
        async with serve(create_portal(portal_settings)) as portal:
            await live_through(s)
            await eventually(lambda: caught_up(s, portal), timeout_s=60)
            before = await snapshot(db_url)
        own_broker.restart()
        engine = make_engine(db_url)
        try:
            assert await requeue(engine, "registry") > 0
            assert await requeue(engine, "events") > 0
        finally:
            await engine.dispose()

        async def drained() -> bool:
            backlogs = [(await c.get("/v1/ops/outbox")).json()["backlog"] for c in (s.registry, s.events)]
            return backlogs == [0, 0]

        await eventually(drained, timeout_s=60)
        await rebuild(portal_settings)
        assert await snapshot(db_url) == before


async def test_rebuild_after_pruning_every_outbox_and_deleting_every_topic(
    make_settings, token, db_url, own_broker, record_property
) -> None:
    """The outboxes pruned to nothing, every topic deleted: republishing from the system of record (the
    registry's tables, the ledger) and rebuilding gives the portal exactly the read models it had."""
    from datetime import timedelta

    from aiokafka.admin import AIOKafkaAdminClient

    from services.events.republish import republish as republish_events
    from services.registry.republish import republish as republish_registry
    from shared.outbox import prune

    bootstrap = own_broker.bootstrap
    fast_log = {"log_checkpoint_interval_s": 0.2}
    async with stack(make_settings, token, streams=True, kafka_bootstrap_servers=bootstrap, **fast_log) as s:
        portal_settings = make_settings(PortalSettings, kafka_bootstrap_servers=bootstrap)
        async with serve(create_portal(portal_settings)) as portal:
            await live_through(s)

            async def log_covers_the_ledger() -> bool:
                """The newest checkpoint is of the whole ledger (so no later one lands between the snapshots)."""
                r = await s.events.get("/v1/log/checkpoint")
                if r.status_code != 200:
                    return False
                engine = make_engine(db_url)
                try:
                    async with engine.connect() as conn:
                        events = (await conn.execute(text("SELECT count(*) FROM events.ledger"))).scalar_one()
                finally:
                    await engine.dispose()
                return int(r.text.splitlines()[1]) == events

            # In this order: the events service writes the second battery's MANUFACTURED when it consumes the
            # registration, so the ledger is whole only once it caught up; the checkpoint of the whole ledger is
            # signed up to a checkpoint interval later; the portal then applies it. (Checked the other way round,
            # the checkpoint could cover a ledger still one event short, and the next one land after `before`.)
            await eventually(lambda: caught_up(s, portal), timeout_s=60)
            await eventually(log_covers_the_ledger, timeout_s=60)
            await eventually(lambda: caught_up(s, portal), timeout_s=60)
            before = await snapshot(db_url)
        assert before["events"] and before["batteries"], "the portal has read models to compare"
        engine = make_engine(db_url)
        try:
            pruned = {schema: await prune(engine, schema, timedelta(0)) for schema in ("registry", "events")}
            async with engine.connect() as conn:
                left = (await conn.execute(text("SELECT count(*) FROM events.outbox"))).scalar_one()
                left += (await conn.execute(text("SELECT count(*) FROM registry.outbox"))).scalar_one()
            assert left <= 8, "at most the newest published row of each topic is kept"
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                ours = [t for t in await admin.list_topics() if t.startswith(portal_settings.kafka_topic_prefix)]
                assert ours
                await admin.delete_topics(ours)

                async def gone() -> bool:
                    listed = await admin.list_topics()
                    return not any(t.startswith(portal_settings.kafka_topic_prefix) for t in listed)

                await eventually(gone, timeout_s=30)
            finally:
                await admin.close()
            queued = await republish_registry(engine)
            queued_events = await republish_events(engine)
        finally:
            await engine.dispose()
        assert queued["batteries"] == 2 and queued_events >= 11

        async def drained() -> bool:
            backlogs = [(await c.get("/v1/ops/outbox")).json()["backlog"] for c in (s.registry, s.events)]
            return backlogs == [0, 0]

        await eventually(drained, timeout_s=60)
        result = await rebuild(portal_settings)
        after = await snapshot(db_url)
        record_property(
            "rebuild_after_prune",
            {"pruned": pruned, "republished": {**queued, "lifecycle": queued_events}, "replayed": result["records"]},
        )
        assert after == before
