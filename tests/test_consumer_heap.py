"""The consumer loop hands a catch-up's freed heap back to the OS once it has caught up (ConsumerLoop._caught_up,
glibc's malloc_trim through `release_free_heap`): once after a backlog of at least `release_after_records`, when
the first fetch after it comes back empty, and not for steady small batches or idle polls. The real loop in its
group, against the embedded broker; only the release itself is counted in place of trimming."""

from __future__ import annotations

import asyncio

from shared.kafka import ConsumerLoop, Records, ensure_topics, make_producer
from tests.conftest import Infra, eventually

TOPIC = "consumer.heap.test.v1"


async def _publish(bootstrap: str, topic: str, n: int) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=b"x" * 500, key=f"KR-HEAP-{i % 24}".encode()) for i in range(n)]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def test_the_consumer_releases_the_heap_once_after_a_catch_up_not_for_small_batches(
    infra: Infra, topic_prefix: str
) -> None:
    bootstrap = infra.kafka.bootstrap
    topic = topic_prefix + TOPIC
    await ensure_topics(bootstrap, [topic], 2)
    releases = 0

    def release() -> None:
        nonlocal releases
        releases += 1

    async def handle(records: Records) -> None:
        await asyncio.sleep(0)

    loop = ConsumerLoop(
        bootstrap=bootstrap,
        topics=[topic],
        group_id=topic_prefix + "heap",
        handler=handle,
        name="heap",
        release_heap=release,
    )
    await _publish(bootstrap, topic, 2500)  # a backlog waiting before the consumer starts: a catch-up
    loop.start()
    try:
        await eventually(lambda: loop.applied == 2500, timeout_s=60)
        await eventually(lambda: releases == 1, timeout_s=5)
        assert loop.heap_releases == 1
        await asyncio.sleep(1)  # idle polls (empty fetches) after it: no more releases
        assert releases == 1
        sent = 2500
        for _ in range(5):  # steady small batches, each read before the next comes
            await _publish(bootstrap, topic, 20)
            sent += 20
            await eventually(lambda: loop.applied == sent, timeout_s=30)  # noqa: B023 (awaited in the loop)
            await asyncio.sleep(0.5)
        assert releases == 1
        await _publish(bootstrap, topic, 1200)  # another catch-up: one more release
        await eventually(lambda: loop.applied == sent + 1200, timeout_s=60)
        await eventually(lambda: releases == 2, timeout_s=5)
        await asyncio.sleep(1)
        assert releases == 2 and loop.heap_releases == 2
    finally:
        await loop.stop()
