"""Events part (issue 3): batch capture, single-event capture, the raw COPY reference, outbox drain; with
`--ledger-events`, the ledger grown to that size between the two captures (issue 16: flat with size).

Only legal events: a first pass over the batteries hands custody from the manufacturer to the OEM
(TRANSFERRED, posted by the manufacturer), later passes are INCIDENTs by an inspector (legal in every
non-final state, no custody needed). Every event has the same occurred_at, which never precedes the
battery's last event."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from bench.context import FRESHNESS_LIMIT_S, OEM, PROBE_IDS, Ctx, battery_id
from bench.load import Req, Run, client, closed_loop, console, wait_until
from shared.streams import application_lag, service_positions

INCIDENT = {"kind": "swelling", "severity": "low"}
#: The growth phase's batches start at other batteries than the log part's runs (salts 1, 2, ...) do.
GROW_SALT = 1_000
LOCATION = {"site": "bench", "region": "KR-41"}


def event(ctx: Ctx, bid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "battery_id": bid,
        "type": etype,
        "occurred_at": ctx.occurred_at,
        "location": LOCATION,
        "data": data,
    }


async def run(ctx: Ctx) -> None:
    cfg = ctx.cfg
    n = cfg.batteries
    lo = await ctx.count("SELECT coalesce(max(id), 0) FROM events.outbox")
    event_ids: list[str] = []

    # 1. Batch capture.
    with console.status(f"building {cfg.batch_events:,} events in batches of {cfg.batch_size:,}…"):
        reqs = []
        for b, start in enumerate(range(0, cfg.batch_events, cfg.batch_size)):
            count = min(cfg.batch_size, cfg.batch_events - start)
            first = (b * cfg.batch_size) % n
            transfer = start + count <= n  # the first pass over the batteries
            evs = [
                event(
                    ctx,
                    battery_id((first + k) % n),
                    *(("TRANSFERRED", {"to": OEM}) if transfer else ("INCIDENT", INCIDENT)),
                )
                for k in range(count)
            ]
            event_ids += [e["event_id"] for e in evs]
            reqs.append(
                Req(
                    "POST",
                    "/v1/events/batch",
                    ctx.manufacturer if transfer else ctx.inspector,
                    orjson.dumps({"events": evs}),
                    weight=count,
                )
            )
    async with (
        client(ctx.url("events"), cfg.batch_concurrency, timeout_s=300) as http,
        freshness(ctx, "batch") as sampling,
    ):
        async with ctx.phase("events batch") as ph:
            batch = await closed_loop(http, reqs, cfg.batch_concurrency, description="events: batch capture", ok=201)
            ph.update(batch.summary())
        sampling.set()  # no new probe events: the backlog must be the load's own
        drain_batch = await drain(ctx, http)
    del reqs
    if batch.errors:
        ctx.report.notes.append(f"events batch: {batch.errors} failed requests; first: {batch.first_error}")
    ctx.report.add(
        "events",
        "batch capture",
        batch.rate,
        "events/s",
        10_000,
        ">=",
        f"{batch.units:,} in {batch.elapsed:.1f} s, {cfg.batch_size:,}/request, "
        f"{cfg.batch_concurrency} in flight; request p50 {batch.pct(50) * 1000:.0f} ms",
    )
    ctx.report.add("events", "outbox drained after batch load", drain_batch, "s", 2, "<=")

    # 2. The same rows by raw COPY (rolled back).
    copy_rate = await copy_reference(ctx, event_ids, lo)
    ctx.report.add(
        "events",
        "raw COPY of the same rows",
        copy_rate,
        "events/s",
        note="events.ledger + events.outbox, 1,000-row COPYs, one transaction, rolled back",
    )
    ctx.report.add("events", "batch capture ÷ COPY", batch.rate / copy_rate if copy_rate else None, "x", 0.3, ">=")

    # 3. With --ledger-events: the ledger grown to that size first, so the figures from here on are measured at it.
    await grow(ctx)

    # 4. Single events from many clients.
    step = 7919  # spread over the batteries
    with console.status(f"building {cfg.single_events:,} single events…"):
        reqs = [
            Req(
                "POST",
                "/v1/events",
                ctx.inspector,
                orjson.dumps(event(ctx, battery_id((i * step) % n), "INCIDENT", INCIDENT)),
            )
            for i in range(cfg.single_events)
        ]
    async with client(ctx.url("events"), cfg.single_concurrency) as http:
        for r in reqs[:50]:  # warm-up, not timed
            await http.post(r.url, content=r.content, headers=r.headers)
        async with freshness(ctx, "single") as sampling:
            async with ctx.phase("events single") as ph:
                single = await closed_loop(
                    http, reqs[50:], cfg.single_concurrency, description="events: single POSTs", ok=201
                )
                ph.update(single.summary())
            sampling.set()
            drain_single = await drain(ctx, http)
    if single.errors:
        ctx.report.notes.append(f"events single: {single.errors} failed; first: {single.first_error}")
    ctx.report.add(
        "events",
        "single-event capture",
        single.rate,
        "events/s",
        1_000,
        ">=",
        f"{cfg.single_concurrency} clients, {single.units:,} events",
    )
    ctx.report.add("events", "single-event p50", single.pct(50) * 1000, "ms")
    ctx.report.add("events", "single-event p95", single.pct(95) * 1000, "ms")
    ctx.report.add("events", "single-event p99", single.pct(99) * 1000, "ms", 50, "<=")
    ctx.report.add("events", "outbox drained after single load", drain_single, "s", 2, "<=")


def batch_requests(ctx: Ctx, events: int, salt: int) -> list[Req]:
    cfg, n = ctx.cfg, ctx.cfg.batteries
    reqs = []
    for b, start in enumerate(range(0, events, cfg.batch_size)):
        count = min(cfg.batch_size, events - start)
        first = (salt * 7919 + b * cfg.batch_size) % n
        evs = [event(ctx, battery_id((first + k) % n), "INCIDENT", INCIDENT) for k in range(count)]
        reqs.append(Req("POST", "/v1/events/batch", ctx.inspector, orjson.dumps({"events": evs}), weight=count))
    return reqs


async def queue_empty(ctx: Ctx) -> bool:
    return await ctx.count("SELECT count(*) FROM events.log_pending") == 0


async def quiet(ctx: Ctx, before: str = "timing proofs") -> float | None:
    """Wait, before the next timed phase, until the pipeline behind the capture runs is idle
    (bench/registry.catch_up does the same before the other latency figures): the log's queue empty, the events
    outbox drained, the portal holding every ledger event. Seconds waited, or None on timeout."""
    started = time.perf_counter()
    poll = 3.0

    async def idle() -> bool:
        ctx.check_alive()
        if not await queue_empty(ctx):
            return False
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(ctx.url("events") + "/v1/ops/outbox")
            if r.status_code != 200 or r.json()["backlog"] != 0:
                return False
            if not ctx.portal_up:
                return True
            # How far the portal's consumers applied the events service's streams (outbox positions): a cheap
            # look, so that the exact counts below (seconds of CPU each at 10 M events, taken from the portal
            # catching up) run only once it shows no lag.
            positions = [await service_positions(http, name, ctx.url(name)) for name in ("events", "portal")]
        if any(row["lag_events"] for row in application_lag(positions) if row["consumer"] == "portal"):
            return False
        return await ctx.count("SELECT count(*) FROM portal.events") >= await ctx.count(
            "SELECT count(*) FROM events.ledger"
        )

    with console.status(f"waiting for the pipeline to catch up before {before}…"):
        done = await wait_until(idle, timeout_s=ctx.cfg.catchup_timeout_s, interval_s=poll)
    return None if done is None else time.perf_counter() - started


async def grow(ctx: Ctx) -> None:
    """Issue 16, item 2 (flat with size): the ledger grown to `ledger_events` with INCIDENTs in 1,000-event
    batches before the single-event phase, so that it and every later latency figure (freshness, history, views,
    EPCIS, proofs) is measured at that size. The requests are built a chunk at a time, so the load generator's
    memory stays flat. A phase of its own (rate and CPU reported, held to no target); then the pipeline is left
    to catch up (the log, the outbox, the portal), so the next phase meets no backlog of it."""
    cfg = ctx.cfg
    have = await ctx.count("SELECT count(*) FROM events.ledger")
    missing = cfg.ledger_events - have
    if missing <= 0:
        if cfg.ledger_events:
            ctx.report.notes.append(f"--ledger-events {cfg.ledger_events:,}: the ledger held {have:,} events already")
        return
    chunk = 200 * cfg.batch_size
    total = Run()
    async with client(ctx.url("events"), cfg.batch_concurrency, timeout_s=300) as http:
        async with ctx.phase("events batch, growing the ledger") as ph:
            for salt, start in enumerate(range(0, missing, chunk), start=GROW_SALT):
                reqs = batch_requests(ctx, min(chunk, missing - start), salt=salt)
                run = await closed_loop(
                    http,
                    reqs,
                    cfg.batch_concurrency,
                    description=f"events: growing the ledger, {have + start:,} of {cfg.ledger_events:,}",
                    ok=201,
                )
                total.add(run)
            ph.update(total.summary())
    if total.errors:
        ctx.report.notes.append(f"growing the ledger: {total.errors} failed requests; first: {total.first_error}")
    waited = await quiet(ctx, "the single-event phase")
    grown = await ctx.count("SELECT count(*) FROM events.ledger")
    caught_up = "not within the catch-up timeout" if waited is None else f"{waited:.0f} s after the last batch"
    ctx.report.add(
        "events",
        "batch capture while growing the ledger",
        total.rate,
        "events/s",
        note=f"{total.units:,} INCIDENTs in {total.elapsed:.0f} s, from {have:,} to {grown:,} ledger events; "
        f"the pipeline caught up {caught_up}",
    )
    ctx.report.add("events", "ledger events after growing", grown, "events", cfg.ledger_events, ">=")


async def drain(ctx: Ctx, http: httpx.AsyncClient) -> float | None:
    """Seconds from the end of the load until the events outbox backlog is zero."""
    url = ctx.url("events") + "/v1/ops/outbox"

    async def empty() -> bool:
        r = await http.get(url)
        return r.status_code == 200 and r.json()["backlog"] == 0

    return await wait_until(empty, timeout_s=120, interval_s=0.02)


async def copy_reference(ctx: Ctx, event_ids: list[str], outbox_after: int) -> float | None:
    """Events/s writing the batch load's own ledger and outbox rows with COPY (new keys, rolled back)."""
    conn = await ctx.db()
    with console.status("events: reading the captured rows back for the COPY reference…"):
        ledger = await conn.fetch(
            "SELECT battery_id, sequence, event_id, type, occurred_at, recorded_at, actor, actor_role, "
            "location::text, data::text, state_after, custodian_after, prev_hash, hash, request_digest "
            "FROM events.ledger WHERE event_id = ANY($1::uuid[])",
            event_ids,
        )
        outbox = await conn.fetch(
            "SELECT topic, key, payload::text FROM events.outbox WHERE id > $1 AND payload->>'id' = ANY($2::text[]) "
            "ORDER BY id",
            outbox_after,
            event_ids,
        )
    if not ledger:
        return None
    ledger_cols = [
        "battery_id",
        "sequence",
        "event_id",
        "type",
        "occurred_at",
        "recorded_at",
        "actor",
        "actor_role",
        "location",
        "data",
        "state_after",
        "custodian_after",
        "prev_hash",
        "hash",
        "request_digest",
    ]
    # Fresh keys so the rows do not collide with the ones they copy.
    ledger_rows = [("Z" + r[0][1:], r[1], uuid.uuid4(), *tuple(r)[3:]) for r in ledger]
    outbox_rows = [tuple(r) for r in outbox]
    chunk = ctx.cfg.batch_size
    tr = conn.transaction()
    await tr.start()
    try:
        started = time.perf_counter()
        for i in range(0, len(ledger_rows), chunk):
            await conn.copy_records_to_table(
                "ledger", schema_name="events", columns=ledger_cols, records=ledger_rows[i : i + chunk]
            )
            await conn.copy_records_to_table(
                "outbox", schema_name="events", columns=["topic", "key", "payload"], records=outbox_rows[i : i + chunk]
            )
        elapsed = time.perf_counter() - started
    finally:
        await tr.rollback()
    return len(ledger_rows) / elapsed


