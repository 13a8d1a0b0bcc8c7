"""EPCIS part (issue 5): capture throughput of EPCIS 2.0 documents of 1,000 ObjectEvents each.

Every event is a legal battery event: an INCIDENT (our `incident_reporting` bizStep) posted by the inspector,
legal in every non-final state and needing no custody, about one of the registered bench batteries named by
its `https://batterytrace.kr/battery/{id}` URI. Each document goes through the whole capture path: the EPCIS
JSON Schema, the mapping, the lifecycle rules and ledger, the EPCIS event rows and both outbox topics.

Wiring (bench/cli.py, owned elsewhere): add "epcis" to PARTS and `await epcis.run(ctx)` in `run()`."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from bench.context import Ctx, battery_id
from bench.load import Req, client, closed_loop, console

DOCUMENT_EVENTS = 1_000
TARGET = 5_000  # events/s
BT = "https://batterytrace.kr/voc/"


def document(ctx: Ctx, first: int, n: int) -> dict[str, Any]:
    events = [
        {
            "type": "ObjectEvent",
            "eventID": f"urn:uuid:{uuid.uuid4()}",
            "action": "OBSERVE",
            "bizStep": BT + "bizstep/incident_reporting",
            "epcList": [f"https://batterytrace.kr/battery/{battery_id((first + k) % n)}"],
            "eventTime": ctx.occurred_at,
            "eventTimeZoneOffset": "+09:00",
            "bizLocation": {"id": "urn:epc:id:sgln:8801234.00001.0"},
            "bt:region": "KR-41",
            "bt:incidentKind": "swelling",
            "bt:severity": "low",
        }
        for k in range(DOCUMENT_EVENTS)
    ]
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"bt": BT}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": ctx.occurred_at,
        "epcisBody": {"eventList": events},
    }


async def run(ctx: Ctx) -> None:
    cfg = ctx.cfg
    n = cfg.batteries
    total = max(DOCUMENT_EVENTS, (cfg.batch_events // 2) // DOCUMENT_EVENTS * DOCUMENT_EVENTS)
    headers = ctx.inspector | {"content-type": "application/ld+json"}
    with console.status(f"building {total // DOCUMENT_EVENTS:,} EPCIS documents of {DOCUMENT_EVENTS:,} events…"):
        reqs = [
            Req("POST", "/epcis/capture", headers, orjson.dumps(document(ctx, start, n)), weight=DOCUMENT_EVENTS)
            for start in range(0, total, DOCUMENT_EVENTS)
        ]
    failed: list[str] = []

    def check(_: int, r: Any) -> None:
        job = r.json()
        if not job.get("success"):
            failed.append(str(job.get("errors", [])[:1]))

    async with client(ctx.url("events"), cfg.batch_concurrency, timeout_s=300) as http:
        async with ctx.phase("epcis capture") as ph:
            run_ = await closed_loop(
                http, reqs, cfg.batch_concurrency, description="epcis: capture", ok=202, on_ok=check
            )
            ph.update(run_.summary())
    if run_.errors or failed:
        ctx.report.notes.append(
            f"epcis capture: {run_.errors} failed requests, {len(failed)} failed jobs; "
            f"first: {run_.first_error or (failed[0] if failed else '')}"
        )
    ctx.report.add(
        "epcis",
        "EPCIS capture (documents of 1,000 ObjectEvents)",
        run_.rate,
        "events/s",
        TARGET,
        ">=",
        f"{run_.units:,} events in {run_.elapsed:.1f} s, {cfg.batch_concurrency} documents in flight; "
        f"document p50 {run_.pct(50) * 1000:.0f} ms",
    )
