"""What every part of the bench shares: the settings of the run, tokens, IDs, the database probe."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.probe import profiled, snapshots
from bench.report import Report
from bench.stack import Stack
from shared.auth import mint_token

MODEL_ID = "BENCH-NCM-P77"
MANUFACTURER = "LGES"
INSPECTOR = "KOTSA"
OEM = "HMC"
#: Batteries outside the bulk load: the freshness probes and the 50-event history battery. Enough probes
#: that each gets about one event: a probe then polls a short history, so the measuring costs the system
#: little (with 10 probes, their histories grew to hundreds of events and polling them took more portal
#: CPU than the events being measured).
PROBE_IDS = [f"KR-BENCH-S{i:07d}" for i in range(2_000)]
HISTORY_ID = "KR-BENCH-H0000001"
FRESHNESS_LIMIT_S = 30.0


@dataclass
class Config:
    parts: list[str]
    batteries: int = 1_000_000
    bulk_size: int = 10_000
    bulk_concurrency: int = 2
    get_requests: int = 20_000
    get_concurrency: int = 8
    batch_events: int = 200_000
    batch_size: int = 1_000
    batch_concurrency: int = 2
    ledger_events: int = 0  # bench/events.grow: the ledger grown to this many events before the single phase
    single_events: int = 20_000
    single_concurrency: int = 16
    history_requests: int = 5_000
    history_concurrency: int = 8
    view_repeats: int = 20
    log_compare_events: int = 200_000  # events with the log off, and again with it on, over all pairs
    log_compare_pairs: int = 4  # adjacent log-off/log-on run pairs (bench/log.py)
    log_leaves: int = 1_000_000  # the tree size the inclusion proofs are timed at
    proof_requests: int = 20_000
    proof_concurrency: int = 4
    catchup_timeout_s: float = 3600.0
    relay_rows: int = 200_000  # bench/relay.py: messages in the scratch outbox
    limit_copy_rows: int = 200_000  # bench/limits.py: raw COPY rows
    limit_transactions: int = 10_000  # single-row transactions
    limit_requests: int = 20_000  # bare FastAPI requests
    workers: int = 1
    seed: int = 1
    profile_dir: str | None = None


def battery_id(i: int) -> str:
    return f"KR-BENCH-{i:08d}"


@dataclass
class Ctx:
    cfg: Config
    stack: Stack
    report: Report
    #: Every event uses this occurred_at: legal (not in the future, not before the last event).
    occurred_at: str = field(default_factory=lambda: (datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    registered: int = 0
    #: freshness samples (s) by the load they were taken under ("batch", "single"); a probe not visible
    #: within FRESHNESS_LIMIT_S counts as that limit, and is also counted in freshness_timeouts
    freshness_timeouts: int = 0
    freshness_by: dict[str, list[float]] = field(default_factory=dict)
    portal_up: bool = False
    _tokens: dict[tuple[str, str, str | None], dict[str, str]] = field(default_factory=dict)
    _db: asyncpg.Connection | None = None

    def headers(self, org: str, role: str, ministry: str | None = None) -> dict[str, str]:
        key = (org, role, ministry)
        if key not in self._tokens:
            token = mint_token(self.stack.private_key, org=org, role=role, ministry=ministry, ttl_s=24 * 3600)
            self._tokens[key] = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        return self._tokens[key]

    @property
    def manufacturer(self) -> dict[str, str]:
        return self.headers(MANUFACTURER, "manufacturer")

    @property
    def inspector(self) -> dict[str, str]:
        return self.headers(INSPECTOR, "inspector")

    def ministry(self, code: str) -> dict[str, str]:
        return self.headers(code, "ministry", code)

    def url(self, service: str) -> str:
        return self.stack.urls[service]

    async def db(self) -> asyncpg.Connection:
        """The bench's own connection: progress counts and the COPY reference, never the services' path."""
        if self._db is None:
            self._db = await asyncpg.connect(self.stack.dsn)
        return self._db

    async def count(self, sql: str, *args: Any) -> int:
        return int(await (await self.db()).fetchval(sql, *args))

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[dict[str, float]]:
        """Measure CPU seconds per process group over a phase (and, with --profile, profile the services and
        write the SQL statements that took the most database time). The caller sets `units` in the yielded
        dict: the work the phase did (batteries, events, requests), and may set `rate`, `p50_ms` and `p99_ms`
        (`Run.summary()`)."""
        rec: dict[str, float] = {}
        directory = Path(self.cfg.profile_dir) if self.cfg.profile_dir else None
        vacuum_before: dict[str, tuple[float, ...]] = {}
        if directory is not None:
            await (await self.db()).execute("SELECT pg_stat_statements_reset()")
            vacuum_before = await self._vacuum_stats()
        before, pg_before = snapshots(self.stack)
        started = time.perf_counter()
        with profiled(self.stack, directory, name, list(self.stack.procs)):
            yield rec
        wall = time.perf_counter() - started
        if directory is not None:
            await self._write_sql_stats(directory / f"{name}-sql.txt", int(rec.get("units", 0)) or 1)
            await self._write_vacuum_stats(
                directory / f"{name}-vacuum.txt", vacuum_before, int(rec.get("units", 0)) or 1
            )
        after, pg_after = snapshots(self.stack)
        cpu = {k: after[k] - before.get(k, 0.0) for k in after}
        self.report.cpu[name] = {"wall_s": wall, "units": rec.get("units", 0)} | cpu
        if pg_before is not None and pg_after is not None:
            self.report.pg_cpu[name] = {"units": rec.get("units", 0)} | pg_after.since(pg_before)
        self.report.record_phase(name, rec, cpu)

    async def _write_sql_stats(self, path: Path, units: int) -> None:
        rows = await (await self.db()).fetch(
            "SELECT calls, total_exec_time, rows, plans, total_plan_time, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 300) AS query "
            "FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25"
        )
        lines = [
            "PostgreSQL 18 groups statements by table name: same-named tables in two schemas share a line.",
            "plans/call: 1.00 where a prepared statement is planned anew each call (custom plans), about 0 where it",
            "runs one cached generic plan.",
            f"{'ms/unit':>9} {'plan ms/unit':>12} {'calls/unit':>10} {'plans/call':>10} {'rows/call':>9}  query"
            f"  ({units:,} units)",
        ]
        for r in rows:
            per_call = r["rows"] / r["calls"] if r["calls"] else 0
            plans = r["plans"] / r["calls"] if r["calls"] else 0
            lines.append(
                f"{r['total_exec_time'] / units:9.3f} {r['total_plan_time'] / units:12.3f} {r['calls'] / units:10.2f}"
                f" {plans:10.2f} {per_call:9.1f}  {r['query']}"
            )
        await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n")

    async def _vacuum_stats(self) -> dict[str, tuple[float, ...]]:
        """Per table: autovacuum runs and milliseconds, autoanalyze runs and milliseconds (PostgreSQL 18's
        `total_auto*_time`)."""
        rows = await (await self.db()).fetch(
            "SELECT schemaname || '.' || relname AS t, autovacuum_count, total_autovacuum_time, autoanalyze_count, "
            "total_autoanalyze_time FROM pg_stat_all_tables WHERE schemaname IN ('registry', 'events', 'portal')"
        )
        return {r["t"]: tuple(float(v) for v in list(r.values())[1:]) for r in rows}

    async def _write_vacuum_stats(self, path: Path, before: dict[str, tuple[float, ...]], units: int) -> None:
        """What autovacuum and autoanalyze did to each table during the phase (PostgreSQL's statistics are
        flushed once a worker ends, so one still running at the end shows in the next phase)."""
        after = await self._vacuum_stats()
        deltas = {t: [a - b for a, b in zip(v, before.get(t, (0.0,) * 4), strict=True)] for t, v in after.items()}
        lines = [f"{'ms/unit':>9} {'vacuums':>7} {'vac ms':>9} {'analyzes':>8} {'anl ms':>9}  table  ({units:,} units)"]
        for t, (vc, vt, ac, at) in sorted(deltas.items(), key=lambda kv: -(kv[1][1] + kv[1][3])):
            if vc or ac:
                lines.append(f"{(vt + at) / units:9.3f} {vc:7.0f} {vt:9.1f} {ac:8.0f} {at:9.1f}  {t}")
        await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n")

    def check_alive(self) -> None:
        self.stack.check_alive()
