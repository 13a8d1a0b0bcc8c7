"""Async SQLAlchemy on asyncpg: one engine per process, one unit of work per request."""

from __future__ import annotations

import contextlib
import functools
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated, Any, ClassVar

import asyncpg
import orjson
from fastapi import Depends, Request
from sqlalchemy import Column, DateTime, MetaData, Table, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import registry
from sqlalchemy.util import await_
from sqlmodel import SQLModel
from sqlmodel.main import get_column_from_field

# Alembic and the models share these names, so constraints are named the same everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))):
    """Base of every table model (`class X(Base, table=True)`): one metadata for every schema, which
    Alembic compares with the database, with the naming conventions the migrations used. Repositories
    build their statements on `Model.__table__` (SQLAlchemy Core)."""

    __table__: ClassVar[Table]


@functools.cache
def shared_table(fields: type[SQLModel], name: str, schema: str) -> Table:
    """The table that a mixin of columns shared by several services (`OutboxFields`, `AuditLogFields`,
    `StreamPositionFields`) describes, in any schema: what shared code builds its statements on. Each service
    declares its own table from the same mixin; the relay also serves schemas no service declares (the
    bench's scratch outbox)."""
    columns = []
    for field_name, field in fields.model_fields.items():
        column = get_column_from_field(field)
        column.name = column.key = field_name
        columns.append(column)
    return Table(name, MetaData(naming_convention=NAMING_CONVENTION), *columns, schema=schema)


def shared_model(fields: type[SQLModel], name: str, schema: str, *table_args: Any) -> type[Base]:
    """A service's table model made from a mixin of columns shared by several services, in the service's schema:
    how each declares its own outbox, audit log and stream positions. Named after schema and table (`EventsOutbox`),
    so each is its own class in the ORM's registry."""
    class_name = "".join(part.title() for part in f"{schema}_{name}".split("_"))

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(
            __module__=fields.__module__, __tablename__=name, __table_args__=(*table_args, {"schema": schema})
        )

    return types.new_class(class_name, (fields, Base), {"table": True}, body)


#: timestamptz, the only timestamp type the schemas use.
TZ = DateTime(timezone=True)

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def pg_type(column: Column[Any]) -> str:
    """The column's PostgreSQL type, as written in a cast (`TEXT`, `JSONB`, `TIMESTAMP WITH TIME ZONE`)."""
    return str(column.type.compile(dialect=_PG))


def qualified(table: Table) -> str:
    """`schema.name`, for statements sent straight to asyncpg."""
    return f"{table.schema}.{table.name}"


def names(columns: Sequence[Column[Any]]) -> str:
    return ", ".join(c.name for c in columns)


def select_list(columns: Sequence[Column[Any]]) -> str:
    """The columns as asyncpg should return them to a repository: by name, UUIDs as text (as SQLAlchemy's
    `UUID(as_uuid=False)` returns them)."""
    return ", ".join(f"{c.name}::text AS {c.name}" if isinstance(c.type, postgresql.UUID) else c.name for c in columns)


def column_arrays(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[Column[Any]], *, missing_as_null: bool = False
) -> list[list[Any]]:
    """One array per column of `rows` (mappings by column name), for `unnest(...)`; JSONB values as JSON
    text. With `missing_as_null`, a row without a column's key gives NULL."""
    out: list[list[Any]] = []
    for c in columns:
        name = c.name
        values = [r.get(name) for r in rows] if missing_as_null else [r[name] for r in rows]
        if isinstance(c.type, postgresql.JSONB):
            values = [json_text(v) for v in values]
        out.append(values)
    return out


def column_values(row: Mapping[str, Any], columns: Sequence[Column[Any]]) -> list[Any]:
    """The values of one row (a mapping by column name) in column order; JSONB values as JSON text."""
    return [a[0] for a in column_arrays([row], columns)]


def unnest(columns: Sequence[Column[Any]], start: int = 1, *, json_text: bool = False) -> str:
    """`unnest($1::TEXT[], $2::INTEGER[], ...)`: one array parameter per column, typed as the column, for the
    set-based statements sent straight to asyncpg (generated once, at import). With `json_text`, JSONB columns
    take text arrays (`$3::TEXT[]::JSONB[]`): JSON text (`column_arrays`) is then stored as the JSON it is on any
    connection, also one that encodes JSONB parameters itself (the statement pool's, `_init_reader`)."""
    return "unnest(" + ", ".join(f"${i}::{_param_type(c, json_text)}[]" for i, c in enumerate(columns, start)) + ")"


def insert_rows(table: Table, columns: Sequence[Column[Any]], start: int = 1) -> str:
    """`INSERT INTO schema.table (columns) SELECT * FROM unnest(...)`: a set of rows given as one array parameter
    per column (`column_arrays`), from `$start` on; the caller adds its ON CONFLICT and RETURNING."""
    return f"INSERT INTO {qualified(table)} ({names(columns)}) SELECT * FROM {unnest(columns, start)}"


def insert_row(table: Table, columns: Sequence[Column[Any]]) -> str:
    """`INSERT INTO schema.table (columns) VALUES ($1::TYPE, ...)`: one row, a parameter per column typed as the
    column (`column_values`)."""
    values = ", ".join(f"${i}::{pg_type(c)}" for i, c in enumerate(columns, 1))
    return f"INSERT INTO {qualified(table)} ({names(columns)}) VALUES ({values})"


