"""Log part (issue: verifiable history, item 5): what the transparency log costs capture, and how fast an
inclusion proof answers in a large tree.

1. Capture with the log off and on, in this run: the same batch load (INCIDENTs in 1,000-event batches) with the log off and on.
   Off: the events service restarted with its log worker (sequencer and checkpointer) off, `LOG_ENABLED=false`,
   and the ledger's trigger that queues each event for the log disabled, so no part of the log runs. On: the
   service as deployed. The ledger rows written while it was off are then queued in ledger order, as the
   migration queued the rows that predate the log, so the log again holds every event before the next phase.
   The runs come in adjacent off/on pairs, alternately off-on and on-off (`run_order`), and the cost is the
   median of the pairs' costs; each run starts on a quiet system (the pipeline behind the previous load caught
   up), so none pays for another's backlog in the portal.
2. Inclusion proofs at 1,000,000 leaves: the log's tables topped up by COPY to that many leaves (each leaf's
   hash and every complete subtree above it computed as the sequencer would, under the sequencer's lock) and
   vacuumed and written out, so autovacuum and the checkpointer do not work through the copied rows while proofs
   are timed; the service signs its next checkpoint over them, then `GET /v1/log/proof/inclusion` for random
   leaves, timed; a sample of the answers is checked against the checkpoint's root with the RFC 9162 algorithm.
   Timed on a quiet system, as the other latency figures are: the pipeline behind the capture runs above (the
   portal applying their events, the outboxes, the log's queue) has caught up first."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import httpx

from bench.context import Ctx
from bench.events import batch_requests, queue_empty, quiet
from bench.load import Answer, Req, client, closed_loop, console, wait_until
from services.events.log import repository as log_repo
from services.events.log import tree as log_tree
from shared.contract import tlog

T = TypeVar("T")
LOG_OFF = {"BT_EVENTS_LOG_ENABLED": "false"}
#: Answers checked against the checkpoint's root (the rest are only timed).
VERIFIED = 200


async def run(ctx: Ctx) -> None:
    await capture_cost(ctx)
    await inclusion_latency(ctx)


async def log_off(ctx: Ctx) -> datetime:
    """The events service restarted with no part of the log running; when the ledger stopped feeding it."""
    db = await ctx.db()
    with console.status("events: restarting with the transparency log off…"):
        await db.execute("ALTER TABLE events.ledger DISABLE TRIGGER ledger_to_log")
        since: datetime = await db.fetchval("SELECT now()")
        await asyncio.to_thread(ctx.stack.restart, "events", LOG_OFF)
    return since


async def log_on(ctx: Ctx, off_since: datetime) -> None:
    """The service as deployed again, and the ledger rows written while the log was off queued in ledger order
    (as the migration queued the rows that predate the log), then sequenced: the log holds every event again."""
    db = await ctx.db()
    with console.status("events: restarting with the transparency log on, catching the log up…"):
        await asyncio.to_thread(ctx.stack.restart, "events")
        await db.execute("ALTER TABLE events.ledger ENABLE TRIGGER ledger_to_log")
        queued = await db.fetchval(
            "WITH q AS (INSERT INTO events.log_pending (events, battery_ids, sequences, hashes) "
            "SELECT count(*), array_agg(battery_id ORDER BY n), array_agg(sequence ORDER BY n), "
            "array_agg(hash ORDER BY n) FROM (SELECT battery_id, sequence, hash, "
            "row_number() OVER (ORDER BY recorded_at, battery_id, sequence) AS n "
            "FROM events.ledger WHERE recorded_at >= $1) l GROUP BY (n - 1) / 1000 ORDER BY (n - 1) / 1000 "
            "RETURNING events) SELECT coalesce(sum(events), 0) FROM q",
            off_since,
        )
        caught_up = await wait_until(lambda: queue_empty(ctx), timeout_s=ctx.cfg.catchup_timeout_s)
    ctx.report.notes.append(
        f"log: {queued} events captured with the log off were sequenced in "
        f"{caught_up if caught_up is not None else float('nan'):.1f} s afterwards"
    )


#: The capture runs: pairs of one log-off and one log-on run, alternately off-on and on-off (A-B-B-A …). Each pair's
#: two runs are adjacent, so they meet about the same database size and the same hour of a shared machine; each
#: pair gives one cost, and the figure is the median of the pairs' costs, with every pair's shown beside it. (A
#: single off-on-off design measured its two log-off halves 30 % apart in one run, six times the 5 % it is held
#: to: one comparison cannot tell the log's cost from the machine's drift.)
def run_order(pairs: int) -> list[str]:
    return [label for k in range(pairs) for label in (("off", "on") if k % 2 == 0 else ("on", "off"))]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def log_and_outbox_idle(ctx: Ctx, http: httpx.AsyncClient) -> bool:
    if not await queue_empty(ctx):
        return False
    r = await http.get(ctx.url("events") + "/v1/ops/outbox")
    return r.status_code == 200 and r.json()["backlog"] == 0


async def capture_cost(ctx: Ctx) -> None:
    cfg = ctx.cfg
    pairs = cfg.log_compare_pairs
    order = run_order(pairs)
    per_run = cfg.log_compare_events // pairs
    await wait_until(lambda: queue_empty(ctx), timeout_s=cfg.catchup_timeout_s)
    done: list[tuple[str, int, float, float | None]] = []  # (label, events, loop s, system CPU ms per event)
    own: list[tuple[str, float | None]] = []  # (label, CPU ms per event in the log's own processes)
    off_since = None
    for n, label in enumerate(order):
        reqs = batch_requests(ctx, per_run, salt=n + 1)
        if label == "off" and off_since is None:
            off_since = await log_off(ctx)
        elif label == "on" and off_since is not None:
            await log_on(ctx, off_since)
            off_since = None
        _waited(ctx, f"log-{label} run {n + 1}", await quiet(ctx))  # no run meets another's backlog
        name = f"events batch, log {label} (run {n + 1} of {len(order)})"
        async with client(ctx.url("events"), cfg.batch_concurrency, timeout_s=300) as http:
            async with ctx.phase(name) as ph:
                batch = await closed_loop(
                    http, reqs, cfg.batch_concurrency, description=f"events: batch capture, log {label}", ok=201
                )
                ph.update(batch.summary())
                # The phase ends when the log has sequenced the run's events and the relay has published them,
                # so the CPU per event counts the log's work whole, not only what ran while requests were in
                # flight (two cheap checks; the portal's share, the same per event in every run, may spill over
                # into the wait before the next run, which `quiet` counts rows for).
                lag = await wait_until(lambda: log_and_outbox_idle(ctx, http), timeout_s=cfg.catchup_timeout_s)
        ctx.report.notes.append(
            f"{name}: the log and the outbox caught up "
            + ("not within the timeout" if lag is None else f"{lag:.1f} s after the load")
        )
        if batch.errors:
            ctx.report.notes.append(f"{name}: {batch.errors} failed; first: {batch.first_error}")
        ms = ctx.report.phases.get(name, {}).get("cpu_ms_per_unit_system")
        done.append((label, batch.units, batch.units / batch.rate if batch.rate else float("nan"), ms))
        own.append((label, own_ms(ctx, name)))
    if off_since is not None:
        await log_on(ctx, off_since)
    report_cost(ctx, done)
    report_own_cost(ctx, own, [ms for label, _, _, ms in done if label == "off" and ms is not None])


#: The processes where the log's work runs: the events service (sequencer, checkpointer) and PostgreSQL's
#: backends of the events service's sessions (the ledger's trigger, the take and append). The portal and
#: autovacuum, whose CPU per event swings between runs by more than the log costs, are left out.
def own_ms(ctx: Ctx, phase: str) -> float | None:
    """CPU ms per event of the events service and of PostgreSQL's work for its sessions, in one run."""
    cpu, pg = ctx.report.cpu.get(phase, {}), ctx.report.pg_cpu.get(phase, {})
    units = cpu.get("units") or 0
    if not units or "events" not in cpu or "events" not in pg:
        return None
    return 1000 * (cpu["events"] + pg["events"]) / units


