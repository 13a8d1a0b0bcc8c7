"""The consumer loop's linger (`kafka_consumer_linger_ms`, the portal's default 50 ms): a fetch shorter than a
full batch waits once and takes what arrived meanwhile into the same batch, so a stream of single events is
applied many to a transaction; a batch never grows past `max_records`; the records of a partition stay in the
broker's order; without a linger each fetch is applied as it comes. The real loop in its group, against the
embedded broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from services.portal.settings import PortalSettings
from shared.kafka import ConsumerLoop, Records, ensure_topics, make_producer
from shared.settings import ServiceSettings
from tests.conftest import Infra, eventually

TOPIC = "consumer.linger.test.v1"


async def _send(producer: AIOKafkaProducer, topic: str, values: list[int], *, apart_s: float = 0.0) -> None:
    for v in values:
        await (await producer.send(topic, value=str(v).encode(), key=b"KR-LINGER", partition=0))
        if apart_s:
            await asyncio.sleep(apart_s)


async def _publish(bootstrap: str, topic: str, values: list[int]) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await _send(producer, topic, values)
    finally:
        await producer.stop()


def _loop(bootstrap: str, topic: str, group: str, batches: list[list[int]], **kw: int) -> ConsumerLoop:
    async def handle(records: Records) -> None:
        batches.append([int(r.value) for r in records])

    return ConsumerLoop(bootstrap=bootstrap, topics=[topic], group_id=group, handler=handle, name="linger", **kw)


async def test_single_records_arriving_within_the_linger_are_applied_as_one_batch_in_order(
    infra: Infra, topic_prefix: str
) -> None:
    bootstrap, topic = infra.kafka.bootstrap, topic_prefix + TOPIC
    await ensure_topics(bootstrap, [topic], 1)
    batches: list[list[int]] = []
    loop = _loop(bootstrap, topic, topic_prefix + "linger", batches, linger_ms=1000)
    producer = make_producer(bootstrap)
    await producer.start()  # connected before the loop starts: the sends below take milliseconds each
    await _send(producer, topic, [0])
    loop.start()
    try:
        await eventually(lambda: loop.running, timeout_s=30)
        # One at a time, 10 ms apart (about 0.1 s in all), right after the loop started: its first fetch (after
        # the group join) is followed by a 1 s linger that takes in the rest.
        await _send(producer, topic, list(range(1, 11)), apart_s=0.01)
        await eventually(lambda: loop.applied == 11, timeout_s=30)
        assert batches == [list(range(11))]
        await _send(producer, topic, [11])  # alone: applied after the linger, by itself
        await eventually(lambda: loop.applied == 12, timeout_s=30)
        assert batches[1:] == [[11]]
    finally:
        await loop.stop()
        await producer.stop()


async def test_a_lingered_batch_stays_within_max_records_and_without_a_linger_each_fetch_goes_as_it_comes(
    infra: Infra, topic_prefix: str
) -> None:
    bootstrap, topic = infra.kafka.bootstrap, topic_prefix + TOPIC + ".max"
    await ensure_topics(bootstrap, [topic], 1)
    batches: list[list[int]] = []
    loop = _loop(bootstrap, topic, topic_prefix + "linger-max", batches, linger_ms=500, max_records=4)
    await _publish(bootstrap, topic, list(range(10)))
    loop.start()
    try:
        await eventually(lambda: loop.applied == 10, timeout_s=30)
        assert all(len(b) <= 4 for b in batches) and [v for b in batches for v in b] == list(range(10))
    finally:
        await loop.stop()
    batches.clear()
    plain = _loop(bootstrap, topic, topic_prefix + "linger-none", batches)
    assert plain.linger_s == 0
    plain.start()
    try:
        await eventually(lambda: plain.applied == 10, timeout_s=30)
        await _publish(bootstrap, topic, [10])
        await eventually(lambda: plain.applied == 11, timeout_s=30)
        assert batches[-1] == [10] and [v for b in batches for v in b] == list(range(11))
    finally:
        await plain.stop()


def test_the_portal_lingers_by_default_and_other_services_do_not() -> None:
    assert PortalSettings().kafka_consumer_linger_ms == 50
    assert ServiceSettings().kafka_consumer_linger_ms == 0
