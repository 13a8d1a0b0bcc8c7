"""The raw limits of this machine, measured in the same run as the phases they bound (issue 16): COPY into a
ledger-shaped table (rows/s), single-row transactions of a ledger row and an outbox row on 16 connections
(transactions/s), and a bare FastAPI endpoint with pydantic validation on one uvicorn worker (requests/s,
driven by the same load generator as the phases). Each phase's rate is then reported as a ratio to its limit
(`Report.finalize`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from bench.context import Ctx
from bench.load import Req, client, closed_loop, console
from bench.probe import cpu_snapshot_of
from bench.report import COPY_LIMIT, FASTAPI_LIMIT, TX_LIMIT
from devtools.dev import wait_healthy
from devtools.embedded import free_port

#: Scratch tables shaped like events.ledger and events.outbox (same columns, types, defaults and indexes),
#: created for the measurement and dropped afterwards.
SCRATCH = "bench_limits"
LEDGER_COLS = [
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
TX_CONNECTIONS = 16


def ledger_row(i: int, now: datetime) -> tuple[object, ...]:
    digest = os.urandom(32).hex()
    return (
        f"KR-LIMIT-{i:08d}",
        1,
        uuid.uuid4(),
        "INCIDENT",
        now,
        now,
        "KOTSA",
        "inspector",
        '{"site": "bench", "region": "KR-41"}',
        '{"kind": "swelling", "severity": "low"}',
        "MANUFACTURED",
        "LGES",
        "0" * 64,
        digest,
        digest,
    )


def outbox_row(i: int) -> tuple[object, ...]:
    payload = orjson.dumps({"id": str(uuid.uuid4()), "type": "kr.battery.event.v1", "data": {"n": i}}).decode()
    return ("bench.limits", f"KR-LIMIT-{i:08d}", payload)


async def run(ctx: Ctx) -> None:
    cfg = ctx.cfg
    conn = await asyncpg.connect(ctx.stack.dsn)
    try:
        await _scratch(conn)
        with console.status(f"limits: raw COPY of {cfg.limit_copy_rows:,} ledger-shaped rows…"):
            copy_rate = await copy_limit(conn, cfg.limit_copy_rows)
        ctx.report.add_limit(
            COPY_LIMIT,
            copy_rate,
            "rows/s",
            f"{cfg.limit_copy_rows:,} rows into a table shaped like events.ledger, 1,000-row COPYs, one commit",
        )
        with console.status(f"limits: {cfg.limit_transactions:,} single-row transactions…"):
            tx_rate = await transaction_limit(ctx.stack.dsn, cfg.limit_transactions)
        ctx.report.add_limit(
            TX_LIMIT,
            tx_rate,
            "tx/s",
            f"ledger row + outbox row per transaction, {TX_CONNECTIONS} connections, synchronous_commit on",
        )
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        await conn.close()
    await fastapi_limit(ctx)


async def _scratch(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SCRATCH}")
    await conn.execute(f"CREATE TABLE {SCRATCH}.ledger (LIKE events.ledger INCLUDING DEFAULTS INCLUDING INDEXES)")
    await conn.execute(f"CREATE TABLE {SCRATCH}.outbox (LIKE events.outbox INCLUDING DEFAULTS INCLUDING INDEXES)")


async def copy_limit(conn: asyncpg.Connection, rows: int) -> float:
    now = datetime.now(UTC)
    records = [ledger_row(i, now) for i in range(rows)]
    started = time.perf_counter()
    async with conn.transaction():
        for i in range(0, rows, 1_000):
            await conn.copy_records_to_table(
                "ledger", schema_name=SCRATCH, columns=LEDGER_COLS, records=records[i : i + 1_000]
            )
    return rows / (time.perf_counter() - started)


async def transaction_limit(dsn: str, transactions: int) -> float:
    now = datetime.now(UTC)
    insert_ledger = (
        f"INSERT INTO {SCRATCH}.ledger ({', '.join(LEDGER_COLS)}) VALUES "
        f"($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12, $13, $14, $15)"
    )
    insert_outbox = f"INSERT INTO {SCRATCH}.outbox (topic, key, payload) VALUES ($1, $2, $3::json)"
    pool = await asyncpg.create_pool(dsn, min_size=TX_CONNECTIONS, max_size=TX_CONNECTIONS)
    nxt = 0

    async def worker() -> None:
        nonlocal nxt
        async with pool.acquire() as c:
            while nxt < transactions:
                i = nxt
                nxt += 1
                async with c.transaction():
                    await c.execute(insert_ledger, *ledger_row(10_000_000 + i, now))
                    await c.execute(insert_outbox, *outbox_row(i))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(TX_CONNECTIONS)))
        return transactions / (time.perf_counter() - started)
    finally:
        await pool.close()


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def fastapi_limit(ctx: Ctx) -> None:
    """One uvicorn worker of `bench.bare_app` (a FastAPI endpoint validating an event-shaped body with
    pydantic), driven by the load generator of the phases with 16 clients."""
    cfg = ctx.cfg
    port = free_port()
    log = Path(ctx.stack.base) / "bare-fastapi.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.bare_app:create_app", "--host", ctx.stack.host]
    cmd += ["--port", str(port), "--no-access-log"]
    proc = await asyncio.to_thread(_spawn, cmd, log)
    url = f"http://{ctx.stack.host}:{port}"
    try:
        await asyncio.to_thread(wait_healthy, url, proc)
        body = orjson.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "battery_id": "KR-LIMIT-00000001",
                "type": "INCIDENT",
                "occurred_at": ctx.occurred_at,
                "location": {"site": "bench", "region": "KR-41"},
                "data": {"kind": "swelling", "severity": "low"},
            }
        )
        headers = {"content-type": "application/json"}
        reqs = [Req("POST", "/v1/events", headers, body)] * cfg.limit_requests
        async with client(url, TX_CONNECTIONS) as http:
            for r in reqs[:100]:
                await http.post(r.url, content=r.content, headers=r.headers)
            before = cpu_snapshot_of({"app": proc.pid, "loadgen": os.getpid()})
            run_ = await closed_loop(http, reqs, TX_CONNECTIONS, description="limits: bare FastAPI", ok=201)
            after = cpu_snapshot_of({"app": proc.pid, "loadgen": os.getpid()})
        per = {k: 1000 * (after[k] - before[k]) / (run_.units or 1) for k in after}
        ctx.report.add_limit(
            FASTAPI_LIMIT,
            run_.requests_per_s,
            "req/s",
            f"one uvicorn worker, pydantic-validated POST, {TX_CONNECTIONS} clients; CPU per request: "
            f"app {per['app']:.3f} ms, load generator {per['loadgen']:.3f} ms; p99 {run_.pct(99) * 1000:.1f} ms",
            p50_ms=run_.pct(50) * 1000,
            p99_ms=run_.pct(99) * 1000,
            cpu_ms_per_unit_system=per["app"],
            cpu_ms_per_unit_loadgen=per["loadgen"],
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
