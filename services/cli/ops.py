"""Operator commands: streams, dead letters, republish."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from shared.streams import stream_report

console = Console()

Bootstrap = Annotated[str, typer.Option(envvar="BT_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")]
Prefix = Annotated[str, typer.Option(envvar="BT_KAFKA_TOPIC_PREFIX", help="Topic name prefix.")]


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

    def fetch() -> dict[str, Any]:
        return asyncio.run(stream_report(bootstrap, prefix, services))

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
