"""The relay leader's claim cursor (shared.outbox.ClaimCursor): claims start after the last ID claimed, but an ID
committed after a higher one was claimed is never skipped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.db import asyncpg_dsn, make_engine
from shared.outbox import MAX_WAITED_RANGES, ClaimCursor, OutboxRelay, Snapshot
from tests.conftest import eventually, read_topic

SCHEMA = "events"
TOPIC = "relay.cursor.test.v1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snap(xmin: int, xid: int | None = None) -> Snapshot:
    """A claim's snapshot `xmin` and its own transaction ID (by default the next after xmin: nothing else running)."""
    return Snapshot(xmin, xmin if xid is None else xid)


def test_the_first_claim_waits_at_lower_ids_until_nothing_older_runs() -> None:
    """A new leader's first claim (a sweep from the start) may come while lower IDs are still in flight; the next
    claim whose xmin has passed the first one's transaction gives up what was not there (sent before, or rolled back)."""
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    assert cursor.start() == 0
    cursor.claimed([5, 6, 7], snap(50, 60))
    assert cursor.start() == 0  # 1..4 waited at
    cursor.claimed([8], snap(60, 61))
    assert cursor.start() == 8


def test_an_id_a_claim_did_not_return_is_waited_at_until_claimed() -> None:
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    cursor.start()
    cursor.claimed([1, 2], snap(50))
    assert cursor.start() == 2
    cursor.claimed([3, 5, 6], snap(50, 60))  # 4 not committed yet (or rolled back)
    assert cursor.start() == 3
    clock.now += 1
    cursor.claimed([4, 7], snap(55, 70))
    assert cursor.start() == 7


def test_a_missing_id_is_waited_at_however_long_its_transaction_stays_open() -> None:
    """The wait is not a timeout: a transaction slow to commit is waited for past any sweep period (a timeout
    would let the next row of the same battery be claimed before it)."""
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    cursor.start()
    cursor.claimed([1, 3], snap(50, 60))  # 2's transaction is below xmax 60
    for minute in range(1, 6):
        clock.now += 60
        assert cursor.start() == 0  # a sweep is due every time here...
        cursor.claimed([3 + minute], snap(59, 60 + minute))  # ...and xmin is held at 59 by 2's transaction
        assert cursor.start() == 1  # still waiting below 2


def test_a_missing_id_is_given_up_once_every_transaction_that_could_hold_it_has_ended() -> None:
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    cursor.claimed([1, 3], snap(50, 60))
    cursor.claimed([4], snap(59, 61))  # 2 may still be open (xmin 59 < 60)
    assert cursor.start() == 1
    cursor.claimed([5], snap(60, 62))  # every transaction below 60 has ended, and 2 is still not there: rolled back
    assert cursor.start() == 5


def test_an_id_above_the_last_returned_is_not_judged_by_that_claim() -> None:
    """A claim's LIMIT may end before a waited ID: not returning it says nothing about it."""
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    cursor.claimed([1, 2, 5], snap(50, 60))  # 3, 4 waited at
    cursor.claimed([3], snap(70, 80))  # a claim cut short after 3
    assert cursor.waiting == [(4, 4, 60)]


def test_a_gap_of_any_size_is_waited_at_as_one_range() -> None:
    """Concurrent batches of thousands of events leave gaps of tens of thousands of IDs: none is skipped for being
    too many (a cap on waited IDs let the cursor jump past a big gap, and a late batch's rows fall behind the next
    rows of the same batteries)."""
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    cursor.claimed([1], snap(50, 60))
    cursor.claimed([100_002], snap(55, 61))  # 2..100,001 in flight
    assert cursor.waiting == [(2, 100_001, 61)]
    assert cursor.start() == 1
    cursor.claimed(list(range(2, 50_002)), snap(58, 62))  # half of them committed, the rest still in flight
    assert cursor.waiting == [(50_002, 100_001, 61)]
    cursor.claimed([100_003], snap(61, 63))  # every transaction below 61 has ended: the rest rolled back
    assert cursor.waiting == [] and cursor.start() == 100_003


def test_many_separate_gaps_are_merged_into_one_range_never_dropped() -> None:
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    every_other = list(range(1, 2 * (MAX_WAITED_RANGES + 10), 2))  # a gap after each
    cursor.claimed(every_other, snap(50, 60))
    assert cursor.waiting == [(2, every_other[-1] - 1, 60)]  # coarser: the claimed IDs inside are walked again
    cursor.claimed([every_other[-1] + 1], snap(59, 61))
    assert cursor.start() == 1  # still waited at
    cursor.claimed([every_other[-1] + 2], snap(60, 62))
    assert cursor.waiting == [] and cursor.start() == every_other[-1] + 2


