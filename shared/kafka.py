"""aiokafka helpers: topics, the producer, and the one consumer loop (a group with manual commits and a
dead-letter topic, or a replay from the beginning).

Designed for at-least-once delivery with idempotent consumers: the embedded broker supports neither
idempotent nor transactional producers (see RUNTIME.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.metrics import APPLIED_POSITION, CONSUMER_APPLIED, CONSUMER_LAG, DEAD_LETTERS
from shared.settings import ServiceSettings

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


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of those of `topics` the broker has. Only listed topics are described: describing
    an unknown topic by name creates it on the embedded broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t in present]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return sorted(TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"])


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

    def __init__(self, engine: AsyncEngine, schema: str) -> None:
        self.engine = engine
        self.schema = schema

    async def save(self, group: str, newest: dict[str, tuple[int, str | None]]) -> None:
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


Records = Sequence[ConsumerRecord[bytes, bytes]]
BatchHandler = Callable[[Records], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A consumer a service declares: the app factory runs it in a group, a rebuild replays it.

    `topics` are the contract's names (the settings' prefix is added); `handler` builds the batch handler
    from the service's sessionmaker; `status_path`, if set, is the ops endpoint that reports this consumer."""

    name: str
    group: str
    topics: tuple[str, ...]
    handler: Callable[[async_sessionmaker[AsyncSession]], BatchHandler]
    status_path: str | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay read: every record, and those that could not be applied (the live consumer
    dead-lettered them already)."""

    records: int
    rejected: int


class ConsumerLoop:
    """The one read loop. Fetches batches of `topics`, applies each with `handler` (one DB transaction);
    a failing batch is retried record by record and a record that fails on its own is rejected, so the
    stream keeps moving. Two ways to run it:

    - `start()`/`stop()`: in the consumer group, forever; offsets committed after the handler's
      transaction, rejected records sent to the dead-letter topic, applied positions recorded.
    - `replay()`: outside any group, from the beginning until caught up, then it returns (a rebuild)."""

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
        self.rejected = 0
        self.running = False
        self.last_batch_at: datetime | None = None

    @classmethod
    def for_spec(
        cls,
        spec: ConsumerSpec,
        settings: ServiceSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        positions: PositionStore | None = None,
        max_records: int = 1000,
    ) -> ConsumerLoop:
        """A service's consumer: broker, group timing and topic prefix from its settings."""
        return cls(
            bootstrap=settings.kafka_bootstrap_servers,
            topics=[settings.topic(t) for t in spec.topics],
            group_id=spec.group,
            handler=spec.handler(sessionmaker),
            name=spec.name,
            max_records=max_records,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            positions=positions,
            topic_prefix=settings.kafka_topic_prefix,
        )

    def status(self) -> dict[str, Any]:
        """Records applied and dead-lettered since the process started, and when the last batch was applied."""
        return {
            "running": self.running,
            "applied": self.applied,
            "dead_lettered": self.dead_lettered,
            "last_batch_at": self.last_batch_at,
        }

    # ---- in the group ----

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

            async def stopping() -> bool:
                return self._stop.is_set()

            await self._read(consumer, stopping, producer)
        finally:
            self.running = False
            try:
                await consumer.stop()
            finally:
                await producer.stop()

    # ---- a replay ----

    async def replay(self, *, progress: Callable[[int], None] | None = None) -> Replayed:
        """Apply every record of the topics from the beginning, outside the group (nothing committed,
        nothing dead-lettered), then return.

        Topic by topic, in the order declared (facts before what refers to them), each up to the end offsets
        it had when its turn came: done when every partition's position has reached them. No quiet period
        (under CPU load a slow fetch looked like the end, and which records came before it varied), and the
        order records are applied in does not depend on which partition's fetch answers first."""
        read = self.applied + self.rejected
        for topic in self.topics:
            partitions = await partitions_of(self.bootstrap, [topic])
            if not partitions:
                continue
            # Assigned, not subscribed: a subscription outside a group is reassigned (and its positions
            # reset) whenever the metadata shows other partitions.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)

                async def reached(consumer: AIOKafkaConsumer = consumer, ends: dict[Any, int] = ends) -> bool:
                    for tp, end in ends.items():
                        if await consumer.position(tp) < end:
                            return False
                    return True

                await self._read(consumer, reached, None, progress)
            finally:
                await consumer.stop()
        return Replayed(self.applied + self.rejected - read, self.rejected)

    # ---- the loop itself ----

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        done: Callable[[], Awaitable[bool]],
        producer: AIOKafkaProducer | None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Fetch, apply, and (in the group, `producer` set for dead letters) commit, until `done`."""
        while not await done():
            batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
            records = self._in_order(batches)
            if not records:
                continue
            await self._apply(records, producer)
            if producer is not None:
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
                await consumer.commit(offsets)
                self._observe(consumer, batches)
                if self.positions is not None:
                    await self._save_positions(records)
            if progress:
                progress(len(records))

    def _in_order(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> list[Any]:
        """One fetch as one list: topics in the order declared (facts before what refers to
        them), partitions in order; within a partition the broker's order."""
        rank = {t: i for i, t in enumerate(self.topics)}
        ordered = sorted(batches, key=lambda tp: (rank.get(tp.topic, len(rank)), tp.topic, tp.partition))
        return [r for tp in ordered for r in batches[tp]]

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

    async def _apply(self, records: list[ConsumerRecord[bytes, bytes]], producer: AIOKafkaProducer | None) -> None:
        try:
            await self.handler(records)
            self._applied(len(records))
            return
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.warning("consumer %s: batch of %d failed (%r); applying one by one", self.name, len(records), exc)
        for rec in records:
            try:
                await self.handler([rec])
                self._applied(1)
            except Exception as exc:
                if _is_transient(exc):
                    raise
                self.rejected += 1
                if producer is not None:
                    await self._dead_letter(rec, exc, producer)

    def _applied(self, n: int) -> None:
        self.applied += n
        self.last_batch_at = datetime.now(UTC)

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
    "BatchHandler",
    "ConsumerLoop",
    "ConsumerRecord",
    "ConsumerSpec",
    "PoisonMessage",
    "PositionStore",
    "Records",
    "Replayed",
    "TopicPartition",
    "dlq_topic",
    "ensure_topics",
    "kafka_reachable",
    "make_producer",
    "partitions_of",
]
