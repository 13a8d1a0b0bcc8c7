"""The ledger verifier's working set is bounded by events, not only by batteries: a sweep holds the chains of
at most `max_rows` events at once (or one battery's, if longer), so a ledger of few long chains is not read
whole (the soak's 24 batteries: every sweep read its whole ledger, 21 MiB of RSS at 12,000 events)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from tests.events_helpers import Stack, stack


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def test_a_sweep_reads_chains_a_few_events_at_a_time_and_still_checks_them_all(
    s: Stack, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.events.ledger import repository as ledger_repo

    batteries = [await s.battery() for _ in range(4)]
    for bid in batteries:
        for _ in range(2):
            await s.ok(bid, "INCIDENT", "inspector")  # chains of 3 events: registration and two incidents
    long_one = batteries[0]
    for _ in range(4):
        await s.ok(long_one, "INCIDENT", "inspector")  # 7 events, longer than a sweep's bound alone
    real_chains_of = ledger_repo.chains_of
    read: list[int] = []

    async def counting(conn, battery_ids):  # type: ignore[no-untyped-def]
        rows = await real_chains_of(conn, battery_ids)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(ledger_repo, "chains_of", counting)
    verifier = s.events.app.state.ledger_verifier
    verifier.max_rows = 6
    assert await verifier.sweep() == {}
    assert sum(read) == 7 + 3 * 3, "every chain once"
    assert all(n <= 6 for n in read if n != 7), read  # the long chain alone, the others at most 6 events at a time
    assert 7 in read and len(read) >= 3

    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE events.ledger SET actor = 'SOMEONE' WHERE battery_id = $1 AND sequence = 2", batteries[-1]
        )
    finally:
        await conn.close()
    broken = await verifier.sweep()
    assert list(broken) == [batteries[-1]], "a chain in the last part is checked too"
