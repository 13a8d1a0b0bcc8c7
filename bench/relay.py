"""Relay part (issue 6): the outbox relay's publish throughput on its own, and how it scales with 1, 2 and
4 relay instances (separate processes) on this machine.

A scratch outbox (schema `relaybench`, same shape as every service's outbox) is filled by COPY with
lifecycle-sized CloudEvents; each run marks them all unsent and times the relays until the backlog is 0.
The services' own relays never see this table, so nothing else drains it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import asyncpg
import orjson

from bench.context import Ctx
from bench.load import console
from shared.contract.streams import lifecycle_type
from shared.db import asyncpg_dsn

SCHEMA = "relaybench"
TOPIC = "bench.relay.v1"
INSTANCES = (1, 2, 4)


def _payload(i: int) -> str:
    bid = f"KR-BENCH-{i % 50_000:08d}"
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/batterytrace/events",
            "type": lifecycle_type("INCIDENT"),
            "subject": bid,
            "time": "2026-11-23T00:00:00+00:00",
            "datacontenttype": "application/json",
            "data": {
                "event_id": str(uuid.uuid4()),
                "battery_id": bid,
                "sequence": i,
                "type": "INCIDENT",
                "occurred_at": "2026-11-23T00:00:00.000000Z",
                "recorded_at": "2026-11-23T00:00:00.000000Z",
                "actor": "KOTSA",
                "actor_role": "inspector",
                "location": {"site": "bench", "region": "KR-41"},
                "data": {"kind": "swelling", "severity": "low"},
                "state_after": "in_service",
                "custodian_after": "HMC",
                "prev_hash": "0" * 64,
                "hash": "f" * 64,
                "kind": "pack",
                "manufacturer": "LGES",
            },
        }
    ).decode()


async def run(ctx: Ctx, rows: int | None = None) -> None:
    rows = rows or ctx.cfg.relay_rows
    db_url = ctx.stack.db_url
    assert ctx.stack.kafka is not None
    bootstrap = ctx.stack.kafka.bootstrap
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.outbox")
        await conn.execute(f"CREATE TABLE {SCHEMA}.outbox (LIKE events.outbox INCLUDING ALL)")
        with console.status(f"filling a scratch outbox with {rows:,} messages…"):
            await conn.copy_records_to_table(
                "outbox",
                schema_name=SCHEMA,
                columns=["topic", "key", "payload"],
                records=[(TOPIC, f"KR-BENCH-{i % 50_000:08d}", _payload(i)) for i in range(rows)],
            )
        for n in INSTANCES:
            await conn.execute(f"UPDATE {SCHEMA}.outbox SET sent_at = NULL")
            await conn.execute(f"VACUUM ANALYZE {SCHEMA}.outbox")
            started = time.perf_counter()
            workers = [
                subprocess.Popen(  # noqa: ASYNC220 - returns at once
                    [sys.executable, "-m", "bench.relay_worker", db_url, bootstrap, SCHEMA],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(n)
            ]
            try:
                with console.status(f"{n} relay instance(s) publishing {rows:,} messages…"):
                    first: float | None = None  # timed from the first row published: start-up is not the relay's
                    first_left = rows
                    while True:
                        left = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE sent_at IS NULL")
                        now = time.perf_counter()
                        if first is None and left < rows:
                            first, first_left = now, left
                        if left == 0:
                            break
                        if now - started > 600:
                            raise TimeoutError("relay did not drain the scratch outbox in 600 s")
                        await asyncio.sleep(0.02)
                elapsed = max(now - (first or started), 1e-3)
                published = first_left
            finally:
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait(30)
            ctx.report.add(
                "relay",
                f"publish throughput, {n} instance{'s' if n > 1 else ''}",
                published / elapsed,
                "msg/s",
                note=f"{rows:,} lifecycle-sized messages, acks=all, timed from the first row published",
            )
        await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    finally:
        await conn.close()
