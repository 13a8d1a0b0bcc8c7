"""Registry part (issue 2): bulk registration throughput, then GET /v1/batteries/{id} latency at N."""

from __future__ import annotations

import asyncio
import random
import time

import orjson

from bench.context import HISTORY_ID, INSPECTOR, MANUFACTURER, MODEL_ID, OEM, PROBE_IDS, Ctx, battery_id
from bench.load import Req, client, closed_loop, console, progress, wait_until

MODEL = {
    "id": MODEL_ID,
    "kind": "pack",
    "chemistry": "NCM",
    "rated_capacity_ah": 222,
    "nominal_voltage_v": 350,
    "rated_energy_kwh": 77.4,
    "mass_kg": 477,
}


def battery(bid: str, n: int) -> dict[str, object]:
    return {
        "id": bid,
        "model_id": MODEL_ID,
        "serial_number": f"SN{n:09d}",
        "manufactured_at": "2026-01-15T09:00:00+09:00",
        "manufacturing_site": "Ochang, KR",
        "materials_kg": {"lithium": 8.0, "nickel": 40.0, "cobalt": 5.0, "manganese": 4.5, "graphite": 50.0},
        "recycled_content_pct": {"lithium": 6, "nickel": 4, "cobalt": 16, "lead": 0},
        "carbon_footprint_kg_co2e_per_kwh": 61.5,
    }


#: The participants the bench speaks for (the services admit only registered, active participants).
PARTICIPANTS = [
    {"id": MANUFACTURER, "name": MANUFACTURER, "role": "manufacturer"},
    {"id": INSPECTOR, "name": INSPECTOR, "role": "inspector"},
    {"id": OEM, "name": OEM, "role": "oem"},
    *({"id": m, "name": m, "role": "ministry", "ministry": m} for m in ("MOTIE", "MOLIT", "MCEE", "KATS")),
]


async def register_participants(ctx: Ctx) -> None:
    """Register the bench's participants with the bootstrap admin, and wait until the events service and the
    portal learnt them from the stream."""
    admin = ctx.headers("BT-ADMIN", "admin")
    async with client(ctx.url("registry"), 1) as http:
        for body in PARTICIPANTS:
            r = await http.post("/v1/participants", content=orjson.dumps(body), headers=admin)
            if r.status_code not in (201, 409):
                raise RuntimeError(f"POST /v1/participants: {r.status_code} {r.text}")
    checks = []
    if "events" in ctx.stack.urls:
        checks.append(("events", f"/v1/batteries/{HISTORY_ID}/state", ctx.manufacturer))
    if "portal" in ctx.stack.urls:
        checks.append(("portal", "/v1/views/molit", ctx.ministry("MOLIT")))
    for service, path, headers in checks:
        async with client(ctx.url(service), 1) as http:
            for _ in range(600):
                if (await http.get(path, headers=headers)).status_code != 401:
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{service} did not admit the bench's participants within 60 s")


async def setup(ctx: Ctx) -> None:
    """The participants, the battery model and the batteries outside the bulk load (freshness probes, history
    battery)."""
    await register_participants(ctx)
    async with client(ctx.url("registry"), 1) as http:
        r = await http.post("/v1/models", content=orjson.dumps(MODEL), headers=ctx.manufacturer)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"POST /v1/models: {r.status_code} {r.text}")
        extra = [*PROBE_IDS, HISTORY_ID]
        body = orjson.dumps({"batteries": [battery(b, 900_000_000 + i) for i, b in enumerate(extra)]})
        r = await http.post("/v1/batteries/bulk", content=body, headers=ctx.manufacturer)
        if r.status_code != 201:
            raise RuntimeError(f"registering the probe batteries: {r.status_code} {r.text}")
    ctx.registered = len(extra)


async def bulk_register(ctx: Ctx) -> float:
    """Registers cfg.batteries with bulk requests; returns when the load started (perf_counter)."""
    cfg = ctx.cfg
    size = min(cfg.bulk_size, cfg.batteries)
    with console.status(f"building {cfg.batteries:,} battery bodies…"):
        reqs = []
        for start in range(0, cfg.batteries, size):
            items = [battery(battery_id(i), i) for i in range(start, min(start + size, cfg.batteries))]
            reqs.append(
                Req(
                    "POST",
                    "/v1/batteries/bulk",
                    ctx.manufacturer,
                    orjson.dumps({"batteries": items}),
                    weight=len(items),
                )
            )
    started = time.perf_counter()
    async with client(ctx.url("registry"), cfg.bulk_concurrency, timeout_s=300) as http:
        async with ctx.phase("registry bulk") as ph:
            run = await closed_loop(http, reqs, cfg.bulk_concurrency, description="registry: bulk registration", ok=201)
            ph.update(run.summary())
            # Publishing a registration is part of its cost: the phase's CPU runs until the relay has sent every
            # one (it lags the requests by a batch or more); the rate stays the requests' own.
            lag = await wait_until(lambda: _outbox_drained(ctx), timeout_s=cfg.catchup_timeout_s, interval_s=0.5)
    drained = "not drained in time" if lag is None else f"outbox drained {lag:.1f} s after the last request"
    ctx.registered += run.units
    if run.errors:
        ctx.report.notes.append(f"bulk registration: {run.errors} failed requests; first: {run.first_error}")
    ctx.report.add(
        "registry",
        "bulk registration",
        run.rate,
        "batteries/s",
        20_000,
        ">=",
        f"{run.units:,} in {run.elapsed:.1f} s, {size:,}/request, {cfg.bulk_concurrency} in flight; {drained}",
    )
    ctx.report.add(
        "registry", "bulk request latency p50", run.pct(50) * 1000, "ms", note=f"p99 {run.pct(99) * 1000:.0f} ms"
    )
    return started


