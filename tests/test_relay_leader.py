"""One relay leader per outbox: any number of relays run, exactly one publishes (a PostgreSQL advisory
lock held on the connection that claims and marks every batch); when the leader dies mid-batch another takes
over, and the topic still carries each battery's events in order, none lost, each applied once by a
consumer that dedupes by event ID."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.db import asyncpg_dsn, make_engine, make_sessionmaker
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, outbox_stats, prune, relay_lock_key
from tests.conftest import eventually, read_topic

SCHEMA = "events"
TOPIC = "relay.leader.test.v1"
BATTERIES = [f"KR-LEAD-{i:02d}" for i in range(8)]


class Writer:
    """Per battery one writer task appending numbered events to the outbox, in its own transactions (as the
    events service does: one battery's events are written one transaction after the other)."""

    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url, pool_size=len(BATTERIES))
        self.maker = make_sessionmaker(self.engine)
        self.written: dict[str, list[str]] = defaultdict(list)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._write(b)) for b in BATTERIES]

    async def _write(self, battery: str) -> None:
        while not self.stop.is_set():
            batch = []
            for _ in range(5):
                seq = len(self.written[battery]) + len(batch) + 1
                batch.append({"id": str(uuid.uuid4()), "battery": battery, "seq": seq})
            async with self.maker() as session, session.begin():
                await enqueue(session, SCHEMA, [OutboxMessage(TOPIC, battery, p) for p in batch])
            self.written[battery] += [p["id"] for p in batch]
            await asyncio.sleep(0.003)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await self.engine.dispose()


LOGS = Path(tempfile.mkdtemp(prefix="bt-relay-logs-"))


@pytest.fixture(scope="module", autouse=True)
def _remove_logs() -> Iterator[None]:
    """The relays' logs are read by failing assertions (relay_logs); removed with the module."""
    yield
    shutil.rmtree(LOGS, ignore_errors=True)


def start_relay(db_url: str, bootstrap: str, prefix: str) -> subprocess.Popen[bytes]:
    with (LOGS / f"relay-{uuid.uuid4().hex[:6]}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.relay_process", db_url, bootstrap, SCHEMA, prefix, "200"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def relay_logs() -> str:
    return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}" for f in LOGS.glob("*.log"))


async def leader(conn: asyncpg.Connection) -> tuple[int, str] | None:
    """The OS pid of the relay process holding the lock, and its lock connection's state."""
    row = await conn.fetchrow(
        "SELECT a.application_name, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
        relay_lock_key(SCHEMA) & 0xFFFFFFFFFFFFFFFF,
    )
    if row is None:
        return None
    return int(row["application_name"].rsplit(":", 1)[1]), row["state"]


async def kill_leader_mid_batch(conn: asyncpg.Connection, procs: dict[int, subprocess.Popen[bytes]]) -> int:
    """SIGKILL the leader while its batch transaction is open (claimed, not yet marked sent)."""

    async def in_batch() -> tuple[int, str] | None:
        found = await leader(conn)
        return found if found and found[1] == "idle in transaction" else None

    pid, _ = await eventually(in_batch, timeout_s=30, interval_s=0.002)
    os.kill(pid, signal.SIGKILL)
    procs.pop(pid).wait(10)
    return pid


