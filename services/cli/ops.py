"""Operator commands: streams, dead letters, republish from the system of record, outbox pruning, rebuild."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from pydantic_settings import SettingsConfigDict
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from shared.kafka import KafkaCluster
from shared.settings import KafkaSettings
from shared.streams import stream_report

console = Console()

Bootstrap = Annotated[str, typer.Option(envvar="BT_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")]
Prefix = Annotated[str, typer.Option(envvar="BT_KAFKA_TOPIC_PREFIX", help="Topic name prefix.")]


class OpsKafkaSettings(KafkaSettings):
    """The operator commands' Kafka settings: `BT_KAFKA_*` (security protocol, SASL user and password or
    password file, TLS files), the same fields as every service's `BT_<SERVICE>_KAFKA_*`."""

    model_config = SettingsConfigDict(env_prefix="BT_", extra="ignore")


def ops_kafka(bootstrap: str, prefix: str = "") -> OpsKafkaSettings:
    return OpsKafkaSettings(kafka_bootstrap_servers=bootstrap, kafka_topic_prefix=prefix)


def ops_cluster(bootstrap: str) -> KafkaCluster:
    return KafkaCluster.from_settings(ops_kafka(bootstrap))


def render_report(report: dict[str, Any]) -> Group:
    topics = Table(title="Topics", title_justify="left")
    for col in ("topic", "partitions", "end offsets", "messages"):
        topics.add_column(col)
    for t in report["topics"]:
        offs = " ".join(f"{p}:{o}" for p, o in t["end_offsets"].items())
        topics.add_row(t["topic"], str(t["partitions"]), offs, str(t["messages"]))
    groups = Table(title="Consumer groups (broker offsets)", title_justify="left")
    for col in ("group", "topic", "partition", "committed", "end", "lag"):
        groups.add_column(col)
    for g in report["groups"]:
        for p in g["partitions"]:
            groups.add_row(
                g["group"], p["topic"], str(p["partition"]), str(p["committed"]), str(p["end"]), str(p["lag"])
            )
    app = Table(title="End-to-end lag (application positions)", title_justify="left")
    for col in ("consumer", "topic", "producer", "written", "published", "applied", "lag (events)", "lag (s)"):
        app.add_column(col)
    for a in report["application"]:
        style = "red" if a["lag_events"] else "green"
        app.add_row(
            a["consumer"],
            a["topic"],
            a["producer"],
            str(a["written_position"]),
            str(a["published_position"]),
            str(a["applied_position"]),
            f"[{style}]{a['lag_events']}[/]",
            f"[{style}]{a['lag_seconds']}[/]",
        )
    notes = [f"[red]{s['service']}: {s['error']}[/]" for s in report["services"] if s.get("error")]
    if report.get("error"):
        notes.append(f"[red]broker: {report['error']}[/]")
    return Group(topics, groups, app, *notes)