def pairs(runs: Sequence[tuple[str, T]]) -> Iterator[tuple[T, T]]:
    """Each adjacent pair of runs (see `run_order`) as (its log-on run, its log-off run), whatever their order."""
    for k in range(0, len(runs) - 1, 2):
        by = dict(runs[k : k + 2])
        yield by["on"], by["off"]


def pair_deltas(runs: list[tuple[str, float | None]]) -> list[float]:
    """Each adjacent off/on pair's log-on minus log-off value (pairs with an unmeasured run left out)."""
    return [on - off for on, off in pairs(runs) if on is not None and off is not None]


def report_own_cost(ctx: Ctx, own: list[tuple[str, float | None]], off_system_ms: list[float]) -> None:
    """The log's CPU in its own processes: a diagnostic beside the two costs (no target of its own)."""
    deltas = pair_deltas(own)
    if not deltas or not off_system_ms:
        return
    base, delta = median(off_system_ms), median(deltas)
    ctx.report.add(
        "log",
        "the log's CPU in its own processes",
        delta / base * 100,
        "%",
        note=f"median over the pairs of log on - log off CPU per event of the events service and of PostgreSQL "
        f"for its sessions: {delta * 1000:.1f} µs per event, of {base:.3f} ms of system CPU per event "
        "with the log off (median); each pair (µs): " + ", ".join(f"{d * 1000:.1f}" for d in deltas),
    )


