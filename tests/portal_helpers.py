"""Test helpers for the portal: a stand-in for the events service that publishes lifecycle CloudEvents on
`battery.lifecycle.v1` exactly as the events service does (same envelope, sequence numbers and a real
hash chain), and small waits on the portal's read models. The events service replaces `Lifecycle` later."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.portal.settings import PortalSettings

# The chain and the registration ID come from the services themselves: one definition of the contract.
from shared.contract.lifecycle import GENESIS, event_hash, ts
from shared.contract.streams import TOPIC_LIFECYCLE, TOPIC_REGISTRY, manufactured_event_id
from shared.kafka import ensure_topics, make_producer
from tests.conftest import eventually, serve

#: type -> state after (None: unchanged)
STATE_AFTER: dict[str, str | None] = {
    "MANUFACTURED": "manufactured",
    "ASSEMBLED": "assembled",
    "DISASSEMBLED": "removed",
    "INSTALLED": "in_service",
    "INSPECTED": None,
    "REMOVED": "removed",
    "COLLECTED": "collected",
    "GRADED": "graded",
    "REMANUFACTURED": "remanufactured",
    "REPURPOSED": "repurposed",
    "SAFETY_INSPECTED": None,
    "RECYCLED": "recycled",
    "DISPOSED": "disposed",
    "TRANSFERRED": None,
    "INCIDENT": None,
}
TAKES_CUSTODY = {"MANUFACTURED", "REMOVED", "COLLECTED"}


def at(text: str) -> datetime:
    """'2026-03-02' or '2026-03-02T10:00' in Korean time."""
    if "T" not in text:
        text += "T10:00"
    return datetime.fromisoformat(text + ":00+09:00")


@dataclass
class _Head:
    sequence: int = 0
    hash: str = GENESIS
    state: str = ""
    custodian: str = ""
    kind: str = "pack"
    manufacturer: str = ""


@dataclass
class Lifecycle:
    """Builds lifecycle envelopes battery by battery; `publish` sends them keyed by battery ID."""

    bootstrap: str
    topic: str
    heads: dict[str, _Head] = field(default_factory=dict)

    def manufactured(self, battery_id: str, manufacturer: str, when: datetime, kind: str = "pack") -> dict[str, Any]:
        self.heads[battery_id] = _Head(kind=kind, manufacturer=manufacturer)
        return self.event(
            battery_id,
            "MANUFACTURED",
            manufacturer,
            "manufacturer",
            when,
            event_id=manufactured_event_id(battery_id),
        )

    def event(
        self,
        battery_id: str,
        type_: str,
        actor: str,
        actor_role: str,
        when: datetime,
        data: dict[str, Any] | None = None,
        *,
        region: str | None = None,
        site: str | None = None,
        event_id: str | None = None,
        state: str | None = None,
        corrected: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """`corrected`: for an ERROR_DECLARED, the (state, custodian) the events service's fold leaves."""
        head = self.heads[battery_id]
        data = data or {}
        custodian = head.custodian
        if type_ in TAKES_CUSTODY:
            custodian = actor
        elif type_ == "TRANSFERRED":
            custodian = data["to"]
        state = state or STATE_AFTER.get(type_) or head.state  # `state`: where the type's usual one differs
        if corrected is not None:
            state, custodian = corrected
        location = {k: v for k, v in {"site": site, "region": region}.items() if v}
        body: dict[str, Any] = {
            "event_id": event_id or str(uuid.uuid4()),
            "battery_id": battery_id,
            "sequence": head.sequence + 1,
            "type": type_,
            "occurred_at": ts(when),
            "recorded_at": ts(datetime.now(UTC)),
            "actor": actor,
            "actor_role": actor_role,
            "location": location,
            "data": data,
            "state_after": state,
            "custodian_after": custodian,
            "prev_hash": head.hash,
        }
        body["hash"] = event_hash(head.hash, body)
        body["kind"] = head.kind
        body["manufacturer"] = head.manufacturer
        head.sequence, head.hash, head.state, head.custodian = body["sequence"], body["hash"], state, custodian
        return {
            "specversion": "1.0",
            "id": body["event_id"],
            "source": "/batterytrace/events",
            "type": f"kr.battery.lifecycle.{type_.lower()}.v1",
            "subject": battery_id,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": body,
        }

    async def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        await publish_raw(self.bootstrap, self.topic, [(e["subject"], orjson.dumps(e)) for e in envelopes])


async def publish_raw(bootstrap: str, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
    await ensure_topics(bootstrap, [topic], 2)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key.encode()) for key, value in messages]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def read_raw(bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Raw records (key, value bytes and headers) of a topic from the start, in offset order per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        parts: set[int] | None = None
        while not parts and loop.time() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.2)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(out) < at_least and loop.time() < deadline:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend({"key": r.key, "value": r.value, "headers": dict(r.headers)} for r in recs)
        return out
    finally:
        await consumer.stop()


def portal_settings(make_settings: Callable[..., Any], **overrides: Any) -> PortalSettings:
    return make_settings(PortalSettings, consumer_group=f"portal-{uuid.uuid4().hex[:8]}", **overrides)


@asynccontextmanager
async def portal_app(settings: PortalSettings) -> AsyncIterator[httpx.AsyncClient]:
    from services.portal.app import create_app

    async with serve(create_app(settings)) as client:
        yield client


async def wait_sequence(portal: httpx.AsyncClient, headers: dict[str, str], battery_id: str, sequence: int) -> Any:
    """Wait until the portal has applied the battery's events up to `sequence`."""

    async def check() -> Any:
        r = await portal.get(f"/v1/batteries/{battery_id}/history", headers=headers)
        if r.status_code == 200 and r.json()["current"]["sequence"] >= sequence:
            return r.json()
        return None

    return await eventually(check, timeout_s=30)


async def wait_registered(portal: httpx.AsyncClient, headers: dict[str, str], battery_id: str) -> Any:
    async def check() -> Any:
        r = await portal.get(f"/v1/batteries/{battery_id}/history", headers=headers)
        return r.json() if r.status_code == 200 and r.json()["registry"] else None

    return await eventually(check, timeout_s=30)


def topics(prefix: str) -> tuple[str, str]:
    return prefix + TOPIC_REGISTRY, prefix + TOPIC_LIFECYCLE


@asynccontextmanager
async def registry_and_portal(
    make_settings: Callable[..., Any], token: Callable[..., dict[str, str]]
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, str]]]:
    """A registry and a portal in process, LGES registered as a manufacturer: (registry, portal, LGES's token)."""
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        body = {"id": "LGES", "name": "LG Energy Solution", "role": "manufacturer"}
        r = await registry.post("/v1/participants", json=body, headers=token("ops", "admin"))
        assert r.status_code == 201, r.text
        yield registry, portal, token("LGES", "manufacturer")