async def test_three_relays_one_leader_survives_two_leader_kills(db_url, infra, topic_prefix, record_property):
    bootstrap = infra.kafka.bootstrap
    procs = {p.pid: p for p in (start_relay(db_url, bootstrap, topic_prefix) for _ in range(3))}
    writer = Writer(db_url)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    engine = make_engine(db_url, pool_size=2)
    try:
        # Three interpreters importing the service stack: slow on a busy machine.
        first = (await eventually(lambda: leader(conn), timeout_s=120))[0]
        assert first in procs, relay_logs()
        writer.start()
        killed = []
        for _ in range(2):
            await asyncio.sleep(1.0)  # a backlog builds up and is being published
            killed.append(await kill_leader_mid_batch(conn, procs))

            # Another relay takes over (the dead one's connection closed: lock released, batch rolled back). For a
            # moment after the kill the lock may still show the dead relay's session: its backend has yet to read
            # the closed socket and end; the lock is released when it has.
            async def taken_over() -> tuple[int, str] | None:
                found = await leader(conn)
                return found if found and found[0] not in killed else None

            successor = await eventually(taken_over, timeout_s=30)
            assert successor[0] in procs, relay_logs()
        await asyncio.sleep(1.0)
        await writer.finish()

        async def drained() -> bool:
            return (await outbox_stats(engine, SCHEMA))["backlog"] == 0

        await eventually(drained, timeout_s=60)
        total = sum(len(ids) for ids in writer.written.values())
        msgs = await read_topic(bootstrap, topic_prefix + TOPIC, at_least=total, timeout_s=60, settle_s=1.0)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
        await conn.close()
        await engine.dispose()

    msgs.sort(key=lambda m: (m["partition"], m["offset"]))
    # A consumer that dedupes by event ID: the effect of each event is applied once, in topic order.
    applied: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for m in msgs:
        v: dict[str, Any] = m["value"]
        if v["id"] in seen:
            continue
        seen.add(v["id"])
        applied[v["battery"]].append(v["seq"])
    ids_on_topic = [m["value"]["id"] for m in msgs]
    written = {b: list(ids) for b, ids in writer.written.items()}
    report = {
        "written": total,
        "on_topic": len(msgs),
        "distinct_on_topic": len(seen),
        "redelivered_copies": len(msgs) - len(seen),
        "leaders_killed_mid_batch": len(killed),
    }
    record_property("relay_failover", report)
    print("relay failover:", report)
    assert seen == {i for ids in written.values() for i in ids}, "nothing lost, nothing extra"
    for battery, ids in written.items():
        assert applied[battery] == list(range(1, len(ids) + 1)), f"{battery}'s events applied once each, in order"
    assert len(ids_on_topic) >= total


async def test_only_the_leader_publishes_and_a_standby_takes_over_when_its_connection_dies(db_url, infra, topic_prefix):
    """In one process, two relays on their own pools: the standby publishes nothing while the leader lives;
    when the leader's lock connection is terminated by the server, the standby becomes the leader."""
    engines = [make_engine(db_url, pool_size=2) for _ in range(2)]
    relays = [
        OutboxRelay(
            e, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix, idle_sleep_s=0.01, standby_poll_s=0.1
        )
        for e in engines
    ]
    maker = make_sessionmaker(engines[0])
    conn = await asyncpg.connect(asyncpg_dsn(db_url))

    async def write(n: int) -> None:
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, [OutboxMessage(TOPIC, "KR-1", {"id": str(uuid.uuid4())}) for _ in range(n)])

    async def drained() -> bool:
        return (await outbox_stats(engines[0], SCHEMA))["backlog"] == 0

    try:
        relays[0].start()
        await eventually(lambda: relays[0].leader, timeout_s=10)
        relays[1].start()
        await write(300)
        await eventually(drained, timeout_s=30)
        await asyncio.sleep(0.3)
        assert relays[0].published == 300 and relays[1].published == 0 and not relays[1].leader
        # The server ends the leader's lock connection (as a PostgreSQL restart or a lost network would).
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"bt-relay:{SCHEMA}:{os.getpid()}",
        )
        await write(200)
        await eventually(drained, timeout_s=30)
        assert relays[0].published + relays[1].published >= 500
        assert relays[0].terms + relays[1].terms >= 2, "leadership passed on (or was retaken) after the loss"
        assert sum(1 for r in relays if r.leader) == 1
    finally:
        for r in relays:
            await r.stop()
        await conn.close()
        for e in engines:
            await e.dispose()


async def test_prune_deletes_only_published_rows_older_than_the_retention(db_url, infra, topic_prefix):
    engine = make_engine(db_url, pool_size=2)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, [OutboxMessage(TOPIC, f"K{i}", {"id": str(i)}) for i in range(10)])
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            # 6 sent 8 days ago, 2 sent just now, 2 unsent.
            await conn.execute(
                "UPDATE events.outbox SET sent_at = now() - interval '8 days' WHERE id IN "
                "(SELECT id FROM events.outbox ORDER BY id LIMIT 6)"
            )
            await conn.execute(
                "UPDATE events.outbox SET sent_at = now() WHERE id IN "
                "(SELECT id FROM events.outbox WHERE sent_at IS NULL ORDER BY id LIMIT 2)"
            )
            assert await prune(engine, SCHEMA, timedelta(days=7)) == 6
            left = await conn.fetch("SELECT sent_at IS NULL AS unsent FROM events.outbox")
            assert len(left) == 4 and sum(r["unsent"] for r in left) == 2
            # Pruning everything published keeps the newest published row of each topic (the reported position).
            assert await prune(engine, SCHEMA, timedelta(0)) == 1
            assert await conn.fetchval("SELECT count(*) FROM events.outbox WHERE sent_at IS NOT NULL") == 1
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def test_prune_keeps_the_newest_published_row_of_every_topic(db_url, infra, topic_prefix):
    engine = make_engine(db_url, pool_size=2)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session, session.begin():
            await enqueue(
                session, SCHEMA, [OutboxMessage(t, f"K{i}", {"id": str(i)}) for t in (TOPIC, "other") for i in range(3)]
            )
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            newest = await conn.fetch("SELECT max(id) FROM events.outbox GROUP BY topic ORDER BY 1")
            await conn.execute("UPDATE events.outbox SET sent_at = now() - interval '8 days'")
            assert await prune(engine, SCHEMA, timedelta(days=7)) == 4
            left = await conn.fetch("SELECT id FROM events.outbox ORDER BY id")
            assert [r[0] for r in left] == [r[0] for r in newest]
        finally:
            await conn.close()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("retention_s", [0.0])
