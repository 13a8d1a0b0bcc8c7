"""The raw-driver paths run inside the request's transaction: a rollback undoes them."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import make_engine, make_sessionmaker, raw_connection


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
