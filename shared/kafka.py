"""aiokafka helpers: how every client reaches the cluster (`client_options`, `KafkaCluster`, the client
factories), topics, the producer, and the one consumer loop (a group with manual commits and a dead-letter
topic, or a replay from the beginning).

Every Kafka client the system makes (producers, consumers and admin clients of the services, the ops
commands' clients, kafka-python's admin client of the stream report) is made by a factory here from a
`KafkaCluster`, so the bootstrap servers, SASL and TLS settings reach each one the same way.

Designed for at-least-once delivery with idempotent consumers: the embedded broker supports neither
idempotent nor transactional producers (see RUNTIME.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.metadata import MetadataRequest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.memdebug import release_free_heap
from shared.metrics import APPLIED_POSITION, CONSUMER_APPLIED, CONSUMER_LAG, DEAD_LETTERS
from shared.settings import KafkaSettings, ServiceSettings

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

log = logging.getLogger("batterytrace.kafka")


# ---- reaching the cluster ----


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments every client takes from the settings: bootstrap servers, security protocol,
    SASL mechanism and credentials, and the TLS context (aiokafka's `create_ssl_context`: the CA bundle, the
    client certificate and key, hostname checking). aiokafka and kafka-python take the same names."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        key_password = settings.kafka_ssl_key_password
        context = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            password=key_password.get_secret_value() if key_password else None,
        )
        context.check_hostname = settings.kafka_ssl_check_hostname
        context.verify_mode = ssl.CERT_REQUIRED  # a broker without a valid certificate is never spoken to
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.sasl_password(),
        }
    return options


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    """How this process reaches the cluster (`options`: `client_options` of its settings; they hold the SASL
    password, so they are neither printed nor compared) and whether it may create missing topics."""

    options: Mapping[str, Any] = field(repr=False, compare=False)
    create_topics: bool = True
    replication_factor: int = 1

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaCluster:
        return cls(client_options(settings), settings.kafka_create_topics, settings.kafka_replication_factor)

    @classmethod
    def plaintext(cls, bootstrap: str) -> KafkaCluster:
        """The embedded broker (tests, `make dev`, the bench): plaintext on loopback, topics made on demand."""
        return cls({"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"})

    @property
    def bootstrap(self) -> str:
        return str(self.options["bootstrap_servers"])

    @property
    def security_protocol(self) -> str:
        return str(self.options.get("security_protocol", "PLAINTEXT"))


#: What the helpers here take: a cluster, or a bare bootstrap address (the embedded broker, plaintext).
Kafka = KafkaCluster | str


def cluster(kafka: Kafka) -> KafkaCluster:
    return kafka if isinstance(kafka, KafkaCluster) else KafkaCluster.plaintext(kafka)


def make_admin(kafka: Kafka, **kw: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**cluster(kafka).options, request_timeout_ms=kw.pop("request_timeout_ms", 10_000), **kw)


def make_sync_admin(kafka: Kafka, **kw: Any) -> KafkaAdminClient:
    """kafka-python's admin client (it can list group offsets where aiokafka's cannot on the embedded broker)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**cluster(kafka).options, request_timeout_ms=kw.pop("request_timeout_ms", 10_000), **kw)


def make_consumer(kafka: Kafka, *topics: str, **kw: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **cluster(kafka).options, **kw)


PARTITIONER = DefaultPartitioner()
"""Every producer's partitioner (murmur2 of the key over all the topic's partitions, as the Java client): named here
so that the outbox relay, which builds its record batches per partition itself, picks the partition a `send` would."""


def make_producer(kafka: Kafka, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **cluster(kafka).options,
        partitioner=PARTITIONER,
        acks="all",
        linger_ms=kw.pop("linger_ms", 2),
        max_batch_size=kw.pop("max_batch_size", 256 * 1024),
        request_timeout_ms=kw.pop("request_timeout_ms", 10_000),
        enable_idempotence=False,
        **kw,
    )


# ---- topics ----


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class MissingTopics(RuntimeError):
    """Topics that do not exist where this process may not create them (production: the topics job does)."""


#: A metadata response's error code for a topic the broker does not have.
_UNKNOWN_TOPIC = UnknownTopicOrPartitionError.errno