async def test_the_leader_prunes_in_the_background(db_url, infra, topic_prefix, retention_s):
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(
        engine,
        SCHEMA,
        bootstrap=infra.kafka.bootstrap,
        topic_prefix=topic_prefix,
        idle_sleep_s=0.01,
        retention_s=retention_s,
        prune_interval_s=0.2,
    )
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, [OutboxMessage(TOPIC, f"K{i}", {"id": str(i)}) for i in range(50)])
        relay.start()

        async def pruned() -> bool:
            return relay.pruned == 49

        await eventually(pruned, timeout_s=20)
        assert relay.published == 50
    finally:
        await relay.stop()
        await engine.dispose()


async def test_the_relay_places_each_message_where_producer_send_would_in_order(db_url, infra, topic_prefix):
    """The relay hands the producer record batches of one partition each (OutboxRelay._send): every message still
    lands on the partition its key hashes to (the producer's partitioner, murmur2 as Kafka's own clients), each
    key's messages in outbox order, full batches split, nothing lost or repeated."""
    from aiokafka.partitioner import DefaultPartitioner

    keys = [f"KR-PART-{i:03d}" for i in range(40)]
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix, batch_size=150)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            # 600 messages of ~2 KB: over the producer's 256 KiB batches per partition, so batches fill and split.
            padding = "x" * 2000
            messages = [OutboxMessage(TOPIC, keys[i % 40], {"n": i, "pad": padding}) for i in range(600)]
            await enqueue(session, SCHEMA, messages)
        while await relay.run_once():
            pass
        assert (await outbox_stats(engine, SCHEMA))["backlog"] == 0
    finally:
        await relay.stop()
        await engine.dispose()
    got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC, at_least=600)
    assert sorted(m["value"]["n"] for m in got) == list(range(600))
    partitions = sorted({m["partition"] for m in got} | set(range(4)))
    for m in got:
        assert m["partition"] == DefaultPartitioner()(m["key"].encode(), partitions, partitions), m["key"]
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for m in got:
        by_key[m["key"]].append((m["offset"], m["value"]["n"]))
    assert all([n for _, n in sorted(seen)] == sorted(n for _, n in seen) for seen in by_key.values())


async def test_an_idle_relay_polls_less_and_still_publishes_a_new_row_at_once(db_url, infra, topic_prefix):
    """Each empty poll doubles the pause up to `idle_max_s` (an idle leader asks ten times a second, not a hundred),
    and the first row after the quiet spell is still published. (How soon is the bench's freshness figure, not a
    timed assertion here.)"""
    polls = 0

    class Counting(OutboxRelay):
        async def run_once(self) -> int:
            nonlocal polls
            polls += 1
            return await super().run_once()

    engine = make_engine(db_url, pool_size=2)
    relay = Counting(engine, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix, idle_sleep_s=0.01)
    assert relay.idle_max_s == 0.1
    maker = make_sessionmaker(engine)
    try:
        relay.start()
        await eventually(lambda: relay.leader, timeout_s=10)
        await asyncio.sleep(0.5)  # into the quiet spell
        polls = 0
        await asyncio.sleep(2.0)
        assert 0 < polls <= 30, polls  # about one poll per 0.1 s (a fixed 0.01 s pause: about 200)
        async with maker() as session, session.begin():
            await enqueue(session, SCHEMA, [OutboxMessage(TOPIC, "KR-1", {"id": str(uuid.uuid4())})])
        await eventually(lambda: relay.published == 1, timeout_s=10)
    finally:
        await relay.stop()
        await engine.dispose()
