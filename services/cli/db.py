"""`batterytrace db bootstrap`: the PostgreSQL roles and the database, made once by an administrator before
the owner role runs `batterytrace migrate` (shared/roles.py says who may do what)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url

from shared.db import asyncpg_dsn
from shared.roles import OWNER, SERVICE_ROLES, bootstrap

db_app = typer.Typer(help="PostgreSQL roles and database set-up.", no_args_is_help=True)


def _url(role: str, envvar: str) -> Any:
    return typer.Option(
        envvar=envvar,
        help=f"The URL {role} connects with (a secret): its user must be {role}; its password becomes {role}'s.",
        show_default=False,
    )


def role_passwords(urls: dict[str, str | None]) -> dict[str, str | None]:
    """role -> the password in the URL it connects with, checking that the URL names that role."""
    out: dict[str, str | None] = {}
    for role, url in urls.items():
        if url is None:
            continue
        u = make_url(url)
        if u.username != role:
            raise typer.BadParameter(f"the URL for {role} connects as {u.username!r}; it must connect as {role}")
        out[role] = u.password
    return out


@db_app.command("bootstrap")
def bootstrap_command(
    admin_url: Annotated[
        str,
        typer.Option(
            envvar="BT_ADMIN_DATABASE_URL",
            help="URL of a superuser on any database of the cluster (postgresql+asyncpg://postgres:…@host/postgres).",
        ),
    ],
    owner_url: Annotated[str | None, _url(OWNER, "BT_DATABASE_URL")] = None,
    registry_url: Annotated[str | None, _url(SERVICE_ROLES["registry"], "BT_REGISTRY_DATABASE_URL")] = None,
    events_url: Annotated[str | None, _url(SERVICE_ROLES["events"], "BT_EVENTS_DATABASE_URL")] = None,
    portal_url: Annotated[str | None, _url(SERVICE_ROLES["portal"], "BT_PORTAL_DATABASE_URL")] = None,
    database: Annotated[
        str | None, typer.Option(help="The project's database [the owner URL's, else batterytrace].")
    ] = None,
) -> None:
    """Create the roles bt_owner, bt_registry, bt_events and bt_portal (LOGIN, nothing more), each with the
    password of the URL it connects with (the same secrets the services and `migrate` read: one place for each
    password); create the database, owned by bt_owner, that only these roles may connect to; and hand bt_owner
    whatever an earlier migration made as another role. Idempotent: run it again after changing a password.
    Then run `batterytrace migrate` as bt_owner; the migration grants each service's role its own schema."""
    passwords = role_passwords(
        {
            OWNER: owner_url,
            SERVICE_ROLES["registry"]: registry_url,
            SERVICE_ROLES["events"]: events_url,
            SERVICE_ROLES["portal"]: portal_url,
        }
    )
    name = database or (make_url(owner_url).database if owner_url else None) or "batterytrace"
    changed = asyncio.run(bootstrap(asyncpg_dsn(admin_url), name, passwords, create=True))
    with_password = sorted(r for r, p in passwords.items() if p)
    typer.echo(
        f"roles ready (passwords set: {', '.join(with_password) or 'none'}); database {name} owned by {OWNER}"
        + (f"; {changed} objects handed to {OWNER}" if changed else "")
    )
