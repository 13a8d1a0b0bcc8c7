"""The single-event capture without a transaction (services.events.lifecycle.service.capture_one): its write
happens only on the state row version its decision read, orders against the poster's event-ID locks as batch
captures do, and a race it loses writes nothing and is tried again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from services.events.lifecycle import repository as repo
from services.events.lifecycle import service
from shared.db import asyncpg_dsn
from tests.events_helpers import ORGS, Stack, stack


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def _count(conn: asyncpg.Connection, battery_id: str) -> tuple[int, int]:
    ledger = await conn.fetchval("SELECT count(*) FROM events.ledger WHERE battery_id = $1", battery_id)
    outbox = await conn.fetchval("SELECT count(*) FROM events.outbox WHERE key = $1", battery_id)
    return ledger, outbox


async def _decided(conn: asyncpg.Connection, battery_id: str) -> tuple[dict[str, Any], str, dict[str, Any], Any]:
    """What capture_one decides for an INCIDENT on the battery: (the state after it, the version read, the ledger
    row, the message)."""
    from datetime import UTC, datetime

    from services.events.lifecycle import machine

    found, version, prior = await repo.read_one(conn, battery_id, ORGS["inspector"], str(uuid.uuid4()))
    assert found is not None and version is not None and prior is None
    state = machine.BatteryState.from_row(found)
    event = machine.Event(
        type=machine.EventType.INCIDENT,
        event_id=str(uuid.uuid4()),
        battery_id=battery_id,
        occurred_at=datetime.now(UTC),
        data={"kind": "swelling", "severity": "low"},
        request_digest="d",
    )
    poster = machine.Poster(ORGS["inspector"], machine.Role.inspector)
    step = machine.apply(state, poster, event, recorded_at=datetime.now(UTC))
    assert isinstance(step, machine.Transition)
    row = step.row.as_row()
    return step.state.as_row(), version, row, service.lifecycle_message(row, step.state.kind, step.state.manufacturer)


async def test_a_write_on_a_moved_state_writes_nothing(s: Stack, db_url: str) -> None:
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")  # the ledger has begun (read-through)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        state, version, row, message = await _decided(conn, bid)
        await s.ok(bid, "INCIDENT", "inspector")  # another writer moves the state meanwhile
        before = await _count(conn, bid)
        assert not await repo.append_one(conn, row, state, message, version=version)
        assert await _count(conn, bid) == before
    finally:
        await conn.close()


async def test_a_write_after_the_facts_were_completed_writes_nothing(s: Stack, db_url: str) -> None:
    """Completing the registry facts (the registration arriving after a read-through) changes no sequence, but a
    decision made on the old facts must not be stored over them."""
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        found, version, row, message = await _decided(conn, bid)
        await conn.execute("UPDATE events.battery_state SET facts = '{\"complete\": true}' WHERE battery_id = $1", bid)
        assert not await repo.append_one(conn, row, found, message, version=version)
        facts = await conn.fetchval("SELECT facts FROM events.battery_state WHERE battery_id = $1", bid)
        assert "complete" in facts
    finally:
        await conn.close()


async def test_the_event_id_lock_is_taken_before_the_state_row_lock(s: Stack, db_url: str) -> None:
    """A batch capture takes the poster's event-ID locks, then the state rows: the single write must wait for the
    ID lock without holding the row meanwhile (else the two could deadlock)."""
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    holder = await asyncpg.connect(asyncpg_dsn(db_url))
    writer = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        found, version, row, message = await _decided(writer, bid)
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))", row["actor"], row["event_id"]
        )
        write = asyncio.create_task(repo.append_one(writer, row, found, message, version=version))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the ID lock...
        locked = await holder.fetchval(
            "SELECT battery_id FROM events.battery_state WHERE battery_id = $1 FOR UPDATE NOWAIT", bid
        )
        assert locked == bid  # ...without holding the state row
        await tx.rollback()
        assert await asyncio.wait_for(write, 10)
    finally:
        await holder.close()
        await writer.close()


async def test_concurrent_singles_on_one_battery_all_land_on_one_chain(s: Stack) -> None:
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    results = await asyncio.gather(*[s.post(bid, "INCIDENT", "inspector") for _ in range(8)])
    assert [r.status_code for r in results] == [201] * 8, [r.text for r in results]
    assert sorted(r.json()["sequence"] for r in results) == list(range(3, 11))
    v = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()
    assert v["valid"] and v["events"] == 10


async def test_a_single_and_a_batch_of_one_id_agree(s: Stack) -> None:
    """The same event ID posted alone and in a batch at once: stored once, never a 500."""
    for _ in range(3):
        a, b = await s.battery(), await s.battery()
        eid = str(uuid.uuid4())
        single = s.post(a, "INCIDENT", "inspector", event_id=eid)
        batch = s.events.post(
            "/v1/events/batch",
            json={"events": [s.body(b, "INCIDENT", event_id=eid)]},
            headers=s.as_role("inspector"),
        )
        results = await asyncio.gather(single, batch)
        codes = sorted(r.status_code for r in results)
        assert 500 not in codes and codes.count(201) == 1, [r.text for r in results]


async def test_json_is_stored_as_objects(s: Stack, db_url: str) -> None:
    """The statement pool encodes JSON itself: what it writes is stored as objects, not as JSON text in a string."""
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        kinds = await conn.fetch(
            "SELECT jsonb_typeof(data) AS data, jsonb_typeof(location) AS location FROM events.ledger "
            "WHERE battery_id = $1 AND type = 'INCIDENT'",
            bid,
        )
        assert [dict(k) for k in kinds] == [{"data": "object", "location": "object"}]
        facts = await conn.fetchval("SELECT jsonb_typeof(facts) FROM events.battery_state WHERE battery_id = $1", bid)
        assert facts == "object"
        payloads = await conn.fetch("SELECT json_typeof(payload) AS t FROM events.outbox WHERE key = $1", bid)
        assert {p["t"] for p in payloads} == {"object"}
    finally:
        await conn.close()


async def test_a_retry_answers_the_original(s: Stack) -> None:
    bid = await s.battery()
    body = s.body(bid, "INCIDENT")
    first = await s.events.post("/v1/events", json=body, headers=s.as_role("inspector"))
    again = await s.events.post("/v1/events", json=body, headers=s.as_role("inspector"))
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await s.events.post(
        "/v1/events", json=body | {"data": {"kind": "fire", "severity": "high"}}, headers=s.as_role("inspector")
    )
    assert other.status_code == 409 and other.json()["code"] == "event-id-conflict"