@contextlib.asynccontextmanager
async def freshness(
    ctx: Ctx, load: str, interval_s: float = 0.1, max_in_flight: int = 4
) -> AsyncIterator[asyncio.Event]:
    """While the load runs: every `interval_s` one INCIDENT on a probe battery; time from its 201 at the
    events service until the portal's history of that battery lists it. Set the yielded event to stop
    probing; on exit the probes in flight finish."""
    stop = asyncio.Event()
    if not ctx.portal_up:
        yield stop
        return
    in_flight: set[asyncio.Task[None]] = set()
    history_headers = ctx.ministry("MOLIT")
    async with client(ctx.url("events"), max_in_flight) as ev, client(ctx.url("portal"), max_in_flight) as portal:

        async def sample(i: int) -> None:
            bid = PROBE_IDS[i % len(PROBE_IDS)]
            body = event(ctx, bid, "INCIDENT", INCIDENT)
            r = await ev.post("/v1/events", content=orjson.dumps(body), headers=ctx.inspector)
            if r.status_code != 201:
                return
            accepted = time.perf_counter()
            needle = body["event_id"].encode()
            while time.perf_counter() - accepted < FRESHNESS_LIMIT_S:
                h = await portal.get(f"/v1/batteries/{bid}/history", headers=history_headers)
                if h.status_code == 200 and needle in h.content:
                    ctx.freshness_by.setdefault(load, []).append(time.perf_counter() - accepted)
                    return
                await asyncio.sleep(0.05)
            ctx.freshness_timeouts += 1
            ctx.freshness_by.setdefault(load, []).append(FRESHNESS_LIMIT_S)

        async def sampler() -> None:
            i = 0
            while not stop.is_set():
                if len(in_flight) < max_in_flight:
                    t = asyncio.create_task(sample(i))
                    in_flight.add(t)
                    t.add_done_callback(in_flight.discard)
                    i += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)

        task = asyncio.create_task(sampler())
        try:
            yield stop
        finally:
            stop.set()
            await task
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
