"""`batterytrace db bootstrap`: the PostgreSQL roles and the database, made once by an administrator before
the owner role runs `batterytrace migrate` (shared/roles.py says who may do what)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from shared.db import asyncpg_dsn
from shared.roles import OWNER, SERVICE_ROLES, bootstrap

db_app = typer.Typer(help="PostgreSQL roles and database set-up.", no_args_is_help=True)


def _password(role: str) -> Annotated[str | None, typer.Option]:
    env = f"BT_{role.removeprefix('bt_').upper()}_DB_PASSWORD"
    return typer.Option(
        envvar=env, help=f"Password of {role}: pass it through the environment, from a secret.", show_default=False
    )


@db_app.command("bootstrap")
def bootstrap_command(
    admin_url: Annotated[
        str,
        typer.Option(
            envvar="BT_ADMIN_DATABASE_URL",
            help="URL of a superuser (CREATEROLE, CREATEDB) on any database of the cluster, e.g. "
            "postgresql://postgres:…@host:5432/postgres.",
        ),
    ],
    database: Annotated[str, typer.Option(help="The project's database (created when missing).")] = "batterytrace",
    owner_password: Annotated[str | None, _password(OWNER)] = None,
    registry_password: Annotated[str | None, _password(SERVICE_ROLES["registry"])] = None,
    events_password: Annotated[str | None, _password(SERVICE_ROLES["events"])] = None,
    portal_password: Annotated[str | None, _password(SERVICE_ROLES["portal"])] = None,
) -> None:
    """Create the roles bt_owner, bt_registry, bt_events and bt_portal (LOGIN, nothing more) or set their
    passwords, create DATABASE owned by bt_owner that only these roles may connect to, and hand bt_owner
    whatever an earlier migration made as another role. Idempotent: run it again after changing a password.
    Then run `batterytrace migrate` as bt_owner; it grants each service's role its own schema."""
    passwords = {
        OWNER: owner_password,
        SERVICE_ROLES["registry"]: registry_password,
        SERVICE_ROLES["events"]: events_password,
        SERVICE_ROLES["portal"]: portal_password,
    }
    changed = asyncio.run(bootstrap(asyncpg_dsn(admin_url), database, passwords, create=True))
    set_ = sorted(r for r, p in passwords.items() if p)
    typer.echo(
        f"roles ready ({', '.join(passwords)}; passwords set: {', '.join(set_) or 'none'}); database {database} "
        f"owned by {OWNER}" + (f"; {changed} objects handed to {OWNER}" if changed else "")
    )
