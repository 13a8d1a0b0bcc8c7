"""Dead letters: list, show and re-drive messages that a consumer could not apply.

Every `<topic>.dlq` message carries headers `dlq.source` (topic:partition:offset), `dlq.error` and
`dlq.consumer`. Replay re-produces a dead letter to its source topic (same key and value) so the
consumer applies it again once its fix is deployed; replayed offsets are remembered in the consumer
group `batterytrace-dlq-replay`, so replaying twice re-drives nothing twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from shared.kafka import EndWatch, Kafka, make_admin, make_consumer, make_producer

REPLAY_GROUP = "batterytrace-dlq-replay"


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    source: str
    error: str
    consumer: str
    replayed: bool

    @property
    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "key": self.key,
            "source": self.source,
            "error": self.error,
            "consumer": self.consumer,
            "replayed": self.replayed,
        }


async def dlq_topics(kafka: Kafka, prefix: str = "") -> list[str]:
    admin = make_admin(kafka)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix) and t.endswith(".dlq"))
    finally:
        await admin.close()


async def read_dead_letters(kafka: Kafka, topics: list[str]) -> list[DeadLetter]:
    """Every dead letter on `topics`, marked replayed or not: read until the broker has answered a fetch at every
    partition's position with nothing more (`EndWatch`; a quiet second, as before, ended early on a slow fetch)."""
    if not topics:
        return []
    consumer = make_consumer(kafka, group_id=REPLAY_GROUP, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        done: dict[TopicPartition, int] = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            done[tp] = committed or 0
        await consumer.seek_to_beginning(*tps)
        watch = EndWatch(tps)
        while not watch.done():
            batch = await consumer.getmany(timeout_ms=200)
            watch.fetched(any(batch.values()), {tp: consumer.last_poll_timestamp(tp) for tp in tps})
            for tp, recs in batch.items():
                for r in recs:
                    h = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
                    out.append(
                        DeadLetter(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key.decode() if r.key else None,
                            r.value or b"",
                            h.get("dlq.source", ""),
                            h.get("dlq.error", ""),
                            h.get("dlq.consumer", ""),
                            r.offset < done[tp],
                        )
                    )
    finally:
        await consumer.stop()
    return sorted(out, key=lambda d: (d.topic, d.partition, d.offset))


async def replay(kafka: Kafka, letters: list[DeadLetter], dry_run: bool = False) -> list[DeadLetter]:
    """Re-drive the letters not yet replayed to their source topics; remember them as replayed."""
    todo = [d for d in letters if not d.replayed and d.source]
    if dry_run or not todo:
        return todo
    producer = make_producer(kafka)
    await producer.start()
    try:
        for d in todo:
            source_topic = d.source.rsplit(":", 2)[0]
            await producer.send_and_wait(
                source_topic,
                d.value,
                key=d.key.encode() if d.key else None,
                headers=[("dlq.replayed-from", d.ref.encode())],
            )
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, group_id=REPLAY_GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for d in todo:
            tp = TopicPartition(d.topic, d.partition)
            if tp not in offsets or offsets[tp].offset < d.offset + 1:
                offsets[tp] = OffsetAndMetadata(d.offset + 1, "")
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
    return todo
