"""aiokafka helpers: topics, the producer, and a consumer loop with manual commits and a dead-letter topic.

Designed for at-least-once delivery with idempotent consumers: the embedded broker supports neither
idempotent nor transactional producers (see RUNTIME.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.metrics import APPLIED_POSITION, CONSUMER_APPLIED, CONSUMER_LAG, DEAD_LETTERS

log = logging.getLogger("batterytrace.kafka")


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 4) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        if not wanted:
            return
        try:
            await admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in wanted]
            )
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


async def kafka_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass


def make_producer(bootstrap: str, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=kw.pop("linger_ms", 2),
        max_batch_size=kw.pop("max_batch_size", 256 * 1024),
        request_timeout_ms=kw.pop("request_timeout_ms", 10_000),
        enable_idempotence=False,
        **kw,
    )


class PositionStore:
    """Records, in the consuming service's `stream_positions` table, the newest producer outbox position
    applied per topic (GREATEST, so redelivery never moves it back)."""

    def __init__(self, engine: Any, schema: str) -> None:
        self.engine = engine
        self.schema = schema

    async def save(self, group: str, newest: dict[str, tuple[int, str | None]]) -> None:
        from datetime import datetime

        from sqlalchemy import text

        async with self.engine.begin() as conn:
            for topic, (pos, when) in newest.items():
                await conn.execute(
                    text(
                        f"INSERT INTO {self.schema}.stream_positions (consumer_group, topic, position, event_time) "
                        "VALUES (:g, :t, :p, :e) ON CONFLICT (consumer_group, topic) DO UPDATE SET "
                        f"position = GREATEST({self.schema}.stream_positions.position, EXCLUDED.position), "
                        "event_time = CASE WHEN EXCLUDED.position >= "
                        f"{self.schema}.stream_positions.position THEN EXCLUDED.event_time "
                        f"ELSE {self.schema}.stream_positions.event_time END, updated_at = now()"
                    ),
                    {"g": group, "t": topic, "p": pos, "e": datetime.fromisoformat(when) if when else None},
                )


class PoisonMessage(Exception):
    """A message that can never be applied (undecodable, invalid): goes to the dead-letter topic."""


BatchHandler = Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


class ConsumerLoop:
    """Consume `topics` in a group; apply each fetched batch with `handler` (one DB transaction), then
    commit offsets. A failing batch is retried record by record; a record that fails on its own is
    dead-lettered so the stream keeps moving."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        name: str,
        max_records: int = 1000,
        on_dead_letter: Callable[[str], None] | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        positions: PositionStore | None = None,
        topic_prefix: str = "",
    ) -> None:
        self.positions = positions
        self.topic_prefix = topic_prefix
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self.name = name
        self.max_records = max_records
        self.on_dead_letter = on_dead_letter
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.dead_lettered = 0
        self.running = False

    @classmethod
    def for_service(
        cls,
        settings: Any,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        name: str,
        engine: Any,
        schema: str,
    ) -> ConsumerLoop:
        """A consumer of a service: broker, group timing and topic prefix from its settings, applied
        positions recorded in its schema's `stream_positions`."""
        return cls(
            bootstrap=settings.kafka_bootstrap_servers,
            topics=topics,
            group_id=group_id,
            handler=handler,
            name=name,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            positions=PositionStore(engine, schema),
            topic_prefix=settings.kafka_topic_prefix,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task and not self.running:
            self._task.cancel()  # still joining the group: nothing in flight to finish
        if self._task:
            try:
                await asyncio.wait_for(self._task, 15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed; restarting in 1 s", self.name)
                await asyncio.sleep(1)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        producer = make_producer(self.bootstrap)
        await consumer.start()
        try:
            await producer.start()
            self.running = True
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if not batches:
                    continue
                records = [r for tp in sorted(batches, key=str) for r in batches[tp]]
                await self._apply(records, producer)
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
                await consumer.commit(offsets)
                self._observe(consumer, batches)
                if self.positions is not None:
                    await self._save_positions(records)
        finally:
            self.running = False
            try:
                await consumer.stop()
            finally:
                await producer.stop()

    def _base(self, topic: str) -> str:
        return topic[len(self.topic_prefix) :] if topic.startswith(self.topic_prefix) else topic

    def _observe(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]) -> None:
        for tp, recs in batches.items():
            if not recs:
                continue
            base = self._base(tp.topic)
            CONSUMER_APPLIED.labels(self.group_id, base).inc(len(recs))
            hw = consumer.highwater(tp)
            if hw is not None:
                CONSUMER_LAG.labels(self.group_id, base, str(tp.partition)).set(max(hw - recs[-1].offset - 1, 0))

    async def _save_positions(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        newest: dict[str, tuple[int, str | None]] = {}
        for rec in records:
            headers = dict(rec.headers or ())
            raw = headers.get("bt-position")
            if raw is None:
                continue
            pos = int(raw)
            base = self._base(rec.topic)
            if pos > newest.get(base, (-1, None))[0]:
                t = headers.get("bt-time")
                newest[base] = (pos, t.decode() if t else None)
        if newest:
            assert self.positions is not None
            try:
                await self.positions.save(self.group_id, newest)
            except Exception:  # monitoring must never stop the stream
                log.warning("consumer %s: could not record stream positions", self.name, exc_info=True)
            for topic, (pos, _) in newest.items():
                APPLIED_POSITION.labels(self.group_id, topic).set(pos)

    async def _apply(self, records: list[ConsumerRecord[bytes, bytes]], producer: AIOKafkaProducer) -> None:
        try:
            await self.handler(records)
            self.applied += len(records)
            return
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.warning("consumer %s: batch of %d failed (%r); applying one by one", self.name, len(records), exc)
        for rec in records:
            try:
                await self.handler([rec])
                self.applied += 1
            except Exception as exc:
                if _is_transient(exc):
                    raise
                await self._dead_letter(rec, exc, producer)

    async def _dead_letter(self, rec: ConsumerRecord[bytes, bytes], exc: Exception, producer: AIOKafkaProducer) -> None:
        target = dlq_topic(rec.topic)
        log.error("consumer %s: dead-lettering %s[%d]@%d: %s", self.name, rec.topic, rec.partition, rec.offset, exc)
        headers = [
            ("dlq.error", str(exc)[:1000].encode()),
            ("dlq.source", f"{rec.topic}:{rec.partition}:{rec.offset}".encode()),
            ("dlq.consumer", self.group_id.encode()),
        ]
        await ensure_topics(self.bootstrap, [target], 1)
        await producer.send_and_wait(target, rec.value, key=rec.key, headers=headers)
        self.dead_lettered += 1
        DEAD_LETTERS.labels(self.group_id, self._base(rec.topic)).inc()
        if self.on_dead_letter:
            self.on_dead_letter(rec.topic)


def _is_transient(exc: BaseException) -> bool:
    from shared.problems import is_unavailable

    return not isinstance(exc, PoisonMessage) and is_unavailable(exc)


__all__ = [
    "ConsumerLoop",
    "ConsumerRecord",
    "PoisonMessage",
    "PositionStore",
    "TopicPartition",
    "dlq_topic",
    "ensure_topics",
    "kafka_reachable",
    "make_producer",
]