def test_a_sweep_claiming_stragglers_below_the_cursor_keeps_the_cursor() -> None:
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    cursor.start()
    cursor.claimed([10, 11], snap(50))
    cursor.claimed([12], snap(51))
    assert cursor.start() == 12
    clock.now += 3
    assert cursor.start() == 0
    cursor.claimed([4], snap(52))  # requeued
    assert cursor.start() == 12


def test_a_look_that_finds_nothing_gives_up_what_no_running_transaction_can_hold() -> None:
    """The end of a batch load: the last claims leave a range waited at (here merged from many gaps, so it holds
    IDs already sent that no claim will return again), and no row comes after it. The idle leader's check finds
    nothing from below the range; once its snapshot's xmin has passed the claim that first missed the range, the
    range is given up, and the next checks start after the highest ID claimed (they walked every sent row's dead
    index entry above the range before)."""
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    every_other = list(range(1, 2 * (MAX_WAITED_RANGES + 10), 2))
    cursor.claimed(every_other, snap(50, 60))  # one merged range, missed first by the claim of transaction 60
    cursor.claimed(list(range(2, every_other[-1], 2)), snap(55, 61))  # the rest commit and are claimed
    stuck = cursor.start()
    assert cursor.waiting and stuck < 10  # the range still stands: the IDs in it that were sent never return
    cursor.found_none(59)  # a transaction below 60 may still run: it may yet commit a row in the range
    assert cursor.waiting and cursor.start() == stuck
    cursor.found_none(60)  # every transaction below 60 has ended, and nothing is unsent above the start
    assert cursor.waiting == [] and cursor.start() == every_other[-1]


def test_an_empty_claim_gives_up_the_same() -> None:
    cursor = ClaimCursor(sweep_s=2.0, clock=Clock())
    cursor.start()
    cursor.claimed([1, 3], snap(50, 60))  # 2 waited at
    cursor.claimed([], snap(59, 61))
    assert cursor.start() == 1
    cursor.claimed([], snap(61, 62))  # 2's transaction had ended and left nothing: rolled back
    assert cursor.start() == 3


@dataclass
class Bench:
    """A relay on the test's database and a way to open raw connections (each a writer of its own transactions);
    everything it made is closed after the test."""

    relay: OutboxRelay
    connect: Callable[[], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def bench(db_url: str, infra, topic_prefix: str) -> AsyncIterator[Bench]:
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, SCHEMA, bootstrap=infra.kafka.bootstrap, topic_prefix=topic_prefix)
    opened: list[asyncpg.Connection] = []

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        opened.append(conn)
        return conn

    try:
        yield Bench(relay, connect)
    finally:
        await relay.stop()
        for conn in opened:
            await conn.close()
        await engine.dispose()


async def _enqueue(conn: asyncpg.Connection, key: str, name: str = "") -> int:
    oid: int = await conn.fetchval(
        f"INSERT INTO {SCHEMA}.outbox (topic, key, payload) VALUES ($1, $2, $3::json) RETURNING id",
        TOPIC,
        key,
        f'{{"id": "{uuid.uuid4()}", "key": "{key}", "name": "{name}"}}',
    )
    return oid


async def drain(relay: OutboxRelay) -> int:
    """Claim and publish until a claim finds nothing; how many rows went out."""
    published = 0
    while (n := await relay.run_once()) > 0:
        published += n
    return published


async def names_of_key(infra, topic_prefix: str, key: str, at_least: int) -> list[str]:
    """The `name`s of the test topic's messages of `key`, in their partition's order (a key has one partition)."""
    got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC, at_least=at_least)
    return [m["value"]["name"] for m in sorted((m for m in got if m["key"] == key), key=lambda m: m["offset"])]


