"""Events service: batches, the hash chain and its tamper evidence, and delivery to Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from devtools.embedded import EmbeddedKafka, free_port
from shared.contract.streams import TOPIC_LIFECYCLE
from shared.db import asyncpg_dsn
from tests.conftest import eventually, read_topic
from tests.events_helpers import DATA, ORGS, Stack, stack


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


def ev(battery_id: str, etype: str, data=None, **kw):
    return {
        "event_id": str(uuid.uuid4()),
        "battery_id": battery_id,
        "type": etype,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": DATA.get(etype, {}) if data is None else data,
        **kw,
    }


async def test_batch_applies_several_events_per_battery_in_order(s: Stack) -> None:
    a, b = await s.battery(), await s.battery()
    events = []
    for bid in (a, b):
        events += [ev(bid, "TRANSFERRED", {"to": "HMC"}), ev(bid, "INCIDENT")]
    r = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("manufacturer"))
    assert r.status_code == 201, r.text
    results = r.json()["results"]
    assert [(x["battery_id"], x["sequence"]) for x in results] == [(a, 2), (a, 3), (b, 2), (b, 3)]
    assert all(x["custodian"] == "HMC" for x in results)


async def test_batch_is_all_or_nothing_and_lists_failures_by_index(s: Stack) -> None:
    a, b = await s.battery(), await s.battery()
    events = [ev(a, "INCIDENT"), ev(b, "GRADED"), ev(a, "INCIDENT"), ev(b, "INCIDENT")]
    r = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("inspector"))
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "batch-rejected"
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "forbidden")]
    events[1] = ev(b, "REMOVED")  # illegal from manufactured
    r = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("oem"))
    assert r.status_code == 409
    errors = r.json()["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, "illegal-transition"), (3, "depends-on-failed-item")]
    assert (await s.state(a))["sequence"] == 1 and (await s.state(b))["sequence"] == 1


async def test_batch_schema_errors_name_the_index(s: Stack) -> None:
    a = await s.battery()
    events = [ev(a, "INCIDENT"), ev(a, "INCIDENT", {"kind": "fire", "severity": "apocalyptic"})]
    r = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("inspector"))
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["index"] == 1 and err["errors"][0]["field"] == "data.severity"
    r = await s.events.post(
        "/v1/events/batch", json={"events": [ev(a, "INCIDENT"), {"battery_id": a}]}, headers=s.as_role("inspector")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1


async def test_batch_retry_is_idempotent(s: Stack) -> None:
    a = await s.battery()
    events = [ev(a, "INCIDENT"), ev(a, "INCIDENT")]
    first = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("inspector"))
    again = await s.events.post("/v1/events/batch", json={"events": events}, headers=s.as_role("inspector"))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert (await s.state(a))["sequence"] == 3


async def test_batch_size_limit(s: Stack) -> None:
    a = await s.battery()
    r = await s.events.post(
        "/v1/events/batch", json={"events": [ev(a, "INCIDENT")] * 5001}, headers=s.as_role("inspector")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "too_long"


async def test_verify_detects_a_tampered_row(s: Stack, db_url: str) -> None:
    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    await s.ok(bid, "INCIDENT", "inspector", data={"kind": "leak", "severity": "low"})
    assert (await s.events.get(f"/v1/batteries/{bid}/verify")).json()["valid"] is True
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute("UPDATE events.ledger SET actor = 'EVIL' WHERE battery_id = $1", bid)
        # A superuser bypassing the append-only trigger, as an attacker with database access would.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE events.ledger SET data = jsonb_set(data, '{severity}', '\"critical\"') "
            "WHERE battery_id = $1 AND sequence = 3",
            bid,
        )
    finally:
        await conn.close()
    v = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()
    assert v["valid"] is False and v["broken_at_sequence"] == 3 and "hash" in v["reason"]


async def test_hash_chain_links_each_event_to_the_previous(s: Stack) -> None:
    from shared.contract.lifecycle import GENESIS, event_hash

    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    items = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("oem"))).json()["items"]
    prev = GENESIS
    for e in items:
        assert e["prev_hash"] == prev
        assert event_hash(prev, e) == e["hash"]  # anyone can recompute it from the public timeline
        prev = e["hash"]


async def test_timeline_pagination(s: Stack) -> None:
    bid = await s.battery()
    for _ in range(5):
        await s.ok(bid, "INCIDENT", "inspector")
    seqs, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await s.events.get(f"/v1/batteries/{bid}/events", params=params, headers=s.as_role("manufacturer"))
        ).json()
        seqs += [e["sequence"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_ledger_reads_are_for_those_who_handled_the_battery(s: Stack) -> None:
    bid = await s.battery()
    path = f"/v1/batteries/{bid}/events"
    denied = await s.events.get(path, headers=s.as_role("recycler"))
    assert denied.status_code == 403 and denied.json()["code"] == "not-handled"
    assert (await s.events.get(f"/v1/batteries/{bid}/state", headers=s.as_role("oem"))).status_code == 403
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    assert (await s.events.get(path, headers=s.as_role("oem"))).status_code == 200  # now its custodian
    await s.ok(bid, "INCIDENT", "inspector")
    # Posting an event proves no relation (issue 12): the inspector still reads nothing.
    refused = await s.events.get(path, headers=s.as_role("inspector"))
    assert refused.status_code == 403 and refused.json()["code"] == "not-handled"
    # Certifiers read only the batteries they certified (tests/attacks/test_access.py).
    assert (await s.events.get(path, headers=s.as_role("certifier"))).status_code == 403
    for role in ("ministry", "operator"):
        assert (await s.events.get(path, headers=s.as_role(role))).status_code == 200


async def test_reads_need_a_token_but_verify_is_public(s: Stack) -> None:
    bid = await s.battery()
    assert (await s.events.get(f"/v1/batteries/{bid}/events")).status_code == 401
    assert (await s.events.get(f"/v1/batteries/{bid}/state")).status_code == 401
    assert (await s.events.get(f"/v1/batteries/{bid}/verify")).status_code == 200
    assert (await s.events.get("/v1/batteries/KR-NOPE/verify")).status_code == 404


@pytest.fixture
def own_broker():
    kafka = EmbeddedKafka(free_port())
    kafka.start()
    yield kafka
    kafka.stop()


async def test_delivery_survives_broker_outage_exactly_once_in_effect(
    make_settings, token, own_broker, topic_prefix
) -> None:
    """Broker down: events are still accepted and the outbox backlog grows. Broker back (empty, as the
    memory-only broker comes back): every event reaches battery.lifecycle.v1, and a consumer applying
    them idempotently by event ID ends with exactly one effect each, in sequence order per battery."""
    async with stack(make_settings, token, streams=True, kafka_bootstrap_servers=own_broker.bootstrap) as s:
        batteries = [await s.battery() for _ in range(3)]
        own_broker.stop()
        accepted = []
        for bid in batteries:
            for _ in range(4):
                accepted.append((await s.ok(bid, "INCIDENT", "inspector"))["event_id"])
        await asyncio.sleep(0.3)
        backlog = (await s.events.get("/v1/ops/outbox")).json()["backlog"]
        assert backlog >= len(accepted)
        own_broker.start()

        async def drained() -> bool:
            return (await s.events.get("/v1/ops/outbox")).json()["backlog"] == 0

        await eventually(drained, timeout_s=60)
    msgs = await read_topic(own_broker.bootstrap, topic_prefix + TOPIC_LIFECYCLE, at_least=len(accepted))
    applied: dict[str, dict] = {}
    for m in msgs:  # the idempotent consumer
        applied.setdefault(m["value"]["id"], m["value"])
    incidents = {eid for eid, v in applied.items() if v["data"]["type"] == "INCIDENT"}
    assert incidents == set(accepted)
    for bid in batteries:
        seqs = [m["value"]["data"]["sequence"] for m in msgs if m["key"] == bid]
        assert seqs == sorted(seqs), "one battery's events stay in order"
    sample = applied[accepted[0]]
    assert sample["type"] == "kr.battery.lifecycle.incident.v1" and sample["specversion"] == "1.0"
    assert sample["data"]["actor"] == "KOTSA" and sample["data"]["hash"]


async def test_periodic_verifier_raises_metric_and_log_for_a_tampered_row(s: Stack, db_url: str, caplog) -> None:
    from prometheus_client import REGISTRY

    bid, other = await s.battery(), await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    await s.ok(other, "INCIDENT", "inspector")
    verifier = s.events.app.state.ledger_verifier
    assert await verifier.sweep() == {}
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE events.ledger SET actor = 'SOMEONE' WHERE battery_id = $1 AND sequence = 2", bid)
    finally:
        await conn.close()
    with caplog.at_level("ERROR", logger="batterytrace.verifier"):
        broken = await verifier.sweep()
    assert list(broken) == [bid] and "sequence 2" in broken[bid]
    assert REGISTRY.get_sample_value("batterytrace_ledger_chain_broken_batteries", {"service": "events"}) == 1
    assert any(bid in r.getMessage() for r in caplog.records)
    assert "batterytrace_ledger_chain_broken_batteries" in (await s.events.get("/metrics")).text


async def test_verifier_sweeps_are_paced_to_their_event_rate(s: Stack, db_url: str) -> None:
    """A sweep re-hashes at most `rate_per_s` events per second, so it never takes whole cores from requests."""
    for _ in range(3):
        bid = await s.battery()
        await s.ok(bid, "INCIDENT", "inspector")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        events = await conn.fetchval("SELECT count(*) FROM events.ledger")
    finally:
        await conn.close()
    verifier = s.events.app.state.ledger_verifier
    verifier.rate_per_s = events / 0.5  # this ledger in no less than half a second
    started = time.monotonic()
    assert await verifier.sweep() == {}
    assert time.monotonic() - started >= 0.45


async def test_a_sweep_is_paced_to_go_through_the_ledger_once_per_period(s: Stack, db_url: str) -> None:
    """Paced by period, a sweep takes about the period whatever the ledger's size (here, with no floor and no cap,
    half a second for this ledger), from the planner's estimate of the ledger's rows."""
    for _ in range(3):
        bid = await s.battery()
        await s.ok(bid, "INCIDENT", "inspector")
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("ANALYZE events.ledger")
        estimate = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'events.ledger'::regclass")
        events = await conn.fetchval("SELECT count(*) FROM events.ledger")
    finally:
        await conn.close()
    assert estimate == events
    verifier = s.events.app.state.ledger_verifier
    verifier.rate_per_s, verifier.period_s, verifier.min_rate_per_s = None, 0.5, 0.0
    started = time.monotonic()
    assert await verifier.sweep() == {}
    assert time.monotonic() - started >= 0.45
    assert verifier.pace == pytest.approx(events / 0.5)


async def test_a_falsified_size_estimate_changes_the_sweep_s_speed_not_what_it_finds(s: Stack, db_url: str) -> None:
    """Who can write the catalogue can make the ledger look empty (the slowest pace, the floor) or huge (the cap):
    the sweep still goes through every battery and finds the rewritten row, at a pace within its bounds."""
    bid, other = await s.battery(), await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    await s.ok(other, "INCIDENT", "inspector")
    verifier = s.events.app.state.ledger_verifier
    verifier.rate_per_s, verifier.period_s, verifier.min_rate_per_s = 4_000.0, 3_600.0, 1_000.0
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE events.ledger SET actor = 'SOMEONE' WHERE battery_id = $1 AND sequence = 2", bid)
        for estimate, pace in ((0, 1_000.0), (10**12, 4_000.0)):
            await conn.execute("UPDATE pg_class SET reltuples = $1 WHERE oid = 'events.ledger'::regclass", estimate)
            broken = await verifier.sweep()
            assert list(broken) == [bid] and "sequence 2" in broken[bid], estimate
            assert verifier.pace == pace
    finally:
        await conn.execute("ANALYZE events.ledger")
        await conn.close()


async def test_verifier_sees_heads_and_chains_in_one_snapshot_while_events_arrive(
    s: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event committed between the verifier reading a chunk's heads and reading their chains is no tampering:
    both reads see one snapshot, so a busy ledger raises no alarm (it did: 'the ledger ends at 3 but the
    battery's head is at 2' during every long capture)."""
    from services.events.ledger import repository as ledger_repo

    bid = await s.battery()
    await s.ok(bid, "INCIDENT", "inspector")
    real_chains_of = ledger_repo.chains_of
    committed: list[str] = []

    async def chains_after_a_commit(conn, battery_ids):  # type: ignore[no-untyped-def]
        if not committed:  # the race, made certain: a real event commits between the two reads
            committed.append((await s.ok(bid, "INCIDENT", "inspector"))["event_id"])
        return await real_chains_of(conn, battery_ids)

    monkeypatch.setattr(ledger_repo, "chains_of", chains_after_a_commit)
    verifier = s.events.app.state.ledger_verifier
    assert await verifier.sweep() == {}
    assert committed, "the concurrent event was posted during the sweep"
    monkeypatch.setattr(ledger_repo, "chains_of", real_chains_of)
    assert await verifier.sweep() == {}, "and the next sweep sees the longer chain whole"


