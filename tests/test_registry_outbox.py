"""Registry → battery.registry.v1 through the transactional outbox."""

from __future__ import annotations

import asyncio

from services.registry.app import create_app
from services.registry.settings import RegistrySettings
from shared.contract.streams import TOPIC_REGISTRY
from tests.conftest import eventually, read_topic, serve
from tests.factories import create_models, register


async def test_registration_is_published_once_as_cloudevent(registry, token, infra, topic_prefix) -> None:
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    await register(registry, maker, battery_id="KR-OUT-1")
    msgs = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC_REGISTRY, at_least=2, settle_s=1.0)
    batteries = [m for m in msgs if m["value"]["type"] == "kr.battery.registry.battery.registered.v1"]
    assert len(batteries) == 1
    event = batteries[0]
    assert event["key"] == "KR-OUT-1"
    ce = event["value"]
    assert ce["specversion"] == "1.0" and ce["source"] == "/batterytrace/registry" and ce["subject"] == "KR-OUT-1"
    assert ce["data"]["manufacturer"] == "LGES" and ce["data"]["model"]["rated_energy_kwh"] == 77.4
    models = [m for m in msgs if m["value"]["type"] == "kr.battery.registry.model.registered.v1"]
    assert len(models) == 1 and models[0]["key"] == "NCM-PACK-77"


async def test_outbox_survives_broker_outage(make_settings, token, own_broker, topic_prefix) -> None:
    """The broker is stopped while batteries are registered: the writes succeed, the backlog grows, and
    once the broker is back every registration is published exactly once."""
    settings = make_settings(RegistrySettings, kafka_bootstrap_servers=own_broker.bootstrap)
    async with serve(create_app(settings)) as client:
        maker = token("LGES", "manufacturer")
        await create_models(client, maker, "NCM-PACK-77")
        await eventually(lambda: _backlog_is(client, 0))
        own_broker.stop()
        ids = [f"KR-OUTAGE-{i}" for i in range(20)]
        for bid in ids:
            await register(client, maker, battery_id=bid)
        await asyncio.sleep(0.5)
        assert (await client.get("/v1/ops/outbox")).json()["backlog"] == 20
        own_broker.start()
        await eventually(lambda: _backlog_is(client, 0), timeout_s=40)
    msgs = await read_topic(own_broker.bootstrap, topic_prefix + TOPIC_REGISTRY, at_least=20, settle_s=1.0)
    published = sorted(m["key"] for m in msgs if m["value"]["type"].endswith("battery.registered.v1"))
    assert published == sorted(ids)


async def _backlog_is(client, n: int) -> bool:
    return (await client.get("/v1/ops/outbox")).json()["backlog"] == n