async def test_a_row_committed_after_a_higher_one_was_published_is_published_too(
    bench: Bench, infra, topic_prefix
) -> None:
    relay = bench.relay
    late, early = await bench.connect(), await bench.connect()
    await _enqueue(early, "A")
    assert await relay.run_once() == 1  # the first claim (a sweep)
    tx = late.transaction()
    await tx.start()
    low = await _enqueue(late, "B")  # its ID is taken, its commit comes later
    high = await _enqueue(early, "C")
    assert high > low
    assert await relay.run_once() == 1  # C, not B (not committed)
    await tx.commit()
    assert relay.cursor.start() < low  # the cursor waits below B...
    assert await relay.run_once() == 1  # ...so the next claim (no sweep due yet) finds it
    unsent = await early.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE sent_at IS NULL")
    assert unsent == 0
    got = await read_topic(infra.kafka.bootstrap, topic_prefix + TOPIC, at_least=3)
    assert sorted(m["key"] for m in got) == ["A", "B", "C"]


async def test_an_idle_leader_gives_up_a_rolled_back_id_and_looks_only_above_what_it_sent(bench: Bench) -> None:
    """A rolled-back row leaves an ID no claim will return; when nothing comes after it, the leader's idle check
    (its snapshot's xmin past the claim that missed the ID) gives it up, and later checks start at the highest ID
    sent instead of walking every sent row from the gap on."""
    relay = bench.relay
    relay.cursor = ClaimCursor(sweep_s=3600.0, clock=Clock())
    conn, other = await bench.connect(), await bench.connect()
    await _enqueue(conn, "A")
    assert await relay.run_once() == 1
    tx = conn.transaction()
    await tx.start()
    lost = await _enqueue(conn, "B")
    await tx.rollback()
    high = await _enqueue(other, "C")
    assert await relay.run_once() == 1  # C; B's ID is waited at
    assert relay.cursor.start() == lost - 1

    async def given_up() -> bool:
        # Idle: nothing unsent. The gap goes once the snapshot's xmin has passed the claim that missed B's ID (at
        # once here, unless another test's transaction somewhere in the cluster still runs).
        assert await relay.run_once() == 0
        return relay.cursor.waiting == []

    await eventually(given_up, timeout_s=10)
    assert relay.cursor.start() == high


