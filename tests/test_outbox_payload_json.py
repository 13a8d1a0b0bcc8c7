"""The outbox payload is `json` (migration outbox_payload_json): stored as the text its writer gave, published as
exactly those bytes, a JSON null as a tombstone; and the migration moves queued rows both ways, grants kept."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic import command

from shared.db import asyncpg_dsn, make_engine, make_sessionmaker
from shared.migrate import alembic_config
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, payload_text
from tests.events_helpers import Stack, stack

BEFORE, AFTER = "7c1f0e2d9a4b", "1766f017f594"
TOPIC = "outbox.json.test.v1"
#: Keys neither sorted nor in jsonb's order (shortest first), non-ASCII text, a float orjson writes with an exponent.
PAYLOAD = {"type": "x", "zeta": 1, "a": [1, 2.5, None], "mid": "é ☃", "tiny": 1e-7, "nested": {"b": True, "a": {}}}


async def raw_records(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list[tuple[str, Any]]:
    """(key, value bytes or None) of the topic's first `count` records, in offset order per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not consumer.partitions_for_topic(topic) and loop.time() < deadline:
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(out) < count and loop.time() < deadline:
            for recs in (await consumer.getmany(timeout_ms=100)).values():
                out.extend((r.key.decode(), r.value) for r in recs)
    finally:
        await consumer.stop()
    return out


@pytest.mark.parametrize("schema", ["registry", "events"])
async def test_the_relay_publishes_the_bytes_enqueue_wrote_and_null_as_a_tombstone(
    db_url: str, infra: Any, topic_prefix: str, schema: str
) -> None:
    """Both write paths of `enqueue` (a few rows: INSERT; 50 or more: COPY) store `payload_text` as it is (compact,
    keys sorted at every level; not jsonb's spaced, shortest-key-first form); the record's value is those bytes; a
    payload of None is a record without a value."""
    few = [OutboxMessage(TOPIC, "k-few", PAYLOAD | {"n": 0}), OutboxMessage(TOPIC, "k-gone", None)]
    many = [OutboxMessage(TOPIC, f"k-{i % 7}", PAYLOAD | {"n": i}) for i in range(1, 61)]
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, schema, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await enqueue(session, schema, few)
        async with make_sessionmaker(engine)() as session, session.begin():
            await enqueue(session, schema, many)
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            stored = [r[0] for r in await conn.fetch(f"SELECT payload::text FROM {schema}.outbox ORDER BY id")]
        finally:
            await conn.close()
        wanted = [orjson.dumps(m.payload, option=orjson.OPT_SORT_KEYS) for m in few + many]
        assert wanted[0].startswith(b'{"a":[1,2.5,null],"mid":"\xc3\xa9 \xe2\x98\x83","n":0,"nested":{"a":{},"b":true}')
        assert [s.encode() for s in stored] == wanted
        while await relay.run_once():
            pass
    finally:
        await relay.stop()
        await engine.dispose()
    records = await raw_records(infra.kafka.bootstrap, topic_prefix + TOPIC, len(wanted))
    assert sorted(records, key=lambda r: (r[0], r[1] or b"")) == sorted(
        ((m.key, w if m.payload is not None else None) for m, w in zip(few + many, wanted, strict=True)),
        key=lambda r: (r[0], r[1] or b""),
    )


@pytest.fixture
async def s(make_settings: Any, token: Any) -> Any:
    async with stack(make_settings, token) as st:
        yield st


async def test_captured_events_are_queued_as_compact_sorted_json_objects(s: Stack, db_url: str) -> None:
    """The events service's own outbox statements (the batch capture's unnest, the single capture's scalar text
    cast, on the statement pool whose codec would encode a JSON parameter once more) store each payload as
    `payload_text` gives it: an object, compact, keys sorted (the request's `recovered_kg` order is not kept)."""
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    data = {"severity": "medium", "kind": "swelling", "description": "d"}  # neither sorted nor jsonb's order
    events = [s.body(bid, "INCIDENT", data=data) for _ in range(3)]
    r = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("inspector"))
    assert r.status_code == 201, r.text
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        rows = await conn.fetch(
            "SELECT payload::text AS text, json_typeof(payload) AS kind FROM events.outbox WHERE key = $1", bid
        )
    finally:
        await conn.close()
    assert len(rows) >= 4  # the ledger's start (MANUFACTURED), the single INCIDENT, the batch's three
    assert {r["kind"] for r in rows} == {"object"}
    for row in rows:
        assert payload_text(orjson.loads(row["text"])) == row["text"]
    batch = [r["text"] for r in rows if '"description":"d"' in r["text"]]
    assert len(batch) == 3 and all(
        '"data":{"description":"d","kind":"swelling","severity":"medium"}' in t for t in batch
    )


async def alembic(url: str, verb: str, revision: str) -> None:
    await asyncio.to_thread(getattr(command, verb), alembic_config(url), revision)


async def _payload_types(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT table_schema, data_type FROM information_schema.columns "
        "WHERE table_name = 'outbox' AND column_name = 'payload'"
    )
    return {r["table_schema"]: r["data_type"] for r in rows}


async def test_the_migration_keeps_queued_payloads_and_grants_both_ways(db_url: str) -> None:
    rights = (
        "SELECT has_table_privilege('bt_registry', 'registry.outbox', 'SELECT, INSERT, UPDATE, DELETE') "
        "AND has_table_privilege('bt_events', 'events.outbox', 'SELECT, INSERT, UPDATE, DELETE')"
    )
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        assert await _payload_types(conn) == {"registry": "json", "events": "json"}
        assert await conn.fetchval(rights)
        await alembic(db_url, "downgrade", BEFORE)
        assert await _payload_types(conn) == {"registry": "jsonb", "events": "jsonb"}
        for schema in ("registry", "events"):
            await conn.executemany(
                f"INSERT INTO {schema}.outbox (topic, key, payload) VALUES ($1, $2, $3::jsonb)",
                [(TOPIC, "k1", orjson.dumps(PAYLOAD).decode()), (TOPIC, "k2", "null")],
            )
        before = await conn.fetch("SELECT id, payload::text AS text FROM events.outbox ORDER BY id")

        await alembic(db_url, "upgrade", AFTER)
        assert await _payload_types(conn) == {"registry": "json", "events": "json"}
        for schema in ("registry", "events"):
            rows = await conn.fetch(f"SELECT key, payload::text AS text FROM {schema}.outbox ORDER BY id")
            assert [(r["key"], orjson.loads(r["text"])) for r in rows] == [("k1", PAYLOAD), ("k2", None)]
            assert rows[1]["text"] == "null"  # still the relay's tombstone
        # Queued rows keep the text jsonb gave them: published as they would have been before.
        assert [tuple(r) for r in await conn.fetch("SELECT id, payload::text FROM events.outbox ORDER BY id")] == [
            tuple(r) for r in before
        ]
        assert await conn.fetchval(rights)

        await alembic(db_url, "downgrade", BEFORE)
        assert await conn.fetchval("SELECT count(*) FROM registry.outbox WHERE payload = $1::jsonb", "null") == 1
        assert await conn.fetchval(rights)
        await alembic(db_url, "upgrade", "head")
        assert await _payload_types(conn) == {"registry": "json", "events": "json"}
    finally:
        await conn.close()