def _param_type(column: Column[Any], json_text: bool) -> str:
    return "TEXT[]::JSONB" if json_text and isinstance(column.type, postgresql.JSONB) else pg_type(column)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_text(value: Any) -> str | None:
    """A JSON or JSONB parameter as JSON text, as statements sent straight to asyncpg take it (None: NULL)."""
    return None if value is None else _json_dumps(value)


def make_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    """The service's engine. Every connection is pinged when the pool hands it out: the set-based paths talk
    to the asyncpg connection directly, where SQLAlchemy cannot see a dead connection and invalidate the pool,
    so without a ping every pooled connection would fail once after a PostgreSQL restart (measured: consumers
    took > 90 s to recover). The ping is one simple-protocol `SELECT 1` (`_ping`), not `pool_pre_ping`'s: SQLAlchemy's
    asyncpg ping is three round trips (BEGIN, `;`, ROLLBACK), which under load were a third of a single
    event's statements."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_recycle=1800,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    event.listen(engine.sync_engine, "handle_error", _out_of_step_is_a_disconnect)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    return engine


def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pool's checkout hook (SQLAlchemy's documented pessimistic-disconnect pattern): one query in the
    simple protocol (no prepared statement, no transaction: fine behind PgBouncer's transaction mode too; an
    empty query would do, but asyncpg fails on its missing command tag). A dead or out-of-step connection
    raises InvalidatePoolError, on which the pool, as after a failed pre-ping, drops every connection older
    than now (a server restart ended them all) and hands out a fresh one before anyone uses this one."""
    try:
        await_(dbapi_connection.driver_connection.execute("SELECT 1"))
    except Exception as exc:
        raise InvalidatePoolError(f"pooled connection failed its ping: {exc!r}") from exc


def _out_of_step_is_a_disconnect(context: ExceptionContext) -> None:
    """A connection whose protocol state asyncpg lost (it read the server's "terminating connection" while
    idle, and the socket has not closed yet) can never be used again, but the dialect only counts a closed
    socket as a disconnect. Counted as one, the pool drops it; on a pre-ping, the pool reconnects at once."""
    if any(isinstance(e, asyncpg.exceptions.InternalClientError) for e in _chain(context.original_exception)):
        context.is_disconnect = True


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed when the handler returns, rolled back if it raises."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session, session.begin():
        yield session


# scope="function": the commit runs when the handler returns and *before* the response is sent. FastAPI's
# default ("request") runs a yield dependency's exit code after the response has gone out, so a client
# could read 201 for a transaction whose COMMIT then failed (e.g. PostgreSQL restarting), and a 201 from
# the registry could reach the events service before the battery was visible.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def raw_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under a session, inside the session's transaction (for COPY, arrays and
    the other set-based paths). SQLAlchemy begins the database transaction lazily, on its first own
    statement; statements sent straight to the driver would otherwise run outside it (autocommit),
    losing both atomicity and row locks. So make sure BEGIN has been sent."""
    conn: AsyncConnection = await session.connection()
    raw = await conn.get_raw_connection()
    adapter = raw.dbapi_connection
    if getattr(adapter, "_transaction", True) is None and getattr(adapter, "isolation_level", "") != "autocommit":
        start = getattr(adapter, "_start_transaction", None)
        if start is not None:
            await start()
        else:  # pragma: no cover - another SQLAlchemy adapter shape
            await conn.exec_driver_sql("SELECT 1")
    return raw.driver_connection


async def _init_reader(conn: asyncpg.Connection) -> None:
    """json/jsonb decoded as SQLAlchemy's connections decode them, so repositories see dicts either way."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_json_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_as_is(conn: asyncpg.Connection) -> None:
    """Statement-pool users run outside a transaction and set nothing on the session, so the pool's
    default reset (a round trip of RESET ALL, UNLISTEN, CLOSE ALL…) has nothing to undo."""


async def make_statement_pool(url: str, size: int) -> asyncpg.Pool:
    """A plain asyncpg pool for autocommit statements: the hot reads and the audit record of a read (no ORM
    session, no BEGIN/COMMIT, no pre-ping: asyncpg drops a connection the server closed as soon as it
    notices, so after a restart a reader gets a fresh one). Connects lazily, so a service starts while
    PostgreSQL is still down."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(url), min_size=0, max_size=size, init=_init_reader, reset=_keep_as_is
    )
    return pool


@contextlib.asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the statement pool. The pool's reset does nothing (`_keep_as_is`), so a connection that
    failed for the connection's sake (the server ended it; asyncpg out of step) would go back in as it is; it
    is closed instead, and the next user gets a fresh one."""
    async with pool.acquire() as conn:
        try:
            yield conn
        except Exception as exc:
            from shared.problems import is_unavailable

            if is_unavailable(exc):
                conn.terminate()
            raise


async def get_reader(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for reads in autocommit: the cheap path for lookups. Under READ COMMITTED a
    transaction would not give several statements one snapshot either, so reads lose nothing by it;
    anything that writes more than one statement belongs in a unit of work (SessionDep)."""
    async with pooled(request.app.state.statement_pool) as conn:
        yield conn


ReaderDep = Annotated[asyncpg.Connection, Depends(get_reader, scope="function")]


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL -> plain libpq/asyncpg DSN."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def row_dict(row: Any) -> dict[str, Any]:
    """A result mapping as a plain dict with plain-str keys (SQLAlchemy's quoted_name trips orjson)."""
    return {str(k): v for k, v in row.items()}


def json_value(value: Any) -> Any:
    """A json/jsonb column read through the raw driver: SQLAlchemy's codec decodes it already; a plain
    asyncpg connection gives text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
