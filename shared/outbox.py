"""Transactional outbox: rows written in the caller's transaction, relayed to Kafka at least once.

Each service owns an `outbox` table in its own schema (created by Alembic). One relay per outbox leads
(an advisory lock, see `OutboxRelay`): it claims unsent rows in id order, publishes them, and marks them
sent only after the broker acked. Sent rows are kept for a retention period (`outbox_retention_days`,
default 7) and then pruned by the leader; the outbox is a buffer, not a history: republishing reads the
system of record (`batterytrace events republish`, `batterytrace registry republish`). A partial index keeps the unsent scan cheap.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import BigInteger, Column, Index, Table, Text, func, select, text, update
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import Field, SQLModel

from shared.db import TZ, Base, asyncpg_dsn, names, pg_type, qualified, raw_connection, shared_model, shared_table
from shared.kafka import PARTITIONER, Kafka, ensure_topics, make_admin, make_producer, missing_topics
from shared.memdebug import release_free_heap
from shared.metrics import PUBLISHED_POSITION, RELAY_ERRORS, RELAY_LEADER, RELAY_PUBLISHED

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
    `outbox_model(schema)`.

    The payload is `json`, not `jsonb`: it is written once (by `enqueue` or a capture's own statement, as
    orjson's compact text) and read once, as text, by the relay; nothing queries into it. `json` stores the text
    as given, after a syntax check, where `jsonb` built its binary form on every INSERT and printed it back on
    every claim (measured per row: INSERT 18.6 µs as jsonb, 7.7 µs as json; the claim's text 3.4 µs, 1.9 µs).
    So a record carries the bytes its writer gave, `payload_text`'s: compact (jsonb's text had a space after every
    `:` and `,`), keys sorted (see there). Consumers parse it; none compares bytes."""

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True})
    topic: str = Field(sa_type=Text)
    key: str = Field(sa_type=Text)
    payload: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
    sent_at: datetime | None = Field(default=None, sa_type=TZ)


#: Every row is inserted unsent and updated once when published, and rows are kept: vacuumed and analyzed after
#: every 10,000 changed rows, not once a fifth of an ever-growing table has changed. Else the statistics say "mostly
#: unsent" long after a load was published, and the unsent index keeps its dead entries. Storage parameters, set
#: by migration 2026_12_07 (as the log queue's are by 2026_12_02b; the models declare columns and indexes).
OUTBOX_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "10000",
}


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
#: deletes its key from a compacted topic. The relay compares the stored text byte for byte (`json` keeps it as
#: written): every writer writes `payload_text`'s, `null` for a payload of None, never a spaced variant.
TOMBSTONE = "null"
_TOMBSTONE_BYTES = TOMBSTONE.encode()


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    key: str
    payload: dict[str, Any] | None


def message_columns(outbox: Table) -> list[Column[Any]]:
    """The outbox columns a message fills in (the rest are the database's and the relay's)."""
    return [outbox.c[f.name] for f in dataclasses.fields(OutboxMessage)]


def payload_text(payload: dict[str, Any] | None) -> str:
    """An outbox payload as its row stores it and its record carries it: orjson's compact JSON with every object's
    keys sorted (None: JSON `null`, a tombstone). `json` keeps the text as written, so without the sort a map's key
    order would be whatever its writer built: a request's for a live event, jsonb's for one republished from the
    ledger, and a consumer iterating the map (the portal's EPCIS outputs from `recovered_kg`) would project one
    event two ways. jsonb imposed one order (shortest key first); the sort imposes one at orjson's cost (about
    1 µs per envelope)."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()


@functools.cache
def _enqueue_sql(schema: str) -> tuple[list[str], str]:
    """The message columns of a schema's outbox, and the INSERT of one message (asyncpg, built once)."""
    columns = message_columns(_outbox(schema))
    values = ", ".join(f"${i}::{pg_type(c)}" for i, c in enumerate(columns, 1))
    # FROM the transaction's ID: assigned (if it was not yet) before the row's outbox ID is drawn (ClaimCursor).
    return [c.name for c in columns], (
        f"INSERT INTO {qualified(_outbox(schema))} ({names(columns)}) SELECT {values} FROM (SELECT pg_current_xact_id()) x"
    )


