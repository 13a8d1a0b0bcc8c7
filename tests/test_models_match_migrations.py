"""The SQLModel models are the one declaration of every table: the migrated database must be exactly what
they describe (columns, types, nullability, server defaults, keys, indexes, constraints)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.models import SCHEMAS, metadata


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    if type_ == "schema":
        return name in SCHEMAS
    if type_ == "table":
        return name != "alembic_version"
    return True


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "include_schemas": True,
            "include_name": _include_name,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return list(compare_metadata(context, metadata))


def _index_differences(conn: Connection) -> list[str]:
    """Autogenerate compares an index's columns but not its method, storage parameters or predicate (GIN, partial
    indexes), so build each model index on an empty copy of its table and let PostgreSQL print both definitions."""
    dialect = conn.dialect
    out: list[str] = []
    for n, table in enumerate(metadata.tables.values()):
        copy = f"model_copy_{n}"
        conn.execute(text(f"CREATE TEMP TABLE {copy} (LIKE {table.schema}.{table.name})"))
        for m, index in enumerate(table.indexes):
            options = index.dialect_options["postgresql"]
            where = options["where"]
            predicate = "" if where is None else f" WHERE {where.compile(dialect=dialect)}"
            columns = ", ".join(  # a column by its name, an expression as written
                e.name if isinstance(e, Column) else str(e.compile(dialect=dialect)) for e in index.expressions
            )
            storage = options["with"]  # storage parameters (GIN's fastupdate) print as part of the definition
            params = f" WITH ({', '.join(f'{k} = {v}' for k, v in storage.items())})" if storage else ""
            conn.execute(
                text(
                    f"CREATE INDEX {copy}_{m} ON {copy} USING {options['using'] or 'btree'} ({columns}){params}"
                    f"{predicate}"
                )
            )
            wanted, actual = (
                conn.execute(
                    text("SELECT split_part(pg_get_indexdef(to_regclass(:i)::oid), ' USING ', 2)"), {"i": name}
                ).scalar()
                for name in (f"{copy}_{m}", f"{table.schema}.{index.name}")
            )
            if wanted != actual:
                out.append(f"{table.schema}.{index.name}: model USING {wanted}, database USING {actual}")
    return out


async def test_autogenerate_finds_no_difference_between_models_and_migrated_database(db_url: str) -> None:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], "models and migrations differ:\n" + "\n".join(map(repr, diff))


async def test_every_index_has_the_method_and_predicate_the_migrations_gave_it(db_url: str) -> None:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_index_differences)
            await conn.rollback()
    finally:
        await engine.dispose()
    assert differences == [], "\n".join(differences)


def test_every_table_is_in_a_project_schema() -> None:
    assert {t.schema for t in metadata.tables.values()} == set(SCHEMAS)


def test_shared_code_builds_on_the_tables_each_service_declares() -> None:
    """The outbox relay, the audit trail and the stream positions build their statements on the shared
    mixins' columns for whichever schema they serve; those must be the tables the services declare."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from shared.audit import AuditLogFields
    from shared.db import shared_table
    from shared.outbox import OutboxFields, StreamPositionFields

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    declared = [t for t in metadata.tables.values() if t.name in ("outbox", "audit_log", "stream_positions")]
    assert len(declared) == 7  # outbox: registry, events; audit_log: all three; stream_positions: events, portal
    fields = {"outbox": OutboxFields, "audit_log": AuditLogFields, "stream_positions": StreamPositionFields}
    for table in declared:
        built = shared_table(fields[table.name], table.name, table.schema or "")
        assert str(CreateTable(built).compile(dialect=dialect)) == str(CreateTable(table).compile(dialect=dialect))
