"""`python -m bench` (what `make bench` runs)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from bench.context import Config, Ctx
from bench.load import console
from bench.report import RESULTS, Report
from bench.stack import SERVER_SETTINGS, SHARED_BUFFERS, Stack

PARTS = ("limits", "registry", "events", "portal", "epcis", "relay", "log", "backup")
#: What a run without --only measures: backup is asked for by name (README, "Backups at 1,000,000 batteries").
DEFAULT_PARTS = PARTS[:-1]
app = typer.Typer(add_completion=False, help="The batterytrace benchmarks.")


@app.command()
def main(
    only: Annotated[
        str,
        typer.Option(
            help="Comma-separated parts to measure: limits, registry, events, portal, epcis, relay, log, backup "
            "(the raw limits always run when a part held to one runs: registry, events; backup is not in the "
            "default list).",
        ),
    ] = ",".join(DEFAULT_PARTS),
    batteries: Annotated[int, typer.Option(min=1, help="Batteries to register (the issues ask for 1,000,000).")] = (
        1_000_000
    ),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="A small smoke run (2,000 batteries, a few seconds per phase); explicit options still win."
        ),
    ] = False,
    batch_events: Annotated[int | None, typer.Option(help="Events posted in 1,000-event batches [200,000].")] = None,
    ledger_events: Annotated[
        int,
        typer.Option(
            min=0,
            help="Grow the ledger to this many events (1,000-event batches of INCIDENTs) after the batch-capture "
            "figures, so that the single-event, freshness, history, view, EPCIS and log figures are measured at "
            "that size (issue 16 asks for >= 10,000,000) [0: no growth].",
        ),
    ] = 0,
    single_events: Annotated[int | None, typer.Option(help="Events posted one by one [20,000].")] = None,
    get_requests: Annotated[int | None, typer.Option(help="Registry GETs for the latency figures [20,000].")] = None,
    history_requests: Annotated[int | None, typer.Option(help="Portal history GETs [5,000].")] = None,
    log_pairs: Annotated[
        int | None,
        typer.Option(
            min=1, help="Adjacent log-off/log-on capture runs the log's cost is the median of [4; 2 with --quick]."
        ),
    ] = None,
    log_leaves: Annotated[
        int | None, typer.Option(help="Leaves the log is filled to before timing inclusion proofs [1,000,000].")
    ] = None,
    proof_requests: Annotated[int | None, typer.Option(help="Inclusion proof GETs [20,000].")] = None,
    relay_rows: Annotated[
        int | None, typer.Option(help="Messages the relay part publishes per run [200,000; 2,000 with --quick].")
    ] = None,
    limit_copy_rows: Annotated[int | None, typer.Option(help="Raw limit: ledger-shaped rows by COPY [200,000].")] = (
        None
    ),
    limit_transactions: Annotated[
        int | None, typer.Option(help="Raw limit: single-row transactions on 16 connections [10,000].")
    ] = None,
    limit_requests: Annotated[int | None, typer.Option(help="Raw limit: bare FastAPI requests [20,000].")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn workers per service.")] = 1,
    split: Annotated[
        bool,
        typer.Option(
            "--split",
            help="Run deploy/'s layout: per service an HTTP process, a relay worker and a consumer worker "
            "(default: one process per service, as `make dev`).",
        ),
    ] = False,
    catchup_timeout: Annotated[float, typer.Option(help="Longest wait for a pipeline stage to catch up (s).")] = 3600,
    output: Annotated[str, typer.Option(help="Where to write the JSON results.")] = str(RESULTS / "latest.json"),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary data directory and service logs.")] = False,
    profile: Annotated[
        Path | None,
        typer.Option(
            help="Write a py-spy profile (raw, collapsed stacks) of each service per phase into this "
            "directory, and the SQL statements that took the most database time (pg_stat_statements)."
        ),
    ] = None,
    shared_buffers: Annotated[
        str,
        typer.Option(
            help='PostgreSQL\'s shared_buffers for the run, as a production server is sized ("" keeps the '
            "embedded server's 128 MB default)."
        ),
    ] = SHARED_BUFFERS,
    pg: Annotated[
        list[str] | None,
        typer.Option(
            "--pg",
            help="A PostgreSQL server setting for the run, NAME=VALUE (repeatable); overrides the bench's "
            f"defaults ({', '.join(f'{k}={v}' for k, v in SERVER_SETTINGS.items())}).",
        ),
    ] = None,
    fail_on_miss: Annotated[bool, typer.Option("--fail-on-miss", help="Exit 1 if a target is missed.")] = False,
) -> None:
    """Start a fresh embedded PostgreSQL and tansu broker, the three services as uvicorn processes, drive them
    over HTTP, and print every figure against its target (also written as JSON)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    parts = [p.strip() for p in only.split(",") if p.strip()]
    if {"registry", "events"} & set(parts) and "limits" not in parts:
        parts.insert(0, "limits")  # the ratios their targets are held to need the limits of the same run
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise typer.BadParameter(
            f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}", param_hint="--only"
        )
    server_settings = dict(SERVER_SETTINGS)
    for item in pg or []:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_.]*", name) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
            raise typer.BadParameter(f"{item!r}: NAME=VALUE, e.g. max_wal_size=8GB", param_hint="--pg")
        server_settings[name] = value
    if shared_buffers and not re.fullmatch(r"[0-9]+(kB|MB|GB)?", shared_buffers):
        raise typer.BadParameter(
            f"{shared_buffers!r}: a PostgreSQL size such as 4GB or 512MB", param_hint="--shared-buffers"
        )
    small = quick
    cfg = Config(
        parts=parts,
        batteries=2_000 if quick and batteries == 1_000_000 else batteries,
        batch_events=batch_events if batch_events is not None else (4_000 if small else 200_000),
        ledger_events=ledger_events,
        single_events=single_events if single_events is not None else (1_000 if small else 20_000),
        get_requests=get_requests if get_requests is not None else (1_000 if small else 20_000),
        history_requests=history_requests if history_requests is not None else (500 if small else 5_000),
        view_repeats=5 if small else 20,
        log_compare_events=batch_events if batch_events is not None else (4_000 if small else 200_000),
        log_compare_pairs=log_pairs if log_pairs is not None else (2 if small else 4),
        log_leaves=log_leaves if log_leaves is not None else (50_000 if small else 1_000_000),
        proof_requests=proof_requests if proof_requests is not None else (1_000 if small else 20_000),
        catchup_timeout_s=catchup_timeout,
        relay_rows=relay_rows
        if relay_rows is not None
        else (2_000 if small else 20_000 if batteries <= 10_000 else 200_000),
        limit_copy_rows=limit_copy_rows if limit_copy_rows is not None else (20_000 if small else 200_000),
        limit_transactions=limit_transactions if limit_transactions is not None else (1_000 if small else 10_000),
        limit_requests=limit_requests if limit_requests is not None else (1_000 if small else 20_000),
        workers=workers,
        profile_dir=str(profile) if profile else None,
    )
    services = ["registry"]
    if {"events", "portal", "epcis", "log", "backup"} & set(parts):
        services.append("events")
    if {"portal", "backup"} & set(parts):  # a backup of every schema, the portal's read models filled too
        services.append("portal")
    stack = Stack(
        services=services,
        workers=workers,
        keep=keep,
        sql_stats=profile is not None,
        split=split,
        shared_buffers=shared_buffers,
        server_settings=server_settings,
    )
    report = Report(
        config=asdict(cfg)
        | {
            "services": services,
            "layout": "split" if split else "one process per service",
            "server_settings": {"shared_buffers": shared_buffers} | server_settings,
        }
    )

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        with console.status("starting PostgreSQL, the broker, migrations and the services…"):
            t0 = time.perf_counter()
            stack.start()
            report.part_seconds["start"] = round(time.perf_counter() - t0, 1)
        console.print(
            f"system up in {time.perf_counter() - t0:.1f} s: "
            + " ".join(f"{n}={u}" for n, u in stack.urls.items())
            + f" (data in {stack.base})"
        )
        asyncio.run(run(Ctx(cfg=cfg, stack=stack, report=report)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping…[/]")
        code = 130
    except Exception as exc:
        console.print(f"[red]bench failed: {exc}[/]")
        report.notes.append(f"bench failed: {exc!r}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with console.status("stopping the services, the broker and PostgreSQL…"):
            t0 = time.perf_counter()
            try:
                stack.stop()
            except Exception as exc:  # the figures are measured already: written all the same
                console.print(f"[red]stopping the system failed: {exc}[/]")
                report.notes.append(f"stopping the system failed: {exc!r}")
                code = code or 1
            report.part_seconds["stop"] = round(time.perf_counter() - t0, 1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if report.figures:
        report.print(Console(file=sys.stdout, width=160))
        path = report.write(Path(output))
        console.print(f"results written to {path}")
        if fail_on_miss and not report.as_dict()["all_passed"]:
            code = code or 1
    raise typer.Exit(code)


async def run(ctx: Ctx) -> None:
    from bench import backup, epcis, events, limits, log, portal, registry, relay, sizes

    parts = ctx.cfg.parts
    took = ctx.report.part_seconds
    try:
        if "limits" in parts:
            with timed(took, "limits"):
                await limits.run(ctx)
        ctx.portal_up = "portal" in ctx.stack.urls and await healthy(ctx.stack.urls["portal"])
        with timed(took, "registry"):
            await registry.setup(ctx)
            started = await registry.bulk_register(ctx)
            await registry.catch_up(ctx, started)
            if "registry" in parts:
                await registry.get_latency(ctx)
        if "events" in parts:
            with timed(took, "events"):
                await events.run(ctx)
        if "portal" in parts:
            with timed(took, "portal"):
                if ctx.portal_up:
                    await portal.run(ctx)
                else:
                    ctx.report.add("portal", "portal service", None, "", note="n/a: services/portal does not answer")
        if "epcis" in parts:
            with timed(took, "epcis"):
                await epcis.run(ctx)
        if "relay" in parts:
            with timed(took, "relay"):
                await relay.run(ctx)
        if {"events", "portal"} & set(parts):  # before the log part adds its COPY-filled leaves
            with timed(took, "sizes"):
                await sizes.run(ctx)
        if "log" in parts:  # last: it restarts the events service and grows the log by COPY
            with timed(took, "log"):
                await log.run(ctx)
        if "backup" in parts:  # after every part that writes: the database as the run left it
            with timed(took, "backup"):
                await backup.run(ctx)
    finally:
        await ctx.close()


@contextlib.contextmanager
def timed(into: dict[str, float], part: str) -> Iterator[None]:
    """Wall seconds of a whole part (set-up and catch-up included), for `part_seconds` in the results."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[part] = round(time.perf_counter() - started, 1)


async def healthy(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url + "/healthz")).status_code == 200
    except httpx.HTTPError:
        return False
