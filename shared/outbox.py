"""Transactional outbox: rows written in the caller's transaction, relayed to Kafka at least once.

Each service owns an `outbox` table in its own schema (created by Alembic). The relay claims unsent
rows with FOR UPDATE SKIP LOCKED, publishes them, and marks them sent only after the broker acked.
Sent rows are kept (for `events republish`); a partial index keeps the unsent scan cheap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import BigInteger, Column, Index, Table, Text, any_, bindparam, cast, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import Field, SQLModel

from shared.db import TZ, Base, names, pg_type, qualified, raw_connection, shared_model, shared_table
from shared.kafka import Kafka, ensure_topics, make_admin, make_producer
from shared.metrics import PUBLISHED_POSITION, RELAY_ERRORS, RELAY_PUBLISHED

log = logging.getLogger("batterytrace.outbox")


class StreamPositionFields(SQLModel):
    """Columns of a consuming service's `stream_positions` table: per consumer group and topic, the newest
    producer outbox position applied (end-to-end lag). Each service declares its own table from these, with
    `stream_positions_model(schema)`."""

    consumer_group: str = Field(primary_key=True, sa_type=Text)
    topic: str = Field(primary_key=True, sa_type=Text)
    position: int = Field(sa_type=BigInteger)
    event_time: datetime | None = Field(default=None, sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class OutboxFields(SQLModel):
    """Columns of a service's `outbox` table; each service declares its own table from these, with
    `outbox_model(schema)`."""

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True})
    topic: str = Field(sa_type=Text)
    key: str = Field(sa_type=Text)
    payload: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
    sent_at: datetime | None = Field(default=None, sa_type=TZ)


def outbox_model(schema: str) -> type[Base]:
    """A service's `outbox` table, in its schema."""
    # Sent rows are kept; the partial index keeps the relay's scan for unsent ones cheap.
    unsent = Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL"))
    return shared_model(OutboxFields, "outbox", schema, unsent)


def stream_positions_model(schema: str) -> type[Base]:
    """A consuming service's `stream_positions` table, in its schema."""
    return shared_model(StreamPositionFields, "stream_positions", schema)


def _outbox(schema: str) -> Table:
    return shared_table(OutboxFields, "outbox", schema)


#: An outbox payload of JSON `null` is published as a Kafka tombstone (a record without a value), which
#: deletes its key from a compacted topic.
TOMBSTONE = "null"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    key: str
    payload: dict[str, Any] | None


def message_columns(outbox: Table) -> list[Column[Any]]:
    """The outbox columns a message fills in (the rest are the database's and the relay's)."""
    return [outbox.c[f.name] for f in dataclasses.fields(OutboxMessage)]


@functools.cache
def _enqueue_sql(schema: str) -> tuple[list[str], str]:
    """The message columns of a schema's outbox, and the INSERT of one message (asyncpg, built once)."""
    columns = message_columns(_outbox(schema))
    values = ", ".join(f"${i}::{pg_type(c)}" for i, c in enumerate(columns, 1))
    return [c.name for c in columns], f"INSERT INTO {qualified(_outbox(schema))} ({names(columns)}) VALUES ({values})"


async def enqueue(session: AsyncSession, schema: str, messages: Sequence[OutboxMessage]) -> None:
    """Write messages to the outbox inside the session's transaction (COPY for big batches)."""
    if not messages:
        return
    conn = await raw_connection(session)
    columns, insert = _enqueue_sql(schema)
    records = [(m.topic, m.key, orjson.dumps(m.payload).decode()) for m in messages]
    if len(messages) >= 50:
        await conn.copy_records_to_table("outbox", schema_name=schema, columns=columns, records=records)
    else:
        await conn.executemany(insert, records)


async def published_positions(engine: AsyncEngine, schema: str, topics: Sequence[str]) -> list[dict[str, Any]]:
    """For each topic: the newest outbox position written and the newest published, with their times."""
    t = _outbox(schema)
    newest = select(t.c.id, t.c.created_at).order_by(t.c.id.desc()).limit(1)
    out = []
    async with engine.connect() as conn:
        for topic in topics:
            written = (await conn.execute(newest.where(t.c.topic == topic))).first()
            sent = (await conn.execute(newest.where(t.c.topic == topic, t.c.sent_at.is_not(None)))).first()
            out.append(
                {
                    "topic": topic,
                    "written_position": written[0] if written else 0,
                    "written_at": written[1].isoformat() if written else None,
                    "published_position": sent[0] if sent else 0,
                    "published_at": sent[1].isoformat() if sent else None,
                }
            )
    return out


async def applied_positions(engine: AsyncEngine, schema: str) -> list[dict[str, Any]]:
    t = shared_table(StreamPositionFields, "stream_positions", schema)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(t.c.consumer_group, t.c.topic, t.c.position, t.c.event_time, t.c.updated_at))
        ).all()
    return [
        {
            "group": r[0],
            "topic": r[1],
            "applied_position": r[2],
            "applied_event_time": r[3].isoformat() if r[3] else None,
            "updated_at": r[4].isoformat(),
        }
        for r in rows
    ]


