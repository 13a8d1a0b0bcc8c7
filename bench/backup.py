"""Backup part (issue 17): `batterytrace backup` and `batterytrace restore` of the system as the run left it.

After the other parts (alone: after the registrations of `--batteries` batteries, each with its MANUFACTURED
ledger event and log leaf, which every run makes), on a quiet system (the pipeline caught up, the newest
checkpoint covering every leaf):

1. `batterytrace backup FILE --database-url <bt_owner>`: the real command, its wall seconds, the CPU of the
   command's own Python process and of the pg_dump it runs (from /proc, before the command is reaped), and
   PostgreSQL's CPU meanwhile (the phase's process groups); the dump's size.
2. `batterytrace restore FILE` into a fresh database of the same embedded server (the roles the dump grants
   rights to are cluster-wide; the command refuses a database that holds the schemas), timed the same way
   (psql and pg_restore are its children).
3. The restored database is the same: the row count of every table of the dumped schemas, the newest
   checkpoint (size, root, signed note), the root folded from the restored log's stored subtrees (it must be
   the checkpoint's root, as the restore test's consistency proof checks), and a digest of every ledger hash
   in chain order. The source is counted before and after the dump: a system that was not quiet is reported.

Figures per million batteries: seconds and MB scale with the database, which at 1,000,000 batteries is what
the issue asks about."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.context import Ctx
from bench.events import quiet
from bench.load import console, wait_until
from bench.probe import exited_cpu
from bench.stack import DATABASE
from services.cli.backup import SCHEMAS
from services.events.log import repository as log_repo
from shared.contract import tlog
from shared.db import asyncpg_dsn

CLI = str(Path(sys.executable).parent / "batterytrace")
#: What `batterytrace backup` dumps: the project's schemas and public (Alembic's version table).
DUMPED = (*SCHEMAS, "public")
RESTORED = "batterytrace_restored"


@dataclass(frozen=True)
class Command:
    """One run of the command line: wall seconds, CPU seconds of its Python process and of the PostgreSQL
    client programs it ran (pg_dump; psql and pg_restore), exit code and output."""

    wall_s: float
    cli_cpu_s: float
    tools_cpu_s: float
    code: int
    output: str


def command(*args: str) -> Command:
    started = time.perf_counter()
    proc = subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    # Exited but not reaped: /proc still has its CPU seconds, its own and its waited-for children's apart.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - started
    own, children = exited_cpu(proc.pid) or (float("nan"), float("nan"))
    return Command(wall, own, children, proc.wait(), output.strip())


@dataclass(frozen=True)
class State:
    """What must survive a backup and restore."""

    counts: dict[str, int]
    checkpoint: tuple[int, str, str] | None  # newest checkpoint: size, root (hex), signed note
    folded_root: str | None  # the root folded from the stored subtrees at the checkpoint's size
    ledger_digest: str | None  # md5 of every ledger hash, in (battery, sequence) order

    def differences(self, other: State) -> list[str]:
        out = [
            f"{t}: {self.counts.get(t)} vs {other.counts.get(t)}"
            for t in sorted(self.counts.keys() | other.counts.keys())
            if self.counts.get(t) != other.counts.get(t)
        ]
        if self.checkpoint != other.checkpoint:
            out.append(f"newest checkpoint: {self.checkpoint} vs {other.checkpoint}")
        if self.ledger_digest != other.ledger_digest:
            out.append(f"ledger hashes: {self.ledger_digest} vs {other.ledger_digest}")
        return out


async def state(dsn: str) -> State:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1::text[]) ORDER BY 1, 2",
            list(DUMPED),
        )
        counts = {}
        for t in tables:
            name = f'"{t["schemaname"]}"."{t["tablename"]}"'
            counts[f"{t['schemaname']}.{t['tablename']}"] = int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
        cp = await log_repo.latest_checkpoint(conn)
        folded = None
        if cp is not None:
            stored = await log_repo.nodes(conn, tlog.needed_for_root(cp.tree_size))
            try:
                folded = tlog.root(cp.tree_size, tlog.getter(stored)).hex()
            except tlog.LogError as exc:
                folded = f"not foldable: {exc}"
        digest = await conn.fetchval(
            "SELECT md5(string_agg(hash, ',' ORDER BY battery_id, sequence)) FROM events.ledger"
        )
    finally:
        await conn.close()
    return State(
        counts,
        None if cp is None else (cp.tree_size, cp.root_hash.hex(), cp.note),
        folded,
        digest,
    )


async def run(ctx: Ctx) -> None:
    stack, report = ctx.stack, ctx.report
    assert stack.pg is not None
    per_m = 1_000_000 / max(ctx.registered, 1)
    waited = await quiet(ctx)
    conn = await ctx.db()

    async def checkpointed() -> bool:
        cp = await log_repo.latest_checkpoint(conn)
        return cp is not None and cp.tree_size == await log_repo.tree_size(conn)

    with console.status("backup: waiting for a checkpoint over every leaf…"):
        signed = await wait_until(checkpointed, timeout_s=120, interval_s=0.5)
    # No writes for a few seconds (the consumers may still record what they applied after the read models are
    # complete): the counts before and after the dump are then those of the dump's snapshot.
    last = [-1]

    async def still() -> bool:
        n = int(
            await conn.fetchval(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
                "WHERE schemaname = ANY($1::text[])",
                list(DUMPED),
            )
        )
        same, last[0] = n == last[0], n
        return same

    with console.status("backup: waiting until nothing writes…"):
        settled = await wait_until(still, timeout_s=120, interval_s=3)
    report.notes.append(
        "backup: the pipeline caught up "
        + ("not within the catch-up timeout" if waited is None else f"in {waited:.1f} s")
        + ("; no checkpoint covered every leaf within 120 s" if signed is None else "")
        + ("; the database was still written to after 120 s" if settled is None else "")
        + " before the backup"
    )
    with console.status("backup: counting the source database…"):
        before = await state(stack.dsn)
    rows = sum(before.counts.values())
    db_bytes = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    dump = stack.base / "backup.dump"
    with console.status(f"backup: batterytrace backup of {rows:,} rows ({db_bytes / 1e6:,.0f} MB database)…"):
        async with ctx.phase("backup") as ph:
            made = await asyncio.to_thread(command, "backup", str(dump), "--database-url", stack.pg.owner_url(DATABASE))
            ph["units"] = ctx.registered
    _add_tools(ctx, "backup", "pg_dump", made)
    if made.code != 0:
        report.add("backup", "backup", None, "s", note=f"batterytrace backup exited {made.code}: {made.output[-300:]}")
        return
    size = dump.stat().st_size
    with console.status("backup: counting the source database again…"):
        after = await state(stack.dsn)
    moved = before.differences(after)
    if moved:
        report.notes.append(f"backup: the source changed during the dump ({len(moved)} differences); first: {moved[0]}")

    await stack.pg.drop_database(RESTORED)
    await stack.pg.create_database(RESTORED)
    try:
        with console.status("backup: batterytrace restore into a fresh database…"):
            async with ctx.phase("restore") as ph:
                back = await asyncio.to_thread(
                    command, "restore", str(dump), "--database-url", stack.pg.owner_url(RESTORED)
                )
                ph["units"] = ctx.registered
        _add_tools(ctx, "restore", "pg_restore", back)
        if back.code != 0:
            report.add("backup", "restore", None, "s", note=f"batterytrace restore exited {back.code}: {back.output}")
            return
        with console.status("backup: counting the restored database…"):
            copy = await state(asyncpg_dsn(stack.pg.url(RESTORED)))
    finally:
        await stack.pg.drop_database(RESTORED)
        dump.unlink(missing_ok=True)

    pg = {name: report.cpu[name].get("postgres", float("nan")) for name in ("backup", "restore")}
    at = (
        f"{ctx.registered:,} batteries, {rows:,} rows in {len(before.counts)} tables, {db_bytes / 1e6:,.0f} MB database"
    )
    report.add("backup", "backup wall", made.wall_s, "s", note=f"{at}; the command said: {made.output}")
    report.add("backup", "backup CPU, pg_dump", made.tools_cpu_s, "s")
    report.add(
        "backup", "backup CPU, PostgreSQL", pg["backup"], "s", note=f"the command's Python {made.cli_cpu_s:.1f} s"
    )
    report.add("backup", "dump size", size / 1e6, "MB", note=f"custom format, compressed; {size:,} bytes")
    report.add(
        "backup", "restore wall", back.wall_s, "s", note=f"into a fresh database of the same server; {back.output}"
    )
    report.add("backup", "restore CPU, pg_restore and psql", back.tools_cpu_s, "s")
    report.add(
        "backup", "restore CPU, PostgreSQL", pg["restore"], "s", note=f"the command's Python {back.cli_cpu_s:.1f} s"
    )
    scaled = f"measured at {ctx.registered:,} batteries, scaled"
    report.add("backup", "backup wall per million batteries", made.wall_s * per_m, "s", note=scaled)
    report.add("backup", "restore wall per million batteries", back.wall_s * per_m, "s", note=scaled)
    report.add("backup", "dump size per million batteries", size / 1e6 * per_m, "MB", note=scaled)
    different = after.differences(copy)
    if before.checkpoint is None:
        different.append("the source has no checkpoint")
    elif copy.folded_root != before.checkpoint[1]:
        different.append(f"the restored log folds to {copy.folded_root}, its checkpoint says {before.checkpoint[1]}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report.add(
        "backup",
        "restored database differs",
        len(different),
        "differences",
        0,
        "<=",
        note=(f"first: {different[0]}; " if different else "")
        + f"row counts of {len(copy.counts)} tables, newest checkpoint (size {after.checkpoint and after.checkpoint[0]:,}) "
        f"and its root folded from the restored log, ledger hashes; load average {load:.1f}",
    )
    report.backup = {
        "batteries": ctx.registered,
        "rows": rows,
        "database_bytes": db_bytes,
        "dump_bytes": size,
        "backup": _as_dict(made, pg["backup"]),
        "restore": _as_dict(back, pg["restore"]),
        "per_million_batteries": {
            "backup_s": made.wall_s * per_m,
            "restore_s": back.wall_s * per_m,
            "dump_mb": size / 1e6 * per_m,
        },
        "counts": copy.counts,
        "checkpoint_size": None if copy.checkpoint is None else copy.checkpoint[0],
        "differences": different,
        "load_average": load,
    }


def _add_tools(ctx: Ctx, phase: str, tool: str, cmd: Command) -> None:
    """The client programs' and the command's CPU as process groups of the phase (the CPU table shows them;
    the phase's CPU per battery, system, counts them)."""
    cpu = {k: v for k, v in ctx.report.cpu[phase].items() if k not in ("wall_s", "units")}
    # The bench reaped the command within the phase: its CPU (and its children's) counted in the bench's too.
    cpu["bench"] = max(0.0, cpu.get("bench", 0.0) - cmd.cli_cpu_s - cmd.tools_cpu_s)
    cpu |= {tool: cmd.tools_cpu_s, "command": cmd.cli_cpu_s}
    ctx.report.cpu[phase] |= cpu
    ctx.report.record_phase(phase, {"units": ctx.registered, "rate": ctx.registered / cmd.wall_s}, cpu)


def _as_dict(cmd: Command, postgres_cpu_s: float) -> dict[str, Any]:
    return {
        "wall_s": cmd.wall_s,
        "tools_cpu_s": cmd.tools_cpu_s,
        "postgres_cpu_s": postgres_cpu_s,
        "command_cpu_s": cmd.cli_cpu_s,
        "output": cmd.output,
    }
