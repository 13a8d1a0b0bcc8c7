"""The relay leader's claim cursor (shared.outbox.ClaimCursor): claims start after the last ID claimed, but an ID
committed after a higher one was claimed is never skipped."""

from __future__ import annotations

import uuid

import asyncpg

from shared.db import asyncpg_dsn, make_engine
from shared.outbox import ClaimCursor, OutboxRelay
from tests.conftest import read_topic

SCHEMA = "events"
TOPIC = "relay.cursor.test.v1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_claim_sweeps_and_the_next_start_after_the_highest_claimed() -> None:
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    assert cursor.start() == 0
    cursor.claimed([5, 6, 7])
    assert cursor.start() == 7


def test_an_id_a_claim_did_not_return_is_waited_at_until_claimed() -> None:
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    cursor.start()
    cursor.claimed([1, 2])
    assert cursor.start() == 2
    cursor.claimed([3, 5, 6])  # 4 not committed yet (or rolled back)
    assert cursor.start() == 3
    clock.now += 1
    cursor.claimed([4, 7])
    assert cursor.start() == 7


def test_a_missing_id_is_waited_at_for_the_sweep_period_and_a_sweep_follows() -> None:
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    assert cursor.start() == 0
    cursor.claimed([1, 3])
    clock.now += 1.0
    assert cursor.start() == 1
    clock.now += 1.5  # the wait for 2 is over, and a sweep is due: it starts from the beginning
    assert cursor.start() == 0
    assert cursor.start() == 3  # 2 given up on (the next sweep finds it if it ever commits)


def test_a_sweep_claiming_stragglers_below_the_cursor_keeps_the_cursor() -> None:
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    cursor.start()
    cursor.claimed([10, 11])
    clock.now += 3
    assert cursor.start() == 0
    cursor.claimed([4])  # requeued, or committed very late
    assert cursor.start() == 11


async def _enqueue(conn: asyncpg.Connection, key: str) -> int:
    oid: int = await conn.fetchval(
        f"INSERT INTO {SCHEMA}.outbox (topic, key, payload) VALUES ($1, $2, $3::jsonb) RETURNING id",
        TOPIC,
        key,
        f'{{"id": "{uuid.uuid4()}", "key": "{key}"}}',
    )
    return oid


async def test_a_row_committed_after_a_higher_one_was_published_is_published_too(db_url, infra, topic_prefix) -> None:
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix)
    late, early = await asyncpg.connect(asyncpg_dsn(db_url)), await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await _enqueue(early, "A")
        assert await relay.run_once() == 1  # the first claim (a sweep)
        tx = late.transaction()
        await tx.start()
        low = await _enqueue(late, "B")  # its ID is taken, its commit comes later
        high = await _enqueue(early, "C")
        assert high > low
        assert await relay.run_once() == 1  # C, not B (not committed)
        await tx.commit()
        assert relay.cursor.start() < low  # the cursor waits below B...
        assert await relay.run_once() == 1  # ...so the next claim (no sweep due yet) finds it
        unsent = await early.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE sent_at IS NULL")
        assert unsent == 0
        got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC, at_least=3)
        assert sorted(m["key"] for m in got) == ["A", "B", "C"]
    finally:
        await relay.stop()
        await late.close()
        await early.close()
        await engine.dispose()


async def test_a_row_committed_later_than_the_wait_is_found_by_the_sweep(db_url, infra, topic_prefix) -> None:
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix)
    clock = Clock()
    relay.cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    late, early = await asyncpg.connect(asyncpg_dsn(db_url)), await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await _enqueue(early, "A")
        assert await relay.run_once() == 1
        tx = late.transaction()
        await tx.start()
        await _enqueue(late, "B")
        await _enqueue(early, "C")
        assert await relay.run_once() == 1  # C
        clock.now += 1.0
        assert await relay.run_once() == 0  # B still open: waited at
        clock.now += 1.5  # past the wait; a sweep is due
        assert await relay.run_once() == 0  # the sweep finds nothing committed yet
        assert await relay.run_once() == 0  # the cursor gave B up...
        await tx.commit()
        assert await relay.run_once() == 0  # ...and the cursor claim does not see it
        clock.now += 2.0
        assert await relay.run_once() == 1  # the next sweep does
        got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC, at_least=3)
        assert sorted(m["key"] for m in got) == ["A", "B", "C"]
    finally:
        await relay.stop()
        await late.close()
        await early.close()
        await engine.dispose()