async def requeue(engine: AsyncEngine, schema: str, *, key: str | None = None, since: Any = None) -> int:
    """Mark already-published outbox rows unsent so the relay publishes them again, in their original
    order (consumers are idempotent). Works after Kafka retention dropped the original messages."""
    t = _outbox(schema)
    stmt = update(t).where(t.c.sent_at.is_not(None)).values(sent_at=None)
    if key is not None:
        stmt = stmt.where(t.c.key == key)
    if since is not None:
        stmt = stmt.where(t.c.created_at >= since)
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
    return int(result.rowcount or 0)


async def outbox_stats(engine: AsyncEngine, schema: str) -> dict[str, float]:
    """Backlog size and the age in seconds of the oldest unsent row."""
    t = _outbox(schema)
    oldest_age_s = func.coalesce(func.extract("epoch", func.now() - func.min(t.c.created_at)), 0)
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.count(), oldest_age_s).where(t.c.sent_at.is_(None)))).one()
    return {"backlog": float(row[0]), "oldest_age_s": float(row[1])}


class OutboxRelay:
    """Publishes a schema's outbox to Kafka. Several relays may run against one table safely."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        *,
        bootstrap: Kafka,
        topic_prefix: str = "",
        partitions: int = 4,
        batch_size: int = 1000,
        idle_sleep_s: float = 0.02,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s
        self.published = 0
        self.errors = 0
        self.last_error: str | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._admin: AIOKafkaAdminClient | None = None
        t = _outbox(schema)
        self._claim = (
            select(t.c.id, t.c.topic, t.c.key, cast(t.c.payload, Text), t.c.created_at)
            .where(t.c.sent_at.is_(None))
            .order_by(t.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        self._mark_sent = (
            update(t).where(t.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))).values(sent_at=func.now())
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.schema}")

    async def stop(self) -> None:
        """Finish the batch in flight, then stop."""
        self._stop.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, 20)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        await self._close_producer()

    async def _close_producer(self) -> None:
        if self._admin is not None:
            try:
                await self._admin.close()
            except Exception:
                pass
            self._admin = None
        if self._producer is not None:
            try:
                await self._producer.stop()
            except Exception:
                pass
            self._producer = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self.bootstrap)
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                n = await self.run_once()
                backoff = 0.2
                if n < self.batch_size:
                    await self._sleep(self.idle_sleep_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                RELAY_ERRORS.labels(self.schema).inc()
                self.last_error = repr(exc)
                log.warning("relay %s: publish failed (%r); retrying in %.1fs", self.schema, exc, backoff)
                await self._close_producer()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def run_once(self) -> int:
        """Claim, publish and mark one batch. Returns how many rows were published."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(self._claim)).all()
            if not rows:
                return 0
            producer = await self._ensure_producer()
            topics = {self.topic_prefix + r[1] for r in rows}
            # Checked before every batch, not cached: after a broker restart the embedded broker acks
            # writes to topics it no longer has (and a cached "known" set would let a batch through).
            await self._ensure_topics(topics)
            started = time.monotonic()
            # bt-position (the outbox ID) lets consumers report end-to-end lag in events, not just offsets.
            futures = [
                await producer.send(
                    self.topic_prefix + topic,
                    value=None if payload == TOMBSTONE else payload.encode(),
                    key=key.encode(),
                    headers=[("bt-position", str(oid).encode()), ("bt-time", created.isoformat().encode())],
                )
                for oid, topic, key, payload, created in rows
            ]
            await asyncio.gather(*futures)
            # Some brokers (the memory-only embedded one after a restart) ack writes to topics they do
            # not have, and drop them. Only count a batch as sent if its topics still exist.
            await self._check_topics(topics)
            await conn.execute(self._mark_sent, {"ids": [r[0] for r in rows]})
        self.published += len(rows)
        RELAY_PUBLISHED.labels(self.schema).inc(len(rows))
        for r in rows:
            PUBLISHED_POSITION.labels(self.schema, r[1]).set(r[0])
        log.debug("relay %s: %d rows in %.3fs", self.schema, len(rows), time.monotonic() - started)
        return len(rows)

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = make_admin(self.bootstrap)
            try:
                await admin.start()
            except Exception:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def _ensure_topics(self, topics: set[str]) -> None:
        present = set(await (await self._admin_client()).list_topics())
        missing = topics - present
        if missing:
            log.info("relay %s: creating missing topics %s", self.schema, sorted(missing))
            await ensure_topics(self.bootstrap, missing, self.partitions)

    async def _check_topics(self, topics: set[str]) -> None:
        present = set(await (await self._admin_client()).list_topics())
        if not topics <= present:
            raise RuntimeError(f"topics vanished during publish: {sorted(topics - present)}")
