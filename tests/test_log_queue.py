"""The log's queue (events.log_pending): one row per ledger INSERT statement, moved from one row per event
(events.log_queue) with events still queued moving over in their order, both ways; and the sequencer's take,
which starts after the last row it took, still takes a row that commits after higher ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from alembic import command

from shared.db import asyncpg_dsn
from shared.migrate import alembic_config
from shared.roles import service_url
from tests.conftest import eventually
from tests.events_helpers import stack

BEFORE, AFTER = "b68aabc61b46", "7c1f0e2d9a4b"


async def alembic(url: str, verb: str, revision: str) -> None:
    await asyncio.to_thread(getattr(command, verb), alembic_config(url), revision)


async def test_queued_events_move_over_in_order_both_ways(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM events.log_pending") == 0
        await alembic(db_url, "downgrade", BEFORE)
        queued = [(f"B{i % 3}", i, f"{i:064x}") for i in range(1, 2502)]  # more than two 1,000-event rows
        await conn.executemany("INSERT INTO events.log_queue (battery_id, sequence, hash) VALUES ($1, $2, $3)", queued)
        await alembic(db_url, "upgrade", AFTER)
        rows = await conn.fetch("SELECT events, battery_ids, sequences, hashes FROM events.log_pending ORDER BY id")
        assert [r["events"] for r in rows] == [1000, 1000, 501]
        moved = [t for r in rows for t in zip(r["battery_ids"], r["sequences"], r["hashes"], strict=True)]
        assert moved == queued
        assert await conn.fetchval("SELECT to_regclass('events.log_queue')") is None

        await alembic(db_url, "downgrade", BEFORE)
        back = await conn.fetch("SELECT battery_id, sequence, hash FROM events.log_queue ORDER BY id")
        assert [tuple(r) for r in back] == queued
        await alembic(db_url, "upgrade", "head")
        assert await conn.fetchval("SELECT sum(events) FROM events.log_pending") == len(queued)
    finally:
        await conn.close()


async def test_one_ledger_statement_is_one_queue_row_in_battery_and_sequence_order(db_url: str) -> None:
    """Written straight into the ledger (as the superuser, the trigger fires for every INSERT): the statement's
    three rows are one queue row, ordered by battery and sequence, not by the order the statement listed them."""
    stand_in = {"uuid": "gen_random_uuid()", "jsonb": "'{}'::jsonb", "timestamp with time zone": "now()"}
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'events' AND table_name = 'ledger' AND is_nullable = 'NO' AND column_default IS NULL"
        )
        given = {"battery_id": "r.b", "sequence": "r.s", "hash": "r.h"}
        names = [c["column_name"] for c in columns]
        values = [given.get(c["column_name"]) or stand_in.get(c["data_type"], "'x'") for c in columns]
        rows = [("Z9", 1, "c" * 64), ("A1", 2, "b" * 64), ("A1", 1, "a" * 64)]
        await conn.execute(
            f"INSERT INTO events.ledger ({', '.join(names)}) SELECT {', '.join(values)} "
            "FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS r(b, s, h, n) ORDER BY r.n",
            *map(list, zip(*rows, strict=True)),
        )
        queued = await conn.fetch("SELECT events, battery_ids, sequences, hashes FROM events.log_pending")
        assert len(queued) == 1
        q = queued[0]
        assert q["events"] == 3
        assert list(zip(q["battery_ids"], q["sequences"], q["hashes"], strict=True)) == sorted(rows)
    finally:
        await conn.close()


async def test_a_row_committing_after_higher_ones_still_enters_the_log(
    make_settings: Any, token: Any, db_url: str
) -> None:
    """A capture takes its queue row's ID at INSERT and is seen at COMMIT: a slow one commits after rows with
    higher IDs were taken. The take starts after the highest ID it took (the queue's dead entries below are not
    walked each time), waits at the gap, and sweeps from the start, so the late row is sequenced all the same."""
    pending = "INSERT INTO events.log_pending (events, battery_ids, sequences, hashes) VALUES (1, $1, '{1}', $2)"
    async with stack(make_settings, token, log_sequencer_interval_s=0.02, log_checkpoint_interval_s=0.2):
        slow = await asyncpg.connect(asyncpg_dsn(db_url))
        fast = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            late = slow.transaction()
            await late.start()
            await slow.execute(pending, ["LATE"], ["1" * 64])  # takes the lower ID, commits last
            for i in range(3):
                await fast.execute(pending, [f"EARLY{i}"], [f"{i + 2}" * 64])

            async def leaves() -> list[str]:
                rows = await fast.fetch("SELECT battery_id FROM events.log_leaves ORDER BY leaf_index")
                return [r["battery_id"] for r in rows]

            await eventually(lambda: _has(leaves, {"EARLY0", "EARLY1", "EARLY2"}))
            await asyncio.sleep(0.3)  # several takes after the gap
            assert "LATE" not in await leaves()
            await late.commit()
            await eventually(lambda: _has(leaves, {"LATE"}))
            logged = await leaves()
            assert logged.count("LATE") == 1 and logged.index("LATE") > logged.index("EARLY2")
            assert await fast.fetchval("SELECT count(*) FROM events.log_pending") == 0
        finally:
            await slow.close()
            await fast.close()


async def _has(leaves: Any, wanted: set[str]) -> bool:
    return wanted <= set(await leaves())


async def test_a_big_statement_is_queued_uncompressed(db_url: str) -> None:
    """A 1,000-event statement's arrays go to TOAST as they are (`STORAGE EXTERNAL`): compressing the hex hashes
    cost the trigger more than it saved, as the queue holds a row only until the sequencer takes it."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        storage = await conn.fetch(
            "SELECT attname, attstorage::text FROM pg_attribute WHERE attrelid = 'events.log_pending'::regclass "
            "AND attname = ANY($1::text[])",
            ["battery_ids", "sequences", "hashes"],
        )
        assert {r["attname"]: r["attstorage"] for r in storage} == {"battery_ids": "e", "sequences": "e", "hashes": "e"}
        tx = conn.transaction()  # rolled back: no sequencer ever sees the row
        await tx.start()
        try:
            await conn.execute(
                "INSERT INTO events.log_pending (events, battery_ids, sequences, hashes) VALUES (1000, $1, $2, $3)",
                [f"UNCOMPRESSED-{i:04d}" for i in range(1000)],
                list(range(1, 1001)),
                [f"{i:064x}" for i in range(1000)],
            )
            row = await conn.fetchrow(
                "SELECT pg_column_compression(hashes) AS c, pg_column_size(hashes) AS size FROM events.log_pending "
                "WHERE battery_ids[1] = 'UNCOMPRESSED-0000'"
            )
            assert (
                row["c"] is None and row["size"] > 64_000
            )  # stored whole: 1,000 hashes of 64 characters, uncompressed
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def test_a_malformed_queue_row_is_set_aside_and_the_log_goes_on(
    make_settings: Any, token: Any, db_url: str
) -> None:
    """The events role may insert queue rows (the ledger's trigger runs as it), so a compromised events service
    could write one that no take can append: a hash that is not hex or of odd length, a NULL, arrays of another
    length than the row counts. Each used to fail every take, and the log stopped. Each is now left in the queue
    as evidence and reported once, and the rows after it, and any still to come, enter the log."""
    pending = "INSERT INTO events.log_pending (events, battery_ids, sequences, hashes) VALUES ($1, $2, $3, $4)"
    malformed: list[tuple[Any, ...]] = [
        (1, ["BAD-HEX"], [1], ["zz" * 32]),
        (1, ["BAD-ODD"], [1], ["a" * 63]),
        (1, ["BAD-SHORT"], [1], ["ab" * 31]),
        (1, ["BAD-NULL"], [1], [None]),
        (2, ["BAD-COUNT", "BAD-COUNT"], [1, 2], ["cd" * 32]),
        (1, [None], [1], ["ef" * 32]),
        (-1, ["BAD-EVENTS"], [1], ["01" * 32]),
        (2_000_000_000, ["BAD-HUGE"], [1], ["02" * 32]),  # a count that takes a take's whole budget
    ]
    reports: list[str] = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda record: reports.append(record.getMessage())  # type: ignore[method-assign]
    sequencer_log = logging.getLogger("batterytrace.events.log")  # the app's logging setup replaces the root's
    async with stack(make_settings, token, log_sequencer_interval_s=0.02, log_checkpoint_interval_s=0.2):
        sequencer_log.addHandler(catch)
        conn = await asyncpg.connect(asyncpg_dsn(service_url(db_url, "events")))
        try:
            await conn.execute(pending, 1, ["GOOD-BEFORE"], [1], ["1" * 64])
            async with conn.transaction():  # seen by one take: reported together
                bad_ids = [await conn.fetchval(pending + " RETURNING id", *row) for row in malformed]
                await conn.execute(pending, 2, ["GOOD-AFTER", "GOOD-AFTER"], [1, 2], ["2" * 64, "3" * 64])

            async def leaves() -> list[str]:
                rows = await conn.fetch("SELECT battery_id FROM events.log_leaves ORDER BY leaf_index")
                return [r["battery_id"] for r in rows]

            await eventually(lambda: _has(leaves, {"GOOD-BEFORE", "GOOD-AFTER"}))
            await asyncio.sleep(0.3)  # more takes, and a sweep from the start
            await conn.execute(pending, 1, ["GOOD-LATER"], [1], ["4" * 64])
            await eventually(lambda: _has(leaves, {"GOOD-LATER"}))
            logged = await leaves()
            assert logged == ["GOOD-BEFORE", "GOOD-AFTER", "GOOD-AFTER", "GOOD-LATER"]
            left = await conn.fetch("SELECT id FROM events.log_pending ORDER BY id")
            assert [r["id"] for r in left] == bad_ids  # kept as evidence, nothing else left behind
        finally:
            await conn.close()
            sequencer_log.removeHandler(catch)
    reports = [r for r in reports if "malformed" in r]
    assert len(reports) == 1 and all(str(i) in reports[0] for i in bad_ids), reports  # each reported once
