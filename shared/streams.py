"""Stream monitoring: topics, consumer groups and lag, as the broker reports them and as the application
measures them (producer outbox positions vs the positions each consumer applied)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.kafka import Kafka, cluster, make_sync_admin


def _broker_report(kafka: Kafka, prefix: str) -> dict[str, Any]:
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    admin = make_sync_admin(kafka, client_id="batterytrace-ops")
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(prefix) and not t.startswith("__"))
        topics: list[dict[str, Any]] = []
        ends: dict[Any, int] = {}
        if names:
            described = admin.describe_topics(names)
            tps = [TopicPartition(d["name"], p["partition_index"]) for d in described for p in d.get("partitions", [])]
            if tps:
                offsets = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
                ends = {tp: o.offset for tp, o in offsets.items()}
            for d in described:
                parts = sorted(p["partition_index"] for p in d.get("partitions", []))
                end = {p: ends.get(TopicPartition(d["name"], p), 0) for p in parts}
                topics.append(
                    {"topic": d["name"], "partitions": len(parts), "end_offsets": end, "messages": sum(end.values())}
                )
        groups: list[dict[str, Any]] = []
        group_ids = sorted(g["group_id"] for g in admin.list_groups())
        if group_ids:
            committed = admin.list_group_offsets({g: None for g in group_ids})
            for gid in group_ids:
                parts = []
                for tp, om in sorted(committed.get(gid, {}).items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
                    if not tp.topic.startswith(prefix):
                        continue
                    end_offset = ends.get(tp, 0)
                    parts.append(
                        {
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "committed": om.offset,
                            "end": end_offset,
                            "lag": max(end_offset - om.offset, 0),
                        }
                    )
                if parts:
                    groups.append({"group": gid, "partitions": parts, "lag": sum(p["lag"] for p in parts)})
        return {"topics": topics, "groups": groups}
    finally:
        admin.close()


async def service_positions(client: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
    """A service's `/v1/ops/positions`, or its error with no positions (what `application_lag` reads)."""
    try:
        r = await client.get(f"{url}/v1/ops/positions", timeout=5)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body
    except httpx.HTTPError as exc:
        return {"service": name, "error": f"{exc.__class__.__name__}: {exc}", "published": [], "applied": []}


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


def application_lag(positions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each consumer group and topic: newest position written by the producer vs newest applied."""
    written: dict[str, dict[str, Any]] = {}
    for svc in positions:
        for p in svc.get("published", []):
            written[p["topic"]] = p | {"producer": svc.get("service")}
    rows = []
    for svc in positions:
        for a in svc.get("applied", []):
            w = written.get(a["topic"])
            if w is None:
                continue
            lag_events = max(int(w["written_position"]) - int(a["applied_position"]), 0)
            lag_s = 0.0
            wt, at = _parse(w.get("written_at")), _parse(a.get("applied_event_time"))
            if lag_events and wt and at:
                lag_s = max((wt - at).total_seconds(), 0.0)
            rows.append(
                {
                    "consumer": svc.get("service"),
                    "group": a["group"],
                    "topic": a["topic"],
                    "producer": w["producer"],
                    "written_position": w["written_position"],
                    "published_position": w["published_position"],
                    "applied_position": a["applied_position"],
                    "lag_events": lag_events,
                    "lag_seconds": round(lag_s, 3),
                }
            )
    return rows


async def stream_report(
    kafka: Kafka, prefix: str, services: Mapping[str, str], client: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """The whole picture: broker view (topics, groups, lag from offsets) and the application's own lag."""
    broker: dict[str, Any]
    try:
        broker = await asyncio.to_thread(_broker_report, kafka, prefix)
    except Exception as exc:
        broker = {"topics": [], "groups": [], "error": f"{exc.__class__.__name__}: {exc}"}
    async with client or httpx.AsyncClient() as http:
        positions = await asyncio.gather(*[service_positions(http, n, u) for n, u in services.items()])
    return {
        "at": datetime.now(UTC).isoformat(),
        "bootstrap": cluster(kafka).bootstrap,
        **broker,
        "application": application_lag(list(positions)),
        "services": [{"service": p.get("service"), "error": p.get("error")} for p in positions],
    }