def pair_costs(done: list[tuple[str, int, float, float | None]]) -> list[tuple[float, float | None]]:
    """Each pair's (throughput cost %, CPU cost %): 1 - (log-on rate ÷ log-off rate), and log-on ÷ log-off system
    CPU per event - 1 (None where a run's CPU was not measured)."""
    out: list[tuple[float, float | None]] = []
    runs = [(label, (units, seconds, ms)) for label, units, seconds, ms in done]
    for (on_units, on_s, on_ms), (off_units, off_s, off_ms) in pairs(runs):
        rate_cost = (1 - (on_units / on_s) / (off_units / off_s)) * 100
        out.append((rate_cost, (on_ms / off_ms - 1) * 100 if on_ms and off_ms else None))
    return out


def report_cost(ctx: Ctx, done: list[tuple[str, int, float, float | None]]) -> None:
    cfg = ctx.cfg
    for label in ("off", "on"):
        runs = [r for r in done if r[0] == label]
        ctx.report.add(
            "log",
            f"batch capture, log {label}",
            sum(r[1] for r in runs) / sum(r[2] for r in runs) if runs else None,
            "events/s",
            note=f"{sum(r[1] for r in runs):,} INCIDENTs in {len(runs)} run(s), {cfg.batch_size:,}/request, "
            f"{cfg.batch_concurrency} in flight",
        )
    costs = pair_costs(done)
    rate_costs = [c for c, _ in costs]
    cpu_costs = [c for _, c in costs if c is not None]
    ctx.report.add(
        "log",
        "capture cost of the log",
        median(rate_costs) if rate_costs else None,
        "%",
        5,
        "<=",
        note=f"median over {len(rate_costs)} adjacent off/on pairs (A-B-B-A order) of 1 - (log on ÷ log off); "
        "each pair: " + ", ".join(f"{c:.1f}" for c in rate_costs),
    )
    # Throughput follows the machine's load as much as the work (on shared cores the runs can differ by more
    # than the log costs); CPU per event, summed over every process, is the steadier comparison.
    ctx.report.add(
        "log",
        "CPU cost of the log",
        median(cpu_costs) if cpu_costs else None,
        "%",
        note="median over the pairs of log on ÷ log off system CPU per event - 1 (every process of the system, "
        "each run until its pipeline caught up); each pair: "
        + ", ".join(f"{c:.1f}" for c in cpu_costs)
        + "; per run (ms per event): "
        + ", ".join(f"{label} {ms:.3f}" for label, _, _, ms in done if ms is not None),
    )


