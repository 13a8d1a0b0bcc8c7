"""Portal part (issue 4): history latency for a 50-event battery, each ministry view, and freshness
(sampled by the events part while its load runs)."""

from __future__ import annotations

import time
import uuid

import orjson

from bench.context import FRESHNESS_LIMIT_S, HISTORY_ID, Ctx
from bench.events import INCIDENT, LOCATION
from bench.load import Req, client, closed_loop, console, percentile, wait_until

VIEWS = ("motie", "molit", "mcee", "kats")


async def run(ctx: Ctx) -> None:
    cfg = ctx.cfg
    read_models = await ctx.count("SELECT count(*) FROM portal.events")
    at_scale = f"{read_models:,} events in the read models"
    samples = [v for values in ctx.freshness_by.values() for v in values]
    if samples:
        ctx.report.add(
            "portal",
            "freshness p50",
            percentile(samples, 50),
            "s",
            note=f"{len(samples)} samples during the events load",
        )
        ctx.report.add(
            "portal",
            "freshness p99",
            percentile(samples, 99),
            "s",
            1,
            "<=",
            f"{ctx.freshness_timeouts} not visible within {FRESHNESS_LIMIT_S:.0f} s" if ctx.freshness_timeouts else "",
        )
        for load, values in ctx.freshness_by.items():
            ctx.report.add(
                "portal",
                f"freshness p99 during the {load} load",
                percentile(values, 99),
                "s",
                note=f"p50 {percentile(values, 50):.2f} s, {len(values)} samples",
            )
    else:
        ctx.report.add("portal", "freshness p99", None, "s", 1, "<=", "n/a: the events part did not run")

    # A battery with 50 events: MANUFACTURED + 49 INCIDENTs, in one batch.
    async with client(ctx.url("events"), 1) as http:
        evs = [
            {
                "event_id": str(uuid.uuid4()),
                "battery_id": HISTORY_ID,
                "type": "INCIDENT",
                "occurred_at": ctx.occurred_at,
                "location": LOCATION,
                "data": INCIDENT,
            }
            for _ in range(49)
        ]
        r = await http.post("/v1/events/batch", content=orjson.dumps({"events": evs}), headers=ctx.inspector)
        if r.status_code != 201:
            raise RuntimeError(f"history battery events: {r.status_code} {r.text[:500]}")
    headers = ctx.ministry("MOLIT")
    path = f"/v1/batteries/{HISTORY_ID}/history"
    async with client(ctx.url("portal"), cfg.history_concurrency) as http:

        async def fifty() -> bool:
            h = await http.get(path, headers=headers)
            return h.status_code == 200 and len(h.json().get("timeline", [])) >= 50

        with console.status("portal: waiting for the 50-event history…"):
            took = await wait_until(fifty, timeout_s=ctx.cfg.catchup_timeout_s, interval_s=0.1)
        if took is None:
            ctx.report.add("portal", "history p99", None, "ms", 10, "<=", "the 50 events never showed up")
        else:
            reqs = [Req("GET", path, headers)] * cfg.history_requests
            for _ in range(100):
                await http.get(path, headers=headers)
            async with ctx.phase("portal history") as ph:
                run_ = await closed_loop(http, reqs, cfg.history_concurrency, description="portal: history")
                ph.update(run_.summary())
            if run_.errors:
                ctx.report.notes.append(f"portal history: {run_.errors} errors; first: {run_.first_error}")
            ctx.report.add(
                "portal",
                "history p50",
                run_.pct(50) * 1000,
                "ms",
                note=f"50 events, {cfg.history_concurrency} clients, {at_scale}",
            )
            ctx.report.add("portal", "history p95", run_.pct(95) * 1000, "ms")
            ctx.report.add("portal", "history p99", run_.pct(99) * 1000, "ms", 10, "<=")
            ctx.report.add("portal", "history throughput", run_.requests_per_s, "req/s")

        for view in VIEWS:
            url = f"/v1/views/{view}"
            vh = ctx.ministry(view.upper())
            first = await http.get(url, headers=vh)
            if first.status_code in (404, 405):
                ctx.report.add("portal", f"view {view} p99", None, "ms", 100, "<=", "n/a: endpoint missing")
                continue
            if first.status_code != 200:
                ctx.report.add(
                    "portal",
                    f"view {view} p99",
                    None,
                    "ms",
                    100,
                    "<=",
                    f"answered {first.status_code}: {first.text[:120]}",
                )
                continue
            lat = []
            for _ in range(cfg.view_repeats):
                t0 = time.perf_counter()
                r = await http.get(url, headers=vh)
                lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code}")
            ctx.report.add(
                "portal",
                f"view {view} p99",
                percentile(lat, 99) * 1000,
                "ms",
                100,
                "<=",
                f"one client, {cfg.view_repeats} requests, p50 {percentile(lat, 50) * 1000:.1f} ms",
            )