def streams_command(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    prefix: Prefix = "",
    registry_url: Annotated[str, typer.Option(envvar="BT_REGISTRY_URL")] = "http://127.0.0.1:8001",
    events_url: Annotated[str, typer.Option(envvar="BT_EVENTS_URL")] = "http://127.0.0.1:8002",
    portal_url: Annotated[str, typer.Option(envvar="BT_PORTAL_URL")] = "http://127.0.0.1:8003",
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    """Topics with partitions and end offsets; consumer groups with committed offsets and lag per
    partition; and each consumer's end-to-end lag from the application's own positions (broker offsets
    can be wrong on some brokers)."""
    services = {"registry": registry_url, "events": events_url, "portal": portal_url}
    kafka = ops_cluster(bootstrap)

    def fetch() -> dict[str, Any]:
        return asyncio.run(stream_report(kafka, prefix, services))

    if as_json and not watch:
        typer.echo(json.dumps(fetch(), indent=2))
        return
    if not watch:
        console.print(render_report(fetch()))
        return
    try:
        with Live(render_report(fetch()), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                report = fetch()
                if as_json:
                    typer.echo(json.dumps(report))
                live.update(render_report(report))
    except KeyboardInterrupt:
        pass


# ---- dead letters ----

dlq_app = typer.Typer(help="Inspect and re-drive dead-lettered messages.", no_args_is_help=True)


@dlq_app.command("list")
def dlq_list(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    prefix: Prefix = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every message on the *.dlq topics, with its source, error, consumer and whether it was replayed."""
    from shared.dlq import dlq_topics, read_dead_letters

    kafka = ops_cluster(bootstrap)

    async def run() -> list[Any]:
        return await read_dead_letters(kafka, await dlq_topics(kafka, prefix))

    letters = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps([d.summary() for d in letters], indent=2))
        return
    table = Table(title=f"Dead letters ({len(letters)})", title_justify="left")
    for col in ("ref", "key", "source", "consumer", "replayed", "error"):
        table.add_column(col)
    for d in letters:
        table.add_row(d.ref, d.key or "", d.source, d.consumer, "yes" if d.replayed else "no", d.error[:80])
    console.print(table)


@dlq_app.command("show")
def dlq_show(
    ref: Annotated[str, typer.Argument(help="TOPIC:PARTITION:OFFSET as `dlq list` prints it.")],
    bootstrap: Bootstrap = "127.0.0.1:9092",
) -> None:
    """One dead letter in full: headers and value."""
    from shared.dlq import read_dead_letters

    topic = ref.rsplit(":", 2)[0]
    letters = asyncio.run(read_dead_letters(ops_cluster(bootstrap), [topic]))
    match = [d for d in letters if d.ref == ref]
    if not match:
        console.print(f"[red]no dead letter {ref}[/]")
        raise typer.Exit(1)
    d = match[0]
    typer.echo(json.dumps(d.summary() | {"value": d.value.decode(errors="replace")}, indent=2))


@dlq_app.command("replay")
def dlq_replay(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    prefix: Prefix = "",
    ref: Annotated[str | None, typer.Option(help="Only this TOPIC:PARTITION:OFFSET.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")] = False,
) -> None:
    """Re-drive dead letters not replayed yet to their source topics (after the fix is deployed)."""
    from shared.dlq import dlq_topics, read_dead_letters, replay

    kafka = ops_cluster(bootstrap)

    async def run() -> list[Any]:
        letters = await read_dead_letters(kafka, await dlq_topics(kafka, prefix))
        if ref:
            letters = [d for d in letters if d.ref == ref]
        return await replay(kafka, letters, dry_run=dry_run)

    done = asyncio.run(run())
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(done)} dead letters" + "".join(f"\n  {d.ref} -> {d.source}" for d in done))


# ---- republish and rebuild ----


def _database_url(service: str) -> Any:
    """The service's own database URL (its role: bt_registry, bt_events, bt_portal, which has every right
    the command needs and no other), else BT_DATABASE_URL."""
    env = f"BT_{service.upper()}_DATABASE_URL"
    return typer.Option(
        envvar=[env, "BT_DATABASE_URL"],
        help=f"SQLAlchemy URL (asyncpg) of the database, as the {service} service's role bt_{service} ({env}).",
    )


EventsDatabaseUrl = Annotated[str, _database_url("events")]
RegistryDatabaseUrl = Annotated[str, _database_url("registry")]
PortalDatabaseUrl = Annotated[str, _database_url("portal")]


def _engine_run(database_url: str, job: Any) -> Any:
    from shared.db import make_engine

    async def run() -> Any:
        engine = make_engine(database_url, pool_size=2)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _since(value: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if value else None


events_app = typer.Typer(help="Events service maintenance.", no_args_is_help=True)
registry_app = typer.Typer(help="Registry service maintenance.", no_args_is_help=True)
portal_app = typer.Typer(help="Portal maintenance.", no_args_is_help=True)


@events_app.command("republish")
def events_republish(
    database_url: EventsDatabaseUrl,
    battery: Annotated[str | None, typer.Option(help="Only this battery's events.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events recorded at or after this ISO time.")] = None,
) -> None:
    """Re-publish ledger events to battery.lifecycle.v1 from the ledger itself (the system of record, not the
    outbox, which is pruned): each battery's events in sequence order, with their original event IDs, queued
    for the running relay; consumers apply each once. Works after Kafka lost everything."""
    from services.events.republish import republish

    n = _engine_run(database_url, lambda engine: republish(engine, battery=battery, since=_since(since)))
    typer.echo(f"queued {n} lifecycle messages from the ledger for re-publication")


@registry_app.command("republish")
def registry_republish(
    database_url: RegistryDatabaseUrl,
    battery: Annotated[str | None, typer.Option(help="Only this key (battery, model or participant ID).")] = None,
    since: Annotated[str | None, typer.Option(help="Only records made at or after this ISO time.")] = None,
) -> None:
    """Re-publish the registry to battery.registry.v1 from its tables (participants, battery models,
    batteries, aliases; not the outbox, which is pruned), queued for the running relay."""
    from services.registry.republish import republish

    counts = _engine_run(database_url, lambda engine: republish(engine, key=battery, since=_since(since)))
    typer.echo("queued " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + " for re-publication")


OlderThanDays = Annotated[float, typer.Option(help="Delete published rows sent longer ago than this.")]
_PRUNE_HELP = "Delete published outbox rows (the relay leader does this in the background, see OUTBOX_RETENTION_DAYS)."


@events_app.command("prune-outbox", help=_PRUNE_HELP)
def events_prune_outbox(database_url: EventsDatabaseUrl, older_than_days: OlderThanDays = 7.0) -> None:
    _prune("events", database_url, older_than_days)


@registry_app.command("prune-outbox", help=_PRUNE_HELP)
def registry_prune_outbox(database_url: RegistryDatabaseUrl, older_than_days: OlderThanDays = 7.0) -> None:
    _prune("registry", database_url, older_than_days)


def _prune(schema: str, database_url: str, days: float) -> None:
    from datetime import timedelta

    from shared.outbox import prune

    n = _engine_run(database_url, lambda engine: prune(engine, schema, timedelta(days=days)))
    typer.echo(f"pruned {n} published {schema} outbox rows")


@portal_app.command("rebuild")
def portal_rebuild(
    database_url: PortalDatabaseUrl,
    bootstrap: Bootstrap = "127.0.0.1:9092",
    prefix: Prefix = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop the portal's read models and project them again from battery.registry.v1 and
    battery.lifecycle.v1 (safe while the portal runs)."""
    from rich.progress import Progress

    from services.portal.rebuild import rebuild
    from services.portal.settings import PortalSettings

    if not yes:
        typer.confirm("Drop and rebuild the portal's read models?", abort=True)
    settings = PortalSettings(database_url=database_url, **dict(ops_kafka(bootstrap, prefix)))
    with Progress(console=console) as progress:
        task = progress.add_task("projecting the streams", total=None)
        result = asyncio.run(rebuild(settings, progress=lambda n: progress.advance(task, n)))
    typer.echo(
        f"rebuilt {result['tables']} read-model tables from {result['records']} messages "
        f"({result['poison']} unreadable, left in the dead-letter topics)"
    )