def _leaf_input(i: int) -> bytes:
    """A stand-in ledger hash for bench leaf `i` (32 bytes, as a ledger hash is)."""
    return hashlib.sha256(b"bench-leaf" + i.to_bytes(8, "big")).digest()


async def fill(ctx: Ctx, leaves: int) -> tuple[int, float]:
    """Top the log up to `leaves` leaves by COPY; (leaves added, seconds)."""
    conn = await ctx.db()
    started = time.perf_counter()
    async with conn.transaction():
        # The sequencer's own lock: it appends nothing until this commits, so the indexes stay contiguous.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", log_repo.SEQUENCER_LOCK)
        size = await log_repo.tree_size(conn)
        add = max(0, leaves - size)
        if add:
            await _copy(conn, size, leaves)
    # As a log that has run for a while is: its rows vacuumed (visible to all, hint bits set), its statistics
    # current, the pages written; also when nothing was copied (a full run's log has more leaves than that
    # already, written by the sequencer in the minutes before). Otherwise the first reads of each page set its
    # hint bits and autovacuum and the checkpointer work through the rows while the proofs are timed, and their
    # CPU is counted as the proofs' (measured at 1,000,000 leaves: PostgreSQL's CPU per proof 0.9 to 1.1 ms
    # without this, 0.26 to 0.37 ms with it, before issue 14's changes and after alike; in the full run of
    # session 11, on 1,722,232 leaves the sequencer wrote and nothing vacuumed, 0.48 ms and p99 12.0 ms).
    with console.status(f"log: VACUUM (ANALYZE) and CHECKPOINT after {add:,} leaves added…"):
        await conn.execute("VACUUM (ANALYZE) events.log_leaves, events.log_nodes")
        await conn.execute("CHECKPOINT")
    return add, time.perf_counter() - started


async def _copy(conn: asyncpg.Connection, size: int, leaves: int) -> None:
    """Leaves [size, leaves) and the stored nodes they complete, by COPY (in the caller's transaction)."""
    add = leaves - size
    with console.status(f"log: hashing {add:,} leaves and their subtrees…"):
        frontier = await log_repo.nodes(conn, tlog.frontier_keys(size))
        hashes = [tlog.leaf_hash(_leaf_input(i)) for i in range(size, leaves)]
        nodes = log_tree.storable(tlog.compact_nodes(size, hashes, tlog.getter(frontier)))
    with console.status(f"log: COPY of {add:,} leaves and {len(nodes):,} nodes…"):
        await conn.copy_records_to_table(
            "log_leaves",
            schema_name="events",
            columns=["leaf_index", "battery_id", "sequence", "leaf_hash"],
            records=((size + k, f"BENCH-LOG-{size + k:09d}", 1, h) for k, h in enumerate(hashes)),
        )
        await conn.copy_records_to_table(
            "log_nodes",
            schema_name="events",
            columns=["level", "idx", "hash"],
            records=((level, idx, h) for (level, idx), h in nodes.items()),
        )


async def block_reads(ctx: Ctx) -> dict[str, int]:
    """Blocks of the log's tables and their indexes read into shared_buffers, and found there, so far
    (pg_statio_all_tables). A busy backend flushes its counts at most once a second, an idle one within 10 s
    (PostgreSQL's PGSTAT_IDLE_INTERVAL): read after 11 s without proofs."""
    await asyncio.sleep(11)
    row = await (await ctx.db()).fetchrow(
        "SELECT sum(heap_blks_read + coalesce(idx_blks_read, 0)) AS read, "
        "sum(heap_blks_hit + coalesce(idx_blks_hit, 0)) AS hit FROM pg_statio_all_tables "
        "WHERE schemaname = 'events' AND relname IN ('log_leaves', 'log_nodes', 'log_checkpoints')"
    )
    return {"read": int(row["read"] or 0), "hit": int(row["hit"] or 0)}


def _waited(ctx: Ctx, before: str, seconds: float | None) -> None:
    took = "not within the catch-up timeout" if seconds is None else f"in {seconds:.1f} s"
    ctx.report.notes.append(f"log: the pipeline caught up {took} before {before}")


