"""The raw-driver paths run inside the request's transaction: a rollback undoes them."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy import text

from shared.db import SessionDep, asyncpg_dsn, make_engine, make_sessionmaker, raw_connection
from shared.problems import install_problem_handlers


async def test_raw_connection_statements_roll_back_with_the_session(db_url) -> None:
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    try:
        async with maker() as session:
            await session.begin()
            conn = await raw_connection(session)
            await conn.execute("INSERT INTO registry.participants (id, name, role) VALUES ('X', 'X', 'recycler')")
            assert await conn.fetchval("SELECT txid_current_if_assigned() IS NOT NULL")
            await session.rollback()
        async with maker() as session:
            count = (await session.execute(text("SELECT count(*) FROM registry.participants"))).scalar_one()
        assert count == 0
    finally:
        await engine.dispose()


async def test_the_response_is_sent_only_after_the_commit(db_url) -> None:
    """A COMMIT that fails (here: a deferred constraint, checked only at COMMIT) must reach the client as an
    error, never as a success sent before the COMMIT ran; and the transaction's writes are gone."""
    engine = make_engine(db_url)
    app = FastAPI()
    app.state.sessionmaker = make_sessionmaker(engine)
    install_problem_handlers(app)

    @app.post("/things")
    async def things(session: SessionDep) -> dict[str, str]:
        await session.execute(text("INSERT INTO uow_probe (k) VALUES (1), (1)"))  # legal until COMMIT
        return {"status": "stored"}

    setup = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await setup.execute("CREATE TABLE uow_probe (k int, UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)")
        # raise_app_exceptions=False: a 500 reaches the client as it would over a socket.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            r = await client.post("/things")
        assert r.status_code >= 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await setup.fetchval("SELECT count(*) FROM uow_probe") == 0
    finally:
        await setup.close()
        await engine.dispose()


def test_database_errors_are_classified_by_sqlstate_whatever_wraps_them() -> None:
    """A shutting-down, restarting or overloaded server is 'retry shortly' (503), a broken rule is not,
    also when a driver wrapper hides the asyncpg class and only keeps the SQLSTATE."""
    from shared.problems import is_unavailable

    class Wrapped(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate
            self.orig = "a message, not an exception"

    for code in ("57P03", "57P01", "08006", "53300"):
        assert is_unavailable(Wrapped(code)), code
    for code in ("23505", "22P02", "40001"):
        assert not is_unavailable(Wrapped(code)), code
