"""`batterytrace audit prune`: delete audit records older than the retention (at least 5 years, PIPA and the
ministries' own rules; README "Retention"). The database refuses any deletion of a younger record whoever asks
(the append-only trigger lets only rows older than 5 years go), so a wrong setting cannot shorten it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy import text

#: The shortest retention (days): five years, leap days included. The trigger enforces `interval '5 years'`.
MIN_RETENTION_DAYS = 5 * 365 + 2
SCHEMAS = ("registry", "events", "portal")

audit_app = typer.Typer(help="The audit log of reads of non-public data.", no_args_is_help=True)


async def prune(database_url: str, keep_days: int) -> dict[str, int]:
    """Delete, in each service's audit log, the records older than `keep_days` days. Returns the count per schema."""
    from shared.db import make_engine

    if keep_days < MIN_RETENTION_DAYS:
        raise ValueError(f"the audit log is kept at least {MIN_RETENTION_DAYS} days (5 years), not {keep_days}")
    engine = make_engine(database_url)
    deleted: dict[str, int] = {}
    try:
        async with engine.begin() as conn:
            for schema in SCHEMAS:
                result = await conn.execute(
                    text(f"DELETE FROM {schema}.audit_log WHERE at < now() - make_interval(days => :days)"),
                    {"days": keep_days},
                )
                deleted[schema] = result.rowcount
    finally:
        await engine.dispose()
    return deleted


@audit_app.command("prune")
def prune_command(
    database_url: Annotated[
        str, typer.Option(envvar="BT_DATABASE_URL", help="SQLAlchemy URL (asyncpg) of a role that owns the schemas.")
    ],
    keep_days: Annotated[
        int,
        typer.Option(
            envvar="BT_AUDIT_RETENTION_DAYS",
            min=MIN_RETENTION_DAYS,
            help=f"Keep records this many days (at least {MIN_RETENTION_DAYS}, 5 years).",
        ),
    ] = MIN_RETENTION_DAYS,
) -> None:
    """Delete audit records older than the retention, in the three services' audit logs (run it daily, e.g. as a
    CronJob next to backups; it deletes nothing younger than 5 years whatever it is given)."""
    deleted = asyncio.run(prune(database_url, keep_days))
    typer.echo(f"deleted {sum(deleted.values())} audit records older than {keep_days} days " + str(deleted))