async def test_verifier_sweep_lets_requests_run_between_chains(s: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep shares the service's event loop: it hashes for at most its slice at a time and then yields, so
    a request never waits behind a whole chunk of chains (a chunk of 500 is a thousand events or more). With a
    zero slice another task runs between every two chains; with a slice longer than the sweep, none does."""
    from services.events.ledger import verifier as verifier_module

    for _ in range(4):
        await s.ok(await s.battery(), "INCIDENT", "inspector")
    order: list[str] = []
    real_verify_chain = verifier_module.verify_chain

    def recording(chain):  # type: ignore[no-untyped-def]
        order.append("chain")
        return real_verify_chain(chain)

    monkeypatch.setattr(verifier_module, "verify_chain", recording)
    verifier = s.events.app.state.ledger_verifier

    async def sweep_beside_a_ticker(slice_s: float) -> list[str]:
        order.clear()
        verifier.slice_s = slice_s
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                if order and order[-1] == "chain":
                    order.append("tick")
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            assert await verifier.sweep() == {}
        finally:
            done.set()
            await task
        return [x for x in order if x == "chain" or x == "tick"]

    interleaved = await sweep_beside_a_ticker(0.0)
    chains = interleaved.count("chain")
    assert chains >= 4
    between = "".join("c" if x == "chain" else "t" for x in interleaved).rstrip("t")
    assert "cc" not in between, f"another task ran between every two chains: {between}"
    whole = await sweep_beside_a_ticker(60.0)
    assert "chain,chain" in ",".join(whole), "with a long slice the chains of a chunk are hashed back to back"