async def test_a_slow_commit_keeps_its_place_before_the_next_row_of_its_key(bench: Bench, infra, topic_prefix) -> None:
    """The reordering a timed wait allowed: B's transaction stays open past several sweep periods, commits, and the
    next row of its key (D) commits right after. B must still reach the topic before D."""
    relay = bench.relay
    clock = Clock()
    relay.cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    late, early = await bench.connect(), await bench.connect()
    await _enqueue(early, "A")
    assert await relay.run_once() == 1
    tx = late.transaction()
    await tx.start()
    await late.execute("SELECT pg_current_xact_id()")  # as a capture has: its ID before the outbox row's
    await _enqueue(late, "K", "B")
    await _enqueue(early, "C")
    assert await relay.run_once() == 1  # C
    for _ in range(3):  # past the sweep period, three times over: B is still waited at
        clock.now += 2.5
        await _enqueue(early, "X")
        assert await relay.run_once() == 1
        assert relay.cursor.waiting
    await tx.commit()
    await _enqueue(early, "K", "D")  # the next row of B's key
    assert await drain(relay) == 2
    assert await names_of_key(infra, topic_prefix, "K", at_least=7) == ["B", "D"]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_simulated_database_never_sees_one_keys_rows_published_out_of_order(data: st.DataObject) -> None:
    """The cursor against a model of PostgreSQL: a transaction takes its xid (it writes or locks its key's row
    first, so one key's transactions follow each other), then draws outbox IDs, interleaved with the others', and
    commits or rolls back in any order; claims see what has committed, from the cursor's start, in ID order, up to
    a limit, with PostgreSQL's snapshot bounds. Every committed row is published, once per claim at most, and each
    key's rows in the order they were written."""
    clock = Clock()
    cursor = ClaimCursor(sweep_s=2.0, clock=clock)
    next_xid, next_id, latest_completed = 100, 1, 99
    running: dict[int, tuple[str, list[int]]] = {}  # xid -> (key, its outbox IDs so far)
    committed: dict[int, str] = {}  # outbox ID -> key, visible
    sent: list[int] = []
    written: dict[str, list[int]] = {}  # key -> its IDs in commit order

    def xmin_now() -> int:
        """A snapshot's xmin as PostgreSQL answers: its xmax is past the latest completed transaction only, and
        xmin is the oldest running transaction below that xmax (a running one above it is in neither)."""
        xmax = latest_completed + 1
        return min((x for x in running if x < xmax), default=xmax)

    def unsent_after(start: int) -> list[int]:
        return sorted(i for i in committed if i > start and i not in sent)

    def claim(start: int, limit: int) -> tuple[list[int], Snapshot]:
        """As PostgreSQL answers (`xmin_now`); the claim's own transaction ID comes after its snapshot, and the
        claim completes."""
        nonlocal next_xid, latest_completed
        xmin = xmin_now()
        ids = unsent_after(start)[:limit]
        own, next_xid = next_xid, next_xid + 1
        latest_completed = max(latest_completed, own)
        return ids, Snapshot(xmin, own)

    def end(xid: int, commit: bool) -> None:
        nonlocal latest_completed
        key, oids = running.pop(xid)
        latest_completed = max(latest_completed, xid)
        if commit:
            committed.update(dict.fromkeys(oids, key))
            written.setdefault(key, []).extend(oids)

    for _ in range(data.draw(st.integers(10, 150))):
        step = data.draw(st.sampled_from(["begin", "draw", "draw", "end", "claim", "claim", "look", "tick"]))
        if step == "begin":
            key = data.draw(st.sampled_from("AB"))
            if all(k != key for k, _ in running.values()):
                running[next_xid] = (key, [])
                next_xid += 1
        elif step == "draw" and running:
            running[data.draw(st.sampled_from(sorted(running)))][1].append(next_id)
            next_id += 1
        elif step == "end" and running:
            end(data.draw(st.sampled_from(sorted(running))), data.draw(st.booleans()))
        elif step == "claim":
            ids, snapshot = claim(cursor.start(), data.draw(st.integers(1, 5)))
            sent += ids
            cursor.claimed(ids, snapshot)
        elif step == "look":  # the idle leader's check: no claim if it finds nothing (and no transaction ID)
            start = cursor.start()
            if not unsent_after(start):
                cursor.found_none(xmin_now())
        else:
            clock.now += data.draw(st.sampled_from([0.1, 0.1, 0.1, 2.5]))
    for xid in sorted(running):  # everything ends; the relay claims until nothing is left
        end(xid, True)
    for _ in range(len(committed) + 2):
        ids, snapshot = claim(cursor.start(), 5)
        sent += ids
        cursor.claimed(ids, snapshot)
        clock.now += 0.5
    clock.now += 5
    start = cursor.start()  # a last sweep
    sent += sorted(i for i in committed if i > start and i not in sent)
    assert sorted(sent) == sorted(committed)  # all of them, each once
    for key, oids in written.items():
        assert [i for i in sent if committed[i] == key] == oids, key
    # Nothing runs and everything is sent: one idle look leaves nothing waited at (no later check walks back).
    assert not unsent_after(cursor.start())
    cursor.found_none(xmin_now())
    assert cursor.waiting == []


async def test_a_transaction_newer_than_every_completed_one_is_still_waited_for(
    bench: Bench, infra, topic_prefix
) -> None:
    """PostgreSQL's snapshot leaves out a running transaction whose ID is above every completed one (it is in
    neither `xmax` nor the running list): T, which began after U but drew its outbox ID first, is such a one when
    U commits and the relay claims. The cursor must still wait for T's row, and publish it before the next row of
    T's key (the reordering a relay-failover test found when the wait was judged by `xmax`)."""
    relay = bench.relay
    relay.cursor = ClaimCursor(sweep_s=3600.0, clock=Clock())  # no sweep to tidy up after a skipped row
    u, t, other = [await bench.connect() for _ in range(3)]
    await _enqueue(other, "X", "first")
    assert await relay.run_once() == 1
    tx_u, tx_t = u.transaction(), t.transaction()
    await tx_u.start()
    await u.execute("SELECT pg_current_xact_id()")  # U has its ID first (as a capture that locked its battery)
    await tx_t.start()
    await t.execute("SELECT pg_current_xact_id()")  # T's ID is above U's...
    await _enqueue(t, "K", "T")  # ...and it draws the lower outbox ID
    await _enqueue(u, "U", "U")
    await tx_u.commit()  # U is the latest completed; T, running above it, is in no snapshot's list
    assert await relay.run_once() == 1  # U's row; T's is waited at
    await _enqueue(other, "X", "between")
    assert await relay.run_once() == 1  # a later claim, while T still runs: T's row is still waited at
    await tx_t.commit()
    await _enqueue(other, "K", "after T")  # the next row of T's key
    assert await drain(relay) == 2
    assert await names_of_key(infra, topic_prefix, "K", at_least=5) == ["T", "after T"]
