"""What the outbox relay holds while it publishes a backlog (a republish of the whole ledger after the broker
lost it, or the queue after an outage) is bounded by its batch, not by the backlog: it claims, publishes and
lets go of one batch at a time, keeps nothing of a batch once it is marked sent, and hands the heap a drained
backlog freed back to the OS (the soak's RSS slope with broker faults came from bursts like these). Measured
with tracemalloc, against the embedded PostgreSQL and broker."""

from __future__ import annotations

import gc
import tracemalloc
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devtools.embedded import EmbeddedKafka
from shared.db import make_engine, make_sessionmaker
from shared.outbox import OutboxMessage, OutboxRelay, enqueue
from tests.conftest import Infra, eventually

SCHEMA = "events"
TOPIC = "relay.memory.test.v1"
BATCH = 200
#: About a lifecycle message's size on the topic.
FILLER = "x" * 1200


async def _backlog(maker: async_sessionmaker[AsyncSession], n: int) -> None:
    messages = [
        OutboxMessage(TOPIC, f"KR-MEM-{i % 24:02d}", {"id": str(uuid.uuid4()), "seq": i, "data": FILLER})
        for i in range(n)
    ]
    async with maker() as session, session.begin():
        await enqueue(session, SCHEMA, messages)


#: What the relay holds: memory allocated with the relay's code on the stack (by it, or by asyncpg and aiokafka
#: for it). The process's total moves with whatever else the test worker runs and caches (it measured 164 KB
#: "kept" by a test run beside two thousand others); the relay's own share does not.
RELAY_CODE = tracemalloc.Filter(True, "*/shared/outbox.py", all_frames=True)


def _held_by_relay() -> int:
    return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces([RELAY_CODE]).statistics("filename"))


async def _nudge_sender(relay: OutboxRelay) -> None:
    """aiokafka's sender task keeps the record batches of its last produce request in its locals (`batches` in
    Sender._sender_routine) until it next wakes, which is when new data comes: tracemalloc traced what a drain
    "kept" (about one batch, +241,433 bytes in one round, -224,656 the next) to BatchBuilder.append under the
    relay's `_send`. One tiny record of the test's own (allocated outside the relay's code) wakes it, as the next
    message would, so what is measured is what the relay itself holds."""
    assert relay._producer is not None
    await relay._producer.send_and_wait(relay.topic_prefix + TOPIC, b"{}", key=b"nudge")


async def _drain(relay: OutboxRelay) -> tuple[int, int]:
    """Publish the whole backlog with `run_once`: (the traced peak above the start while doing it, the memory
    allocated by the relay's code still held once it is done, less what it held before)."""
    gc.collect()
    held = _held_by_relay()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    while await relay.run_once():
        pass
    await _nudge_sender(relay)
    gc.collect()
    peak = tracemalloc.get_traced_memory()[1]
    return peak - start, _held_by_relay() - held


async def test_publishing_a_backlog_holds_one_batch_at_a_time_and_keeps_nothing(
    db_url: str, own_broker: EmbeddedKafka, topic_prefix: str
) -> None:
    engine = make_engine(db_url, pool_size=2)
    maker = make_sessionmaker(engine)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=own_broker.bootstrap, topic_prefix=topic_prefix, batch_size=BATCH)
    tracemalloc.start(40)  # deep enough that the relay's frame is on every stack it allocates under
    try:
        await _backlog(maker, BATCH)
        await _drain(relay)  # connections, producer, metadata, statement caches: made once
        await _backlog(maker, BATCH)
        one_batch, _ = await _drain(relay)
        rounds = []
        for _ in range(3):
            await _backlog(maker, 10 * BATCH)
            rounds.append(await _drain(relay))
    finally:
        tracemalloc.stop()
        await relay.stop()
        await engine.dispose()
    assert relay.published == 32 * BATCH
    peaks, kept = [p for p, _ in rounds], [k for _, k in rounds]
    # Ten batches in a row peak where one does (a relay that gathered the backlog would peak ten times higher).
    assert max(peaks) < 2 * one_batch, (one_batch, peaks)
    # What one batch weighs is at least its payloads; a drained backlog leaves less than a tenth of that behind.
    assert one_batch > BATCH * len(FILLER), one_batch
    assert max(kept) < one_batch / 10, (one_batch, kept)


async def test_the_relay_releases_the_heap_once_a_backlog_is_drained_not_per_trickle(
    db_url: str, infra: Infra, topic_prefix: str
) -> None:
    engine = make_engine(db_url, pool_size=2)
    maker = make_sessionmaker(engine)
    relay = OutboxRelay(
        engine,
        SCHEMA,
        bootstrap=infra.kafka.bootstrap,
        topic_prefix=topic_prefix,
        batch_size=BATCH,
        release_after_rows=2 * BATCH,
    )
    relay.start()
    try:
        await _backlog(maker, 5)
        await eventually(lambda: relay.published == 5, timeout_s=30)
        assert relay.heap_releases == 0  # a trickle: no backlog
        await _backlog(maker, 3 * BATCH + 7)
        await eventually(lambda: relay.published == 3 * BATCH + 12, timeout_s=30)
        await eventually(lambda: relay.heap_releases == 1, timeout_s=5)
        for _ in range(3):
            await _backlog(maker, 5)
        await eventually(lambda: relay.published == 3 * BATCH + 27, timeout_s=30)
        assert relay.heap_releases == 1
    finally:
        await relay.stop()
        await engine.dispose()
