"""The portal's consumer: idempotent replays, restarts that resume, out-of-order delivery, poison messages."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from services.portal.ingest.projection import Battery, TimelineEvent, fold
from shared.kafka import dlq_topic
from tests.conftest import RegistrySettings, eventually, read_topic, serve
from tests.factories import create_models, register
from tests.portal_helpers import (
    Lifecycle,
    at,
    portal_app,
    portal_settings,
    publish_raw,
    read_raw,
    topics,
    wait_registered,
    wait_sequence,
)
from tests.test_portal_views import scenario

EXPECTED_SEQUENCES = {"P1": 5, "P2": 7, "P3": 3, "P4": 9, "B1": 1}


async def snapshot(portal: httpx.AsyncClient) -> dict[str, Any]:
    """Every read-model row that a replay could disturb (apply times aside)."""
    out: dict[str, Any] = {}
    async with portal.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        for table, order in (
            ("flow_stats", "metric, month, region, k1, k2, k3"),
            ("current_counts", "state, region, manufacturer, chemistry, kind, status, safety, grade"),
            ("events", "battery_id, sequence"),
            ("handlers", "org, battery_id"),
            ("aliases", "value"),
            ("participants", "id"),
            ("battery_models", "id"),
            ("batteries", "id"),
        ):
            rows = (await conn.execute(text(f"SELECT * FROM portal.{table} ORDER BY {order}"))).mappings().all()
            out[table] = [{k: v for k, v in r.items() if k not in ("applied_at", "last_applied_at")} for r in rows]
        out["applied"] = (await conn.execute(text("SELECT count(*) FROM portal.applied_events"))).scalar()
    return out


async def _register_all(registry: httpx.AsyncClient, token) -> None:
    await create_models(registry, token("LGES", "manufacturer"), "NCM-PACK-77")
    await create_models(registry, token("SDI", "manufacturer"), "LFP-PACK-60")
    for b in ("P1", "P2", "P3", "P4"):
        await register(registry, token("LGES", "manufacturer"), battery_id=b, model_id="NCM-PACK-77")
    await register(
        registry,
        token("SDI", "manufacturer"),
        battery_id="B1",
        model_id="LFP-PACK-60",
        manufactured_at="2026-02-10T09:00:00+09:00",
    )


async def _wait_all(portal: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for bid, seq in EXPECTED_SEQUENCES.items():
        await wait_sequence(portal, admin, bid, seq)
        await wait_registered(portal, admin, bid)


@pytest.fixture
async def registry(make_settings):
    from services.registry.app import create_app

    async with serve(create_app(make_settings(RegistrySettings))) as client:
        yield client


async def test_replaying_the_same_messages_changes_nothing(registry, make_settings, token, infra, topic_prefix) -> None:
    registry_topic, lifecycle_topic = topics(topic_prefix)
    life = Lifecycle(infra.kafka.bootstrap, lifecycle_topic)
    envelopes = scenario(life)
    async with portal_app(portal_settings(make_settings)) as portal:
        await _register_all(registry, token)
        await life.publish(envelopes)
        await _wait_all(portal, token("ops", "admin"))
        before = await snapshot(portal)
        views = {
            v: (await portal.get(f"/v1/views/{v}", headers=token("ops", "admin"))).json()
            for v in ("motie", "molit", "mcee", "kats")
        }
        # the whole of both streams once more, in one go
        registry_msgs = await read_topic(infra.kafka.bootstrap, registry_topic, at_least=7)
        consumer = portal.app.state.consumers["portal"]  # type: ignore[attr-defined]
        seen = consumer.applied
        await publish_raw(
            infra.kafka.bootstrap, registry_topic, [(m["key"], orjson.dumps(m["value"])) for m in registry_msgs]
        )
        await life.publish(envelopes)
        replayed = len(registry_msgs) + len(envelopes)
        await eventually(lambda: consumer.applied >= seen + replayed, timeout_s=30)
        assert await snapshot(portal) == before
        for v, figures in views.items():
            assert (await portal.get(f"/v1/views/{v}", headers=token("ops", "admin"))).json() == figures
        assert consumer.dead_lettered == 0


async def test_a_repeated_lifecycle_event_beside_a_new_one_counts_the_new_one_once(
    registry, make_settings, token, infra, topic_prefix
) -> None:
    """Lifecycle events are deduplicated by the timeline's key (battery, sequence), not claimed one by one
    (services/portal/ingest/service.py): a batch holding a battery's new event, that event again, and events of
    it and of another battery the portal already applied adds the new event once and changes nothing else."""
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    envelopes = scenario(life)
    last = envelopes[-1]
    bid = last["data"]["battery_id"]
    earlier = [e for e in envelopes[:-1] if e["data"]["battery_id"] == bid][-1]
    other = next(e for e in envelopes if e["data"]["battery_id"] != bid and e["data"]["sequence"] > 1)
    admin = token("ops", "admin")
    async with portal_app(portal_settings(make_settings)) as portal:
        await _register_all(registry, token)
        await life.publish(envelopes[:-1])
        await wait_sequence(portal, admin, bid, last["data"]["sequence"] - 1)
        await _wait_all_but(portal, admin, bid)
        consumer = portal.app.state.consumers["portal"]  # type: ignore[attr-defined]
        seen = consumer.applied
        await life.publish([earlier, last, last, other])
        await eventually(lambda: consumer.applied >= seen + 3, timeout_s=30)  # the two copies of `last` are one
        await _wait_all(portal, admin)
        snap = await snapshot(portal)
        assert len(snap["events"]) == len(envelopes)
        assert sum(r["n"] for r in snap["current_counts"]) == 5
        removed = sum(r["n"] for r in snap["flow_stats"] if r["metric"] == "removed")
        collected = sum(r["n"] for r in snap["flow_stats"] if r["metric"] == "collected")
        assert (removed, collected) == (3, 2)
        # and everything once more changes nothing
        seen = consumer.applied
        await life.publish(envelopes)
        await eventually(lambda: consumer.applied >= seen + len(envelopes), timeout_s=30)
        assert await snapshot(portal) == snap
        assert consumer.dead_lettered == 0


async def _wait_all_but(portal: httpx.AsyncClient, admin: dict[str, str], but: str) -> None:
    for b, seq in EXPECTED_SEQUENCES.items():
        if b != but:
            await wait_sequence(portal, admin, b, seq)
            await wait_registered(portal, admin, b)


async def test_consumer_restart_resumes_without_loss_or_duplicates(
    registry, make_settings, token, infra, topic_prefix
) -> None:
    settings = portal_settings(make_settings)
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    envelopes = scenario(life)
    half = len(envelopes) // 2
    admin = token("ops", "admin")
    async with portal_app(settings) as portal:
        await _register_all(registry, token)
        await life.publish(envelopes[:half])
        for e in envelopes[:half]:
            await wait_sequence(portal, admin, e["data"]["battery_id"], e["data"]["sequence"])
        for bid in EXPECTED_SEQUENCES:
            await wait_registered(portal, admin, bid)
    # down: the rest arrives while no portal runs
    await life.publish(envelopes[half:])
    async with portal_app(settings) as portal:  # same group, same database
        await _wait_all(portal, admin)
        snap = await snapshot(portal)
        consumer = portal.app.state.consumers["portal"]  # type: ignore[attr-defined]
        # it resumed from the committed offsets: only what arrived while it was down was read again
        assert consumer.applied == len(envelopes) - half
    assert len(snap["events"]) == len(envelopes)
    assert sum(r["n"] for r in snap["current_counts"]) == 5
    removed = sum(r["n"] for r in snap["flow_stats"] if r["metric"] == "removed")
    collected = sum(r["n"] for r in snap["flow_stats"] if r["metric"] == "collected")
    assert (removed, collected) == (3, 2)


async def test_out_of_order_delivery_keeps_the_highest_sequence(make_settings, token, infra, topic_prefix) -> None:
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    e1 = life.manufactured("X1", "LGES", at("2026-01-15"))
    e2 = life.event("X1", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": "KMHEM41AP6A000009"}, region="KR-31")
    e3 = life.event("X1", "REMOVED", "DISM-1", "dismantler", at("2026-03-01"), {"reason": "recall"}, region="KR-41")
    admin = token("ops", "admin")
    async with portal_app(portal_settings(make_settings)) as portal:
        await life.publish([e1, e3])
        h = await wait_sequence(portal, admin, "X1", 3)
        assert h["chain"]["status"] == "incomplete" and h["chain"]["broken_at_sequence"] == 2
        await life.publish([e2])  # the retry of sequence 2 arrives late
        await eventually(lambda: _events(portal, admin, "X1", 3))
        h = (await portal.get("/v1/batteries/X1/history", headers=admin)).json()
        assert [e["sequence"] for e in h["timeline"]] == [1, 2, 3]
        assert (h["current"]["state"], h["current"]["custodian"], h["current"]["region"]) == (
            "removed",
            "DISM-1",
            "KR-41",
        )
        assert h["chain"]["status"] == "valid"
        molit = (await portal.get("/v1/views/molit", headers=admin)).json()
        assert molit["in_service_now"]["batteries"] == 0
        assert molit["removals"]["by_reason"] == {"recall": 1}
        assert molit["installations"][0]["batteries"] == 1


async def _events(portal: httpx.AsyncClient, headers: dict[str, str], bid: str, n: int) -> bool:
    r = await portal.get(f"/v1/batteries/{bid}/history", headers=headers)
    return r.status_code == 200 and len(r.json()["timeline"]) == n


async def test_poison_messages_go_to_the_dead_letter_topic(make_settings, token, infra, topic_prefix) -> None:
    lifecycle_topic = topics(topic_prefix)[1]
    life = Lifecycle(infra.kafka.bootstrap, lifecycle_topic)
    good = life.manufactured("Y1", "LGES", at("2026-01-15"))
    bad_data = life.event("Y1", "GRADED", "A", "assessor", at("2026-02-01"), {"soh_pct": 250, "grade": "maybe"})
    life.heads["Y1"].sequence -= 1  # the bad event never happened: the next one takes its sequence
    life.heads["Y1"].hash = good["data"]["hash"]
    after = life.event("Y1", "TRANSFERRED", "LGES", "manufacturer", at("2026-02-02"), {"to": "HMC"})
    admin = token("ops", "admin")
    async with portal_app(portal_settings(make_settings)) as portal:
        await publish_raw(
            infra.kafka.bootstrap,
            lifecycle_topic,
            [
                ("Y1", orjson.dumps(good)),
                ("Y1", b"{not json"),
                ("Y1", orjson.dumps(bad_data)),
                ("Y1", orjson.dumps(after)),
            ],
        )
        h = await wait_sequence(portal, admin, "Y1", 2)
        assert [e["type"] for e in h["timeline"]] == ["MANUFACTURED", "TRANSFERRED"]
        assert h["current"]["custodian"] == "HMC"
        dead = await read_raw(infra.kafka.bootstrap, dlq_topic(lifecycle_topic), at_least=2)
        assert [m["value"] for m in dead] == [b"{not json", orjson.dumps(bad_data)]
        assert all(m["headers"]["dlq.source"].startswith(lifecycle_topic.encode()) for m in dead)
        assert b"soh_pct" in dead[1]["headers"]["dlq.error"]
        ops = (await portal.get("/v1/ops/consumer")).json()
        assert ops["running"] and ops["dead_lettered"] == 2 and ops["applied"] == 2
        assert (await portal.get("/v1/ops/outbox")).status_code == 404  # the portal publishes nothing: no outbox


async def test_contract_tolerance_extra_fields_applied_future_types_skipped(
    make_settings, token, infra, topic_prefix
) -> None:
    """The contract's tolerant-reader rule (shared.contract.streams.UNKNOWN_TYPE_RULE): a record with fields
    the portal does not know is applied; a record of a type newer than the portal is skipped, not dead-lettered."""
    lifecycle_topic = topics(topic_prefix)[1]
    life = Lifecycle(infra.kafka.bootstrap, lifecycle_topic)
    first = life.manufactured("Z1", "LGES", at("2026-01-15"))
    first["data"]["future_field"] = {"nested": [1, 2]}  # a producer of a later release adds a field
    first["future_attribute"] = "x"  # and a CloudEvent extension attribute
    future_type = {
        **first,
        "id": str(uuid.uuid4()),
        "type": "kr.battery.lifecycle.recall_notified.v1",
        "data": {**first["data"], "type": "RECALL_NOTIFIED", "sequence": 2},
    }
    future_version = {**first, "id": str(uuid.uuid4()), "type": "kr.battery.lifecycle.transferred.v2"}
    unknown_family = {**first, "id": str(uuid.uuid4()), "type": "kr.battery.telemetry.sample.v1"}
    after = life.event("Z1", "TRANSFERRED", "LGES", "manufacturer", at("2026-02-02"), {"to": "HMC"})
    admin = token("ops", "admin")
    async with portal_app(portal_settings(make_settings)) as portal:
        await life.publish([first, future_type, future_version, unknown_family, after])
        h = await wait_sequence(portal, admin, "Z1", 2)
        assert [e["type"] for e in h["timeline"]] == ["MANUFACTURED", "TRANSFERRED"]
        assert h["current"]["custodian"] == "HMC"
        ops = (await portal.get("/v1/ops/consumer")).json()
        assert ops["dead_lettered"] == 0  # skipped by rule, not dead-lettered


async def test_the_head_kept_event_by_event_is_the_fold_of_the_stored_timeline(
    registry, make_settings, token, infra, topic_prefix
) -> None:
    """Events that only continue a battery's timeline are folded on from its stored head, without reading the
    timeline (services/portal/ingest/projection.py `extend`): each event arrives in a batch of its own here, and
    the heads kept are what a refold of every stored event gives."""
    life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
    envelopes = scenario(life)
    admin = token("ops", "admin")
    async with portal_app(portal_settings(make_settings)) as portal:
        await _register_all(registry, token)
        for bid in EXPECTED_SEQUENCES:
            await wait_registered(portal, admin, bid)
        for e in envelopes:
            await life.publish([e])
            await wait_sequence(portal, admin, e["data"]["battery_id"], e["data"]["sequence"])
        async with portal.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
            batteries = (await conn.execute(text("SELECT * FROM portal.batteries"))).mappings().all()
            stored = (await conn.execute(text("SELECT * FROM portal.events ORDER BY sequence"))).mappings().all()
    assert len(stored) == len(envelopes)
    for row in batteries:
        timeline = [TimelineEvent.of(e) for e in stored if e["battery_id"] == row["id"]]
        assert Battery.of(row).head == fold(timeline), row["id"]