async def enqueue(session: AsyncSession, schema: str, messages: Sequence[OutboxMessage]) -> None:
    """Write messages to the outbox inside the session's transaction (COPY for big batches)."""
    if not messages:
        return
    conn = await raw_connection(session)
    columns, insert = _enqueue_sql(schema)
    records = [(m.topic, m.key, payload_text(m.payload)) for m in messages]
    if len(messages) >= 50:
        # COPY draws the IDs of a buffer of rows before it writes the first: the transaction's ID comes first
        # (ClaimCursor: a transaction holding an outbox ID has its own ID already).
        await conn.execute("SELECT pg_current_xact_id()")
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
    order (consumers are idempotent). Only what the outbox still holds (published rows are pruned after
    `outbox_retention_days`): to re-send everything, republish from the system of record instead
    (`batterytrace events republish`, `batterytrace registry republish`)."""
    t = _outbox(schema)
    stmt = update(t).where(t.c.sent_at.is_not(None)).values(sent_at=None)
    if key is not None:
        stmt = stmt.where(t.c.key == key)
    if since is not None:
        stmt = stmt.where(t.c.created_at >= since)
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
    return int(result.rowcount or 0)


#: Rows deleted per statement when pruning (short transactions; the relay keeps publishing in between).
PRUNE_CHUNK = 10_000


async def prune_connection(conn: asyncpg.Connection, schema: str, older_than: timedelta) -> int:
    """Delete published rows sent more than `older_than` ago, in chunks, keeping the newest row of each topic
    (`published_positions` reports it). Unsent rows are never touched. Returns how many were deleted."""
    t = qualified(_outbox(schema))
    # The newest published row of each topic stays (one that is not old enough to go stays anyway).
    keep = [r[0] for r in await conn.fetch(f"SELECT max(id) FROM {t} WHERE sent_at IS NOT NULL GROUP BY topic")]
    total = 0
    while True:
        status = await conn.execute(
            f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE sent_at < now() - $1::interval "
            f"AND id <> ALL($2::bigint[]) ORDER BY id LIMIT {PRUNE_CHUNK})",
            older_than,
            keep,
        )
        n = int(status.split()[-1])
        total += n
        if n < PRUNE_CHUNK:
            return total


async def prune(engine: AsyncEngine, schema: str, older_than: timedelta) -> int:
    """`prune_connection` on a connection of its own (the CLI, tests); the relay leader prunes on its lock's."""
    conn = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    try:
        return await prune_connection(conn, schema, older_than)
    finally:
        await conn.close()


async def outbox_stats(engine: AsyncEngine, schema: str) -> dict[str, float]:
    """Backlog size and the age in seconds of the oldest unsent row."""
    t = _outbox(schema)
    oldest_age_s = func.coalesce(func.extract("epoch", func.now() - func.min(t.c.created_at)), 0)
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.count(), oldest_age_s).where(t.c.sent_at.is_(None)))).one()
    return {"backlog": float(row[0]), "oldest_age_s": float(row[1])}