async def inclusion_latency(ctx: Ctx) -> None:
    cfg = ctx.cfg
    _waited(ctx, "the inclusion proofs were timed", await quiet(ctx))
    added, fill_s = await fill(ctx, cfg.log_leaves)
    async with httpx.AsyncClient(base_url=ctx.url("events"), timeout=30) as http:

        async def signed() -> tlog.Checkpoint | None:
            r = await http.get("/v1/log/checkpoint")
            if r.status_code != 200:
                return None
            cp = tlog.Checkpoint.parse(tlog.Note.parse(r.text).text)
            return cp if cp.size >= cfg.log_leaves else None

        with console.status("log: waiting for the checkpoint over the filled tree…"):
            waited = await wait_until(signed, timeout_s=120, interval_s=0.5)
            checkpoint = await signed()
    if waited is None or checkpoint is None:
        ctx.report.add("log", "inclusion proof p99", None, "ms", 10, "<=", note="no checkpoint over the filled log")
        return
    size = checkpoint.size
    rnd = random.Random(cfg.seed)
    picks = [rnd.randrange(size) for _ in range(cfg.proof_requests)]
    rows = await (await ctx.db()).fetch(
        "SELECT leaf_index, battery_id, sequence, leaf_hash FROM events.log_leaves WHERE leaf_index = ANY($1::bigint[])",
        sorted(set(picks)),
    )
    leaf = {r["leaf_index"]: (r["battery_id"], r["sequence"], bytes(r["leaf_hash"])) for r in rows}
    reqs = [
        Req(
            "GET",
            f"/v1/log/proof/inclusion?battery_id={leaf[i][0]}&sequence={leaf[i][1]}&tree_size={size}",
            {},  # public: no token
        )
        for i in picks
    ]
    wrong: list[str] = []

    def check(i: int, answer: Answer) -> None:
        if i >= VERIFIED:
            return
        body: dict[str, Any] = answer.json()
        try:
            tlog.verify_inclusion(
                leaf[picks[i]][2], body["leaf_index"], size, tlog.unhex(body["audit_path"]), checkpoint.root_hash
            )
        except tlog.LogError as exc:
            wrong.append(f"leaf {picks[i]}: {exc}")

    async with client(ctx.url("events"), cfg.proof_concurrency) as http:
        for r in reqs[: min(100, len(reqs))]:  # warm the connections, the code path and the cache
            await http.get(r.url)
        io_before = await block_reads(ctx)
        async with ctx.phase("log inclusion proofs") as ph:
            run = await closed_loop(
                http, reqs, cfg.proof_concurrency, description="log: GET /v1/log/proof/inclusion", on_ok=check
            )
            ph.update(run.summary())
        io = {k: v - io_before.get(k, 0) for k, v in (await block_reads(ctx)).items()}
    ctx.report.notes.append(
        "log inclusion proofs: the log's tables and indexes, blocks per proof read from outside shared_buffers / "
        f"found in them: {io['read'] / max(run.units, 1):.2f} / {io['hit'] / max(run.units, 1):.2f} "
        f"(shared_buffers {await (await ctx.db()).fetchval('SHOW shared_buffers')})"
    )
    if run.errors:
        ctx.report.notes.append(f"log inclusion proofs: {run.errors} errors; first: {run.first_error}")
    if wrong:
        ctx.report.notes.append(f"log inclusion proofs: {len(wrong)} did not verify; first: {wrong[0]}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    at = (
        f"load average {load:.1f} on {os.cpu_count()} cores; tree of {size:,} leaves ({added:,} added by COPY in {fill_s:.1f} s), {cfg.proof_concurrency} clients, "
        f"random leaves; {min(VERIFIED, run.units) - len(wrong)} of {min(VERIFIED, run.units)} checked answers verify"
    )
    ctx.report.add("log", "inclusion proof p50", run.pct(50) * 1000, "ms", note=at)
    ctx.report.add(
        "log", "inclusion proof p99", run.pct(99) * 1000 if not wrong else None, "ms", 10, "<=", note=f"at {size:,}"
    )
    ctx.report.add("log", "inclusion proof throughput", run.requests_per_s, "req/s")
