"""A replay (`ConsumerLoop.replay`, what `portal rebuild` runs) reads every record of its topics, however the
broker reports its end offsets and however slow the machine is. The embedded broker reports one 200-record batch
as end offset 1 (RUNTIME.md), so the end offsets are only a floor; past it the replay used to end after a quiet
second, and a fetch slower than that (a loaded machine) ended it early: `test_rebuilt_portal_is_identical` failed
so once in about twenty runs at load 5, and the old replay with a quiet of 0 s read 10 of 200 records. It now ends
when the broker has answered a fetch at every partition's position with nothing (`EndWatch`, unit-tested here
round by round); the test on the broker reads every record of under-reported batches across a broker stall."""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.embedded import EmbeddedKafka
from shared.kafka import ConsumerLoop, EndWatch, Records, ensure_topics, make_producer

A, B = TopicPartition("t", 0), TopicPartition("t", 1)
N = 60


def test_a_partition_is_at_its_end_after_an_empty_answer_and_another_empty_round() -> None:
    watch = EndWatch([A])
    watch.fetched(False, {A: None})  # no answer yet
    assert not watch.done()
    watch.fetched(False, {A: 10})  # an answer without records came in this round
    assert not watch.done()  # its records may still be buffered, returned next round
    watch.fetched(False, {A: 10})  # the next round returned nothing: there were none
    assert watch.done()


def test_a_round_without_an_answer_proves_nothing() -> None:
    watch = EndWatch([A])
    watch.fetched(False, {A: 5})
    watch.fetched(True, {A: 6})  # records: start over
    watch.fetched(False, {A: 6})  # the timestamp did not move: no answer in this round
    watch.fetched(False, {A: 6})
    assert not watch.done()
    watch.fetched(False, {A: 7})
    watch.fetched(False, {A: 7})
    assert watch.done()


def test_every_partition_must_be_at_its_end_and_records_start_the_judgement_over() -> None:
    watch = EndWatch([A, B])
    watch.fetched(False, {A: 1, B: None})
    watch.fetched(False, {A: 2, B: None})
    assert not watch.done()  # B has not answered
    watch.fetched(False, {A: 3, B: 1})
    watch.fetched(True, {A: 4, B: 2})  # records (from either): both judged again
    watch.fetched(False, {A: 4, B: 2})
    assert not watch.done()
    watch.fetched(False, {A: 5, B: 3})
    watch.fetched(False, {A: 5, B: 3})
    assert watch.done()


async def test_a_replay_reads_every_record_of_batches_the_broker_under_reports_while_it_stalls(
    own_broker: EmbeddedKafka, topic_prefix: str
) -> None:
    bootstrap = own_broker.bootstrap
    topic = topic_prefix + "replay.end.test.v1"
    await ensure_topics(bootstrap, [topic], 2)
    pad = b"." * 100_000  # 6 MB: batches of 1 MB, one a fetch, so the replay must go back to the broker
    producer = make_producer(bootstrap, linger_ms=100, max_batch_size=1024 * 1024)  # batches of about 10 records
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=str(i).encode() + b":" + pad, key=f"k{i % 7}".encode()) for i in range(N)
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or {0, 1})]
        reported = sum((await probe.end_offsets(parts)).values())
    finally:
        await probe.stop()
    assert reported < N, "the embedded broker under-reports end offsets of multi-record batches (RUNTIME.md)"

    broker = own_broker.pid
    assert broker is not None
    stalled = asyncio.Event()

    async def stall_the_broker() -> None:
        """Stop the broker for 2.5 s once the replay has applied its first records: its next fetch waits
        longer than the quiet the old replay took as the end (what a loaded machine does to a fetch)."""
        os.kill(broker, signal.SIGSTOP)
        try:
            await asyncio.sleep(2.5)
        finally:
            os.kill(broker, signal.SIGCONT)
            stalled.set()

    got: list[int] = []
    stallers: list[asyncio.Task[None]] = []

    async def handle(records: Records) -> None:
        got.extend(int(r.value.split(b":", 1)[0]) for r in records if r.value is not None)
        if not stallers:
            stallers.append(asyncio.create_task(stall_the_broker()))

    loop = ConsumerLoop(
        bootstrap=bootstrap,
        topics=[topic],
        group_id=topic_prefix + "replay",
        handler=handle,
        name="replay",
        max_records=10,
    )
    try:
        done = await asyncio.wait_for(loop.replay(), 120)
    finally:
        os.kill(broker, signal.SIGCONT)  # never leave it stopped
        for task in stallers:
            await task
    assert stalled.is_set(), "the broker was stalled during the replay"
    assert sorted(got) == list(range(N))
    assert done.records == N