async def describe_named(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> list[dict[str, Any]]:
    """The metadata of these topics only: one request naming them, answered with theirs alone, where the admin
    client's `list_topics` fetches and decodes every topic of the cluster (twice a batch in the relay, which grew
    with the cluster). Auto-creation is off in the request (`allow_auto_topic_creation`, Metadata v4 and up):
    the embedded broker, like a Kafka broker with `auto.create.topics.enable`, creates a topic a metadata request
    names otherwise, and a check whether a topic exists must never make it. Each entry has the topic's
    `error_code`: UNKNOWN_TOPIC_OR_PARTITION (3) for one the broker does not have (no partitions)."""
    names = list(dict.fromkeys(topics))
    if not names:  # an empty list asks for every topic in Metadata v0
        return []
    response = await admin._send_request(MetadataRequest(names, allow_auto_topic_creation=False))
    described: list[dict[str, Any]] = response.to_object()["topics"]
    return described


async def missing_topics(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> set[str]:
    """Those of `topics` the broker does not have (asking about them alone, creating none: `describe_named`). A
    topic counts as there only if the answer names it with another code than UNKNOWN_TOPIC_OR_PARTITION (as the
    full list named a topic whose leader was not yet elected, say)."""
    names = set(topics)
    present = {t["topic"] for t in await describe_named(admin, names) if t["error_code"] != _UNKNOWN_TOPIC}
    return names - present


async def ensure_topics(kafka: Kafka, topics: Iterable[str], partitions: int = 4) -> None:
    """Create the topics that do not exist yet (idempotent), with the cluster's replication factor; where the
    cluster's settings forbid creating topics, a missing one is `MissingTopics`."""
    target = cluster(kafka)
    admin = make_admin(target)
    await admin.start()
    try:
        names = list(dict.fromkeys(topics))
        missing = await missing_topics(admin, names)
        wanted = [t for t in names if t in missing]
        if not wanted:
            return
        if not target.create_topics:
            raise MissingTopics(
                f"topics {sorted(wanted)} do not exist and this process may not create them "
                "(kafka_create_topics is off): run the deploy/ topics job"
            )
        try:
            await admin.create_topics(
                [
                    NewTopic(name=t, num_partitions=partitions, replication_factor=target.replication_factor)
                    for t in wanted
                ]
            )
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


async def partitions_of(kafka: Kafka, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of those of `topics` the broker has (an unknown topic has none, and is not created)."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        described = await describe_named(admin, topics)
    finally:
        await admin.close()
    return sorted(TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"])


async def kafka_reachable(kafka: Kafka, timeout_s: float = 2.0) -> bool:
    admin = make_admin(kafka, request_timeout_ms=int(timeout_s * 1000))
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


class EndWatch:
    """When a replay has read each partition to its end, judged by the broker's fetch answers rather than its
    end offsets or a clock. A fetch the consumer sends is at its position (aiokafka drops an answer for any other),
    and every answer moves the partition's `last_poll_timestamp`. So a round (one `getmany`) that returned no
    records while that timestamp moved had an answer with none: the broker had nothing after the position. Its
    records could still have come as the round timed out; they are buffered then, and the next round returns them
    at once. A partition is at its end after such a round followed by another round without records; any records
    start the judgement over (for every partition, which only costs a round more)."""

    def __init__(self, partitions: Iterable[TopicPartition]) -> None:
        self.partitions = list(partitions)
        self._polled: dict[TopicPartition, int | None] = dict.fromkeys(self.partitions)
        self._answered_empty: set[TopicPartition] = set()
        self._at_end: set[TopicPartition] = set()

    def fetched(self, got_records: bool, polled: Mapping[TopicPartition, int | None]) -> None:
        """After a round: whether it returned records, and each partition's `last_poll_timestamp` now."""
        if got_records:
            self._answered_empty.clear()
            self._at_end.clear()
        else:
            self._at_end |= self._answered_empty
            self._answered_empty = {tp for tp, at in polled.items() if at is not None and at != self._polled.get(tp)}
        self._polled = dict(polled)

    def done(self) -> bool:
        return self._at_end.issuperset(self.partitions)


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
        bootstrap: Kafka,
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
        release_after_records: int = 1000,
        release_heap: Callable[[], object] = release_free_heap,
        linger_ms: int = 0,
    ) -> None:
        self.positions = positions
        self.linger_s = linger_ms / 1000
        self.release_after_records = release_after_records
        self._release_heap = release_heap
        self.heap_releases = 0  # catch-ups read, after each of which the free heap went back to the OS
        self.topic_prefix = topic_prefix
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.kafka = cluster(bootstrap)
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
        kafka: KafkaCluster | None = None,
    ) -> ConsumerLoop:
        """A service's consumer: group timing and topic prefix from its settings, the cluster `kafka` (the app's
        own, `app.state.kafka`) or else made from the settings."""
        return cls(
            bootstrap=kafka or KafkaCluster.from_settings(settings),
            topics=[settings.topic(t) for t in spec.topics],
            group_id=spec.group,
            handler=spec.handler(sessionmaker),
            name=spec.name,
            max_records=max_records,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            positions=positions,
            topic_prefix=settings.kafka_topic_prefix,
            linger_ms=settings.kafka_consumer_linger_ms,
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

    def group_clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        """The group member and the dead-letter producer of one run in the group (not started)."""
        consumer = make_consumer(
            self.kafka,
            *self.topics,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        return consumer, make_producer(self.kafka)

    def replay_consumer(self) -> AIOKafkaConsumer:
        """The consumer of a replay: outside any group (not started)."""
        return make_consumer(self.kafka, enable_auto_commit=False, auto_offset_reset="earliest")

    async def _consume(self) -> None:
        consumer, producer = self.group_clients()
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

        Topic by topic, in the order declared (facts before what refers to them), so the order records are
        applied in does not depend on which partition's fetch answers first. A topic is done once every partition
        has reached the end offset it had when its turn came and the broker has answered a fetch at that position
        with no records (`EndWatch`): the end offsets alone are not enough, since the embedded broker
        under-reports them after multi-record batches (RUNTIME.md: one 200-record batch reads as end offset 1), and
        a quiet period is not either (it ended a replay early whenever a fetch took longer than the quiet, as on a
        loaded machine)."""
        read = self.applied + self.rejected
        for topic in self.topics:
            partitions = await partitions_of(self.kafka, [topic])
            if not partitions:
                continue
            # Assigned, not subscribed: a subscription outside a group is reassigned (and its positions
            # reset) whenever the metadata shows other partitions.
            consumer = self.replay_consumer()
            await consumer.start()
            try:
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)
                watch = EndWatch(partitions)

                def fetched(got: bool, consumer: AIOKafkaConsumer = consumer, watch: EndWatch = watch) -> None:
                    watch.fetched(got, {tp: consumer.last_poll_timestamp(tp) for tp in watch.partitions})

                async def done(
                    consumer: AIOKafkaConsumer = consumer, ends: dict[Any, int] = ends, watch: EndWatch = watch
                ) -> bool:
                    for tp, end in ends.items():
                        if await consumer.position(tp) < end:
                            return False
                    return watch.done()

                await self._read(consumer, done, None, progress, fetched)
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
        fetched: Callable[[bool], None] | None = None,
    ) -> None:
        """Fetch, apply, and (in the group, `producer` set for dead letters) commit, until `done`. `fetched` is
        told after each fetch whether it returned records."""
        spell = 0  # records read since a fetch last came back empty
        while not await done():
            batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
            if self.linger_s and batches:
                batches = await self._linger(consumer, batches)
            records = self._in_order(batches)
            if fetched is not None:
                fetched(bool(records))
            if not records:
                if spell >= self.release_after_records:
                    self._caught_up()
                spell = 0
                continue
            spell += len(records)
            await self._apply(records, producer)
            if producer is not None:
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
                await consumer.commit(offsets)
                self._observe(consumer, batches)
                if self.positions is not None:
                    await self._save_positions(records)
            if progress:
                progress(len(records))

    async def _linger(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """A fetch shorter than `max_records` waits `linger_s` once and takes what the fetcher has buffered by then
        into the same batch (a full one goes at once: a backlog is read as fast as before). Per partition the
        records stay in the broker's order: the later fetch continues each partition where the first stopped."""
        have = sum(len(recs) for recs in batches.values())
        if have >= self.max_records:
            return batches
        await asyncio.sleep(self.linger_s)
        more = await consumer.getmany(timeout_ms=0, max_records=self.max_records - have)
        merged = {tp: list(recs) for tp, recs in batches.items()}
        for tp, recs in more.items():
            merged.setdefault(tp, []).extend(recs)
        return merged

    def _caught_up(self) -> None:
        """A catch-up (at least `release_after_records` records read without a fetch once coming back empty: a
        restart's backlog, a producer's burst) is read; its records, fetch buffers and the handler's transactions
        are free again, but glibc keeps freed heap memory for the process, so each catch-up left the RSS at its
        high-water mark (+13 to +32 MiB per catch-up in the soak). Hand the free heap back once, when the first
        fetch after it comes back empty: not per batch (it costs a walk of the heap), not per idle poll, and never
        for a trickle of small batches with empty fetches between them. An empty fetch, not a short one, marks the
        end: a catch-up's fetches come back short too, whenever the fetcher had buffered less than `max_records`.
        As the outbox relay does after a drained backlog (`OutboxRelay._release_heap`)."""
        self.heap_releases += 1
        self._release_heap()

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
        await ensure_topics(self.kafka, [target], 1)
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
    "EndWatch",
    "Kafka",
    "KafkaCluster",
    "MissingTopics",
    "PoisonMessage",
    "PositionStore",
    "Records",
    "Replayed",
    "TopicPartition",
    "client_options",
    "cluster",
    "describe_named",
    "dlq_topic",
    "ensure_topics",
    "kafka_reachable",
    "make_admin",
    "make_consumer",
    "make_producer",
    "make_sync_admin",
    "missing_topics",
    "partitions_of",
]