def relay_lock_key(schema: str) -> int:
    """The advisory lock a schema's relay leader holds: a stable signed 64-bit key (advisory locks are per
    database, so one key per outbox schema is one lock per outbox)."""
    digest = hashlib.blake2b(f"batterytrace.outbox.relay:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: How often a claim scans every unsent row anyway (a requeued row, or one the cursor gave up on), seconds.
CLAIM_SWEEP_S = 2.0
#: Separate ranges of missing IDs the cursor keeps apart, at most; beyond it they are waited at as one range (from
#: the first to the last, until every transaction that could hold any of them has ended): coarser, never skipping.
MAX_WAITED_RANGES = 1_000
#: Two columns a claim statement adds: its snapshot's `xmin` and its own transaction's ID (both uncorrelated
#: sub-selects, evaluated once per statement; the statement's snapshot was taken before its transaction ID, which a
#: claim has anyway: it locks or deletes the rows it takes).
SNAPSHOT_XMIN = "(SELECT pg_snapshot_xmin(s)::text::bigint FROM pg_current_snapshot() s)"
SNAPSHOT_COLUMNS = f"{SNAPSHOT_XMIN} AS snapshot_xmin, (SELECT pg_current_xact_id()::text::bigint) AS claim_xid"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a claim statement knew of the other transactions (PostgreSQL xid8 values): every transaction with an ID
    below `xmin` had ended when the claim read; `xid`, the claim's own transaction ID, was assigned after the claim's
    snapshot was taken, so it is above the ID of every transaction that had one by then. (Not the snapshot's
    `xmax`: that is only past the latest *completed* transaction, and a transaction running with a higher ID is
    in neither `xmax` nor the snapshot's list of running ones.)"""

    xmin: int
    xid: int

    @classmethod
    def of(cls, row: Any) -> Snapshot:
        """From a row of a statement that selected `SNAPSHOT_COLUMNS`."""
        return cls(int(row["snapshot_xmin"]), int(row["claim_xid"]))


class ClaimCursor:
    """Where the leader's next claim starts. Sent rows leave dead entries in the unsent index until a vacuum, which
    a claim from the start walks every time (the costliest statement of a batch load); a claim after the last ID
    claimed skips them. But IDs are taken at INSERT and rows become visible at COMMIT, so a lower ID may commit
    after a higher one was claimed: every ID above the highest claimed that a claim did not return is waited at
    (the cursor stays below it) until a claim returns it or its transaction has certainly ended without it.

    "Certainly ended" is read from the claims' snapshots, not from a clock: an ID first missed by a claim whose own
    transaction ID is X belongs to a transaction with an ID below X. (That transaction drew the outbox ID before
    the higher one the claim saw committed, so before the claim's snapshot; and it had its own ID before it drew the
    outbox ID: `enqueue` and the capture statements see to it. X was assigned after the snapshot.) Once a later
    claim that starts below it does not return it either, and that claim's `xmin` is at or past X, that transaction
    had ended before the claim read: it rolled back, and the ID is given up. So a transaction that is
    slow to commit (seconds, under load or CPU starvation) is waited for however long it takes: a timeout that
    gave it up would let the next row of the same battery be claimed first, and the battery's messages reordered.
    A long-running write transaction anywhere in the cluster holds `xmin` back and the cursor with it, which costs
    the claims their skip (the walk over dead entries), never order.

    Every `sweep_s` one claim starts from the beginning anyway, which finds a requeued row (published after higher
    IDs: a requeue is a re-send). One battery's rows are written one transaction after the other, under the
    battery's row lock, so their IDs and commits are in the same order, and the cursor keeps it on the topic.
    Only the leader claims (`OutboxRelay`); a new leader starts with a new cursor, from the beginning, and waits at
    whatever lower IDs its first claim did not return (rows still in flight when it took over: the failover case).
    `tests/test_outbox_cursor.py` drives the cursor against a model of PostgreSQL's transactions (hypothesis)."""

    def __init__(self, sweep_s: float = CLAIM_SWEEP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.sweep_s = sweep_s
        self.clock = clock
        self.high: int | None = None  # the highest ID claimed (None: nothing yet)
        #: IDs up to the highest claimed that no claim returned yet, as ascending disjoint ranges (first, last, xid):
        #: the transaction ID of the claim that first missed them. However many IDs a gap holds (concurrent batches of thousands), it is
        #: one range: none is ever skipped for being one too many.
        self.waiting: list[tuple[int, int, int]] = []
        self._next_sweep = 0.0  # the first claim sweeps

    def start(self) -> int:
        """The ID the next claim starts after (0: every unsent row)."""
        now = self.clock()
        if now >= self._next_sweep or self.high is None:
            self._next_sweep = now + self.sweep_s
            return 0
        return self.waiting[0][0] - 1 if self.waiting else self.high

    def claimed(self, ids: Sequence[int], snapshot: Snapshot) -> None:
        """A claim that started at `start()` returned these IDs (ascending) under `snapshot`, and committed: they
        are published and marked sent."""
        if not ids:
            self.found_none(snapshot.xmin)
            return
        last = ids[-1]
        kept: list[tuple[int, int, int]] = []
        for first, end, missed_by in self.waiting:
            for a, b in _gaps(first, end, ids):
                # Below the highest this claim returned, not returned, and every transaction that could hold it
                # had ended when the claim read (the claim started below it): rolled back, given up.
                if not (b < last and snapshot.xmin >= missed_by):
                    kept.append((a, b, missed_by))
        # Every ID up to the highest claimed that no claim returned is waited at, from 1 on the first claim: a new
        # leader's first claim may come while lower IDs are still in flight (the next claim gives up at once what
        # was only sent or rolled back before it, as nothing older is running by then).
        high = 0 if self.high is None else self.high
        if last > high:
            kept += [(a, b, snapshot.xid) for a, b in _gaps(high + 1, last, ids)]
            self.high = last
        if len(kept) > MAX_WAITED_RANGES:
            kept = [(kept[0][0], kept[-1][1], max(x for _, _, x in kept))]
        self.waiting = kept

    def found_none(self, xmin: int) -> None:
        """A look from `start()` under a snapshot with this `xmin` found no unsent row at all (an empty claim, or
        the idle leader's check). Every waited range lies above that start, so a range whose transactions had all
        ended by then (`xmin` at or past the claim that first missed it) holds nothing that will ever come: given
        up. Without this an idle leader waited at such a range until the next row arrived, and each of its checks
        walked the dead index entries of every row sent above it (a third of a core, at 200,000 sent rows)."""
        self.waiting = [w for w in self.waiting if xmin < w[2]]


def _gaps(first: int, last: int, ids: Sequence[int]) -> list[tuple[int, int]]:
    """The ranges of first..last (inclusive) that are not in `ids` (ascending)."""
    out: list[tuple[int, int]] = []
    at = first
    for i in ids[bisect.bisect_left(ids, first) : bisect.bisect_right(ids, last)]:
        if i > at:
            out.append((at, i - 1))
        at = i + 1
    if at <= last:
        out.append((at, last))
    return out


class OutboxRelay:
    """Publishes a schema's outbox to Kafka. Any number may run against one table; exactly one publishes.

    Leadership is a session-level PostgreSQL advisory lock (`pg_try_advisory_lock`) held on a dedicated
    connection outside the pool, and every batch is claimed, published and marked in a transaction on that
    same connection. The lock lives exactly as long as the connection: when the leader dies (SIGKILL, a
    lost network, a PostgreSQL restart) its connection closes, the server releases the lock and rolls back
    the batch in flight, and a standby (polling every `standby_poll_s`) takes over from the oldest unsent
    row. A leader that lost its connection cannot mark or claim anything any more, so there is no window in
    which two relays claim different rows (which is what would reorder a battery's events on the topic).
    A lease row would need clocks and a lease period to wait out; the lock needs neither.

    What the old leader had sent but not marked is sent again by the new one, after it: consumers dedupe on
    the event ID, and the first copy of each event still arrives in outbox order.

    The leader also prunes published rows older than `retention_s` every `prune_interval_s` (keeping the
    newest row of each topic, which `published_positions` reports); republishing reads the system of
    record, not the outbox (`batterytrace events republish`)."""

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
        idle_max_s: float = 0.1,
        standby_poll_s: float = 0.5,
        retention_s: float | None = 7 * 86_400,
        prune_interval_s: float = 600.0,
        release_after_rows: int = 1000,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s
        self.idle_max_s = max(idle_max_s, idle_sleep_s)
        self.standby_poll_s = standby_poll_s
        self.retention_s = retention_s
        self.prune_interval_s = prune_interval_s
        self.release_after_rows = release_after_rows
        self.published = 0
        self.pruned = 0
        self.heap_releases = 0  # backlogs drained, after each of which the free heap went back to the OS
        self.errors = 0
        self.leader = False
        self.terms = 0  # how often this relay became the leader
        self.last_error: str | None = None
        self._dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self._lock_conn: asyncpg.Connection | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._next_prune = 0.0
        t = _outbox(schema)
        where_unsent = f"{t.c.sent_at.name} IS NULL"
        self._claim = (
            # The payload as UTF-8 bytes, what the record carries: no str per row to encode (and keep) beside it.
            f"SELECT id, topic, key, convert_to(payload::text, 'UTF8'), created_at, {SNAPSHOT_COLUMNS} "
            f"FROM {qualified(t)} "
            f"WHERE {where_unsent} "
            "AND id > $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        )
        self.cursor = ClaimCursor()
        #: Whether a claim from an ID would find anything: an idle leader asks only this (one statement, no
        #: transaction) instead of claiming nothing in a transaction of its own every `idle_sleep_s`.
        #: The first such ID (not `EXISTS`: under statistics that still count a published load as unsent, that
        #: planned a sequential scan of the whole table, every poll), with the statement's snapshot `xmin` for
        #: the cursor (no transaction ID: an idle check writes nothing).
        self._pending = (
            f"SELECT (SELECT id FROM {qualified(t)} WHERE {where_unsent} AND id > $1 ORDER BY id LIMIT 1), "
            + SNAPSHOT_XMIN
        )
        self._mark_sent = f"UPDATE {qualified(t)} SET sent_at = now() WHERE id = ANY($1::bigint[])"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.schema}")

    async def stop(self) -> None:
        """Finish the batch in flight, then stop (and give up the lock)."""
        self._stop.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, 20)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        await self._close_producer()
        await self._resign()

    def status(self) -> dict[str, Any]:
        return {
            "leader": self.leader,
            "terms": self.terms,
            "published": self.published,
            "pruned": self.pruned,
            "errors": self.errors,
            "last_error": self.last_error,
        }

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

    # ---- leadership ----

    async def _lead(self) -> bool:
        """Whether this relay holds the lock (trying once to take it if not)."""
        conn = self._lock_conn
        if conn is not None and conn.is_closed():
            await self._resign()
            conn = None
        if conn is None:
            conn = self._lock_conn = await asyncpg.connect(
                self._dsn,
                timeout=10,
                command_timeout=60,  # a hung server (no RST) cannot hold this relay forever
                server_settings={
                    "application_name": f"bt-relay:{self.schema}:{os.getpid()}",
                    # A leader whose host vanished (no FIN) keeps the lock until the server notices: ~30 s.
                    "tcp_keepalives_idle": "10",
                    "tcp_keepalives_interval": "5",
                    "tcp_keepalives_count": "4",
                },
            )
        if self.leader:
            return True
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", relay_lock_key(self.schema)):
            self.leader = True
            self.terms += 1
            self.cursor = ClaimCursor(self.cursor.sweep_s, self.cursor.clock)  # from the beginning
            RELAY_LEADER.labels(self.schema).set(1)
            log.info("relay %s: leader now (pid %d)", self.schema, os.getpid())
        return self.leader

    async def _resign(self) -> None:
        """Drop the lock connection: the server releases the lock with it."""
        was_leader, self.leader = self.leader, False
        RELAY_LEADER.labels(self.schema).set(0)
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()
        if was_leader:
            log.info("relay %s: no longer the leader", self.schema)

    async def _run(self) -> None:
        backoff = 0.2
        spell = 0  # rows published since the outbox was last found empty
        idle = self.idle_sleep_s  # doubles with each empty poll, up to idle_max_s; back at once when rows come
        while not self._stop.is_set():
            try:
                if not await self._lead():
                    await self._sleep(self.standby_poll_s)
                    continue
                n = await self.run_once()
                backoff = 0.2
                spell += n
                if n == 0:
                    if spell >= self.release_after_rows:
                        self._release_heap()
                    spell = 0
                if n < self.batch_size:
                    await self._prune_if_due()
                    await self._sleep(idle if n == 0 else self.idle_sleep_s)
                idle = min(idle * 2, self.idle_max_s) if n == 0 else self.idle_sleep_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                RELAY_ERRORS.labels(self.schema).inc()
                self.last_error = repr(exc)
                log.warning("relay %s: publish failed (%r); retrying in %.1fs", self.schema, exc, backoff)
                await self._close_producer()
                # A database error may leave the lock connection unusable but not yet closed (asyncpg out of
                # step after the server's "terminating connection"): start over on a new one. A broker error
                # keeps the lock (the batch rolled back; this relay retries it).
                lost = self._lock_conn is None or self._lock_conn.is_closed()
                if lost or isinstance(
                    exc, asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError
                ):
                    await self._resign()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _release_heap(self) -> None:
        """A backlog (a republish, the queue after a broker outage: at least `release_after_rows` rows published
        without the outbox once found empty) is drained; its rows and record batches are free again, but glibc
        keeps freed heap memory for the process, so every such burst would leave the RSS at its high-water mark
        (and fragmentation raises the mark a little each time). Hand the free heap back once per drained backlog:
        not per batch (it costs a walk of the heap), and never for a trickle that keeps finding the outbox empty."""
        self.heap_releases += 1
        release_free_heap()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _prune_if_due(self) -> None:
        if self.retention_s is None or time.monotonic() < self._next_prune or self._lock_conn is None:
            return
        self._next_prune = time.monotonic() + self.prune_interval_s
        n = await prune_connection(self._lock_conn, self.schema, timedelta(seconds=self.retention_s))
        self.pruned += n
        if n:
            log.info("relay %s: pruned %d published outbox rows older than %.0f s", self.schema, n, self.retention_s)

    async def run_once(self) -> int:
        """As the leader: claim, publish and mark one batch. Returns how many rows were published."""
        if not self.leader and not await self._lead():
            return 0
        conn = self._lock_conn
        assert conn is not None
        start = self.cursor.start()
        first, xmin = await conn.fetchrow(self._pending, start)
        if first is None:
            self.cursor.found_none(int(xmin))
            return 0
        async with conn.transaction():
            rows = await conn.fetch(self._claim, start, self.batch_size)
            if not rows:
                return 0
            producer = await self._ensure_producer()
            topics = {self.topic_prefix + r[1] for r in rows}
            # Checked before every batch, not cached: after a broker restart the embedded broker acks
            # writes to topics it no longer has (and a cached "known" set would let a batch through). Both
            # checks ask about the batch's topics alone (`missing_topics`), not the cluster's whole list.
            await self._ensure_topics(topics)
            started = time.monotonic()
            await asyncio.gather(*await self._send(producer, rows))
            # Some brokers (the memory-only embedded one after a restart) ack writes to topics they do
            # not have, and drop them. Only count a batch as sent if its topics still exist.
            await self._check_topics(topics)
            await conn.execute(self._mark_sent, [r[0] for r in rows])
        self.cursor.claimed([r[0] for r in rows], Snapshot.of(rows[0]))
        self.published += len(rows)
        RELAY_PUBLISHED.labels(self.schema).inc(len(rows))
        newest = {r[1]: r[0] for r in rows}  # rows in id order: each topic's last is its newest
        for topic, position in newest.items():
            PUBLISHED_POSITION.labels(self.schema, topic).set(position)
        log.debug("relay %s: %d rows in %.3fs", self.schema, len(rows), time.monotonic() - started)
        return len(rows)

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[Any]) -> list[asyncio.Future[Any]]:
        """Hand the rows to the producer, in id order, as record batches of one partition each: every record on
        the partition `producer.send` would choose for its key (the producer's partitioner over the topic's
        partitions), appended to that partition's batch, which goes to the producer when full and at the end. The
        records are those `send` would make; what a message costs is only its append (one future per batch, not
        per message; the relay's largest share of a registration's CPU). Returns the batches' futures."""
        futures: list[asyncio.Future[Any]] = []
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], Any] = {}
        for oid, topic, key, payload, created, *_ in rows:
            name = self.topic_prefix + topic
            known = partitions.get(name)
            if known is None:
                await producer.partitions_for(name)  # the topic's metadata, as send waits for it
                known = partitions[name] = list(producer.client.cluster.partitions_for_topic(name))
            key_bytes = key.encode()
            partition = PARTITIONER(key_bytes, known, known)  # the producer's own partitioner (make_producer)
            # bt-position (the outbox ID) lets consumers report end-to-end lag in events, not just offsets.
            record = {
                "timestamp": None,
                "key": key_bytes,
                "value": None if payload == _TOMBSTONE_BYTES else payload,
                "headers": [("bt-position", str(oid).encode()), ("bt-time", created.isoformat().encode())],
            }
            batch = batches.get((name, partition))
            if batch is None or batch.append(**record) is None:  # a full batch goes out, a new one takes the record
                if batch is not None:
                    futures.append(await producer.send_batch(batch, name, partition=partition))
                batch = batches[(name, partition)] = producer.create_batch()
                if batch.append(**record) is None:  # an empty batch takes any one record; never drop one
                    raise RuntimeError(f"outbox row {oid} does not fit in a record batch")
        for (name, partition), batch in batches.items():
            futures.append(await producer.send_batch(batch, name, partition=partition))
        return futures

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
        missing = await missing_topics(await self._admin_client(), topics)
        if missing:
            log.info("relay %s: creating missing topics %s", self.schema, sorted(missing))
            await ensure_topics(self.bootstrap, missing, self.partitions)

    async def _check_topics(self, topics: set[str]) -> None:
        vanished = await missing_topics(await self._admin_client(), topics)
        if vanished:
            raise RuntimeError(f"topics vanished during publish: {sorted(vanished)}")