async def _outbox_drained(ctx: Ctx) -> bool:
    ctx.check_alive()
    return await ctx.count("SELECT count(*) FROM registry.outbox WHERE sent_at IS NULL") == 0


async def catch_up(ctx: Ctx, bulk_started: float) -> None:
    """Wait until the pipeline behind the registrations is idle: the events service started every ledger
    (battery.registry.v1 → events.battery_state), both outboxes are drained, and the portal has applied
    every registration and every MANUFACTURED event. Reports how fast each stage caught up."""
    total = ctx.registered
    poll = 0.5 if total < 100_000 else 3.0  # counting millions of rows is work too: do not crowd the stages
    bulk_ended = time.perf_counter()
    services = ctx.stack.urls
    stages: list[tuple[str, str, str]] = []
    if "events" in services:
        stages.append(("events", "ledgers started (registry consumer)", "SELECT count(*) FROM events.battery_state"))
    if ctx.portal_up:
        stages.append(("portal", "registrations in read model", "SELECT count(*) FROM portal.batteries"))
    # A phase of its own: the CPU each process spends after the last request (the events service starting the
    # ledgers, the portal projecting, the relays), per registered battery; with --profile, where it goes.
    async with ctx.phase("registry catch-up") as ph:
        ph["units"] = total
        await _stages(ctx, stages, total, poll, bulk_started, bulk_ended)
        if ctx.portal_up:
            await _portal_events(ctx, total, poll, bulk_started, bulk_ended)
    # A quiet system for the latency figures: relays idle.
    async with client(services["registry"], 1) as http:
        for name, url in services.items():
            if name == "portal":
                continue

            async def drained(url: str = url) -> bool:
                r = await http.get(url + "/v1/ops/outbox")
                return r.status_code == 200 and r.json()["backlog"] == 0

            await wait_until(drained, timeout_s=ctx.cfg.catchup_timeout_s, interval_s=0.2)


async def get_latency(ctx: Ctx) -> None:
    cfg = ctx.cfg
    rnd = random.Random(cfg.seed)
    n = cfg.batteries
    reqs = [
        Req("GET", f"/v1/batteries/{battery_id(rnd.randrange(n))}", ctx.manufacturer) for _ in range(cfg.get_requests)
    ]
    async with client(ctx.url("registry"), cfg.get_concurrency) as http:
        for r in reqs[: min(200, len(reqs))]:  # warm the connections and the code paths
            await http.get(r.url, headers=r.headers)
        async with ctx.phase("registry GET") as ph:
            run = await closed_loop(http, reqs, cfg.get_concurrency, description="registry: GET /v1/batteries/{id}")
            ph.update(run.summary())
    if run.errors:
        ctx.report.notes.append(f"registry GET: {run.errors} errors; first: {run.first_error}")
    at = f"{cfg.get_concurrency} clients, random of {ctx.registered:,}, with a token"
    ctx.report.add("registry", "GET battery p50", run.pct(50) * 1000, "ms", note=at)
    ctx.report.add("registry", "GET battery p95", run.pct(95) * 1000, "ms")
    ctx.report.add("registry", "GET battery p99", run.pct(99) * 1000, "ms", 5, "<=")
    ctx.report.add("registry", "GET battery throughput", run.requests_per_s, "req/s")


async def _stages(
    ctx: Ctx, stages: list[tuple[str, str, str]], total: int, poll: float, bulk_started: float, bulk_ended: float
) -> None:
    for part, what, sql in stages:
        with progress() as prog:
            task = prog.add_task(f"{part}: {what}", total=total)

            async def done(sql: str = sql, task: object = task, prog: object = prog) -> bool:
                ctx.check_alive()
                n = await ctx.count(sql)
                prog.update(task, completed=n)  # type: ignore[attr-defined]
                return n >= total

            took = await wait_until(done, timeout_s=ctx.cfg.catchup_timeout_s, interval_s=poll)
        now = time.perf_counter()
        if took is None:
            ctx.report.add(part, f"catch-up: {what}", None, "/s", note=f"not done within {ctx.cfg.catchup_timeout_s} s")
            continue
        ctx.report.add(
            part,
            f"catch-up: {what}",
            total / (now - bulk_started),
            "batteries/s",
            note=f"{total:,} done {now - bulk_ended:.1f} s after the bulk load ended",
        )


async def _portal_events(ctx: Ctx, total: int, poll: float, bulk_started: float, bulk_ended: float) -> None:
    with console.status("portal: waiting for every ledger event in the read model…"):

        async def portal_events() -> bool:
            ctx.check_alive()
            return await ctx.count("SELECT count(*) FROM portal.events") >= await ctx.count(
                "SELECT count(*) FROM events.ledger"
            )

        took = await wait_until(portal_events, timeout_s=ctx.cfg.catchup_timeout_s, interval_s=poll)
    now = time.perf_counter()
    ctx.report.add(
        "portal",
        "catch-up: MANUFACTURED events in read model",
        None if took is None else total / (now - bulk_started),
        "events/s",
        note=f"done {now - bulk_ended:.1f} s after the bulk load ended" if took is not None else "not done in time",
    )
