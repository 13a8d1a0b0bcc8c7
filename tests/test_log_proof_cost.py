"""What a proof costs the database, at a tree size with many levels (2^17 < size < 2^18, a partial right edge):
once a process holds the top of the tree of the newest checkpoint (services/events/log/tree.py: read once, then
only what each new checkpoint adds), an inclusion proof is ONE statement (newest checkpoint, the leaf by its
hash index on battery_id, the stored nodes below the held levels by primary key), a consistency proof
one statement too; each reads at most two stored nodes per level below the cut (four levels here, of eighteen),
and no plan scans the log's tables. Every answer is checked with the RFC 9162 algorithms against the root
computed from the leaves."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import orjson
import pytest

from services.events.log import repository as repo
from services.events.log import service, tree
from services.events.log.tree import ReadTree
from shared.contract import tlog
from shared.db import asyncpg_dsn
from shared.problems import NotFound, Unprocessable
from shared.roles import service_url
from tests.log_helpers import copy_log

SIZE = 2**17 + 12_345
SIZES = (1, 2, 3, 2**16, 2**16 + 1, 99_999, SIZE)
LOG = tlog.Signer.generate("batterytrace.test/log")


def _battery(i: int) -> str:
    return f"COST-{i:07d}"


ROOTS: dict[int, bytes] = {}


def _root(leaves: list[bytes], size: int) -> bytes:
    """The reference MTH from the leaves themselves (not from the stored nodes)."""
    if size not in ROOTS:
        ROOTS[size] = tlog.root_from_leaves(leaves[:size])
    return ROOTS[size]


@pytest.fixture
async def filled(db_url: str) -> AsyncIterator[list[bytes]]:
    """A log of SIZE leaves (COPY, as the bench fills it) with a signed checkpoint at each of SIZES."""
    leaves = [tlog.leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(SIZE)]
    nodes = tlog.compact_nodes(0, leaves, tlog.getter({}))
    store = {**nodes, **{(0, i): h for i, h in enumerate(leaves)}}
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await copy_log(conn, leaves, nodes, _battery)
        for size in SIZES:
            root = tlog.root(size, tlog.getter(store))
            note = tlog.sign_note(tlog.Checkpoint(LOG.name, size, root).body(), [LOG]).encode()
            await repo.insert_checkpoint(conn, repo.StoredCheckpoint(size, root, note, LOG.verifier().encode()))
        await conn.execute("ANALYZE events.log_leaves; ANALYZE events.log_nodes")
    finally:
        await conn.close()
    yield leaves


@pytest.fixture
async def events_conn(db_url: str) -> AsyncIterator[tuple[asyncpg.Connection, list[Any]]]:
    """A connection as the events service's role, with every statement it sends recorded."""
    conn = await asyncpg.connect(asyncpg_dsn(service_url(db_url, "events")))
    queries: list[Any] = []
    conn.add_query_logger(queries.append)
    try:
        yield conn, queries
    finally:
        await conn.close()


async def _counted(queries: list[Any], call: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The answer of `call` and how many statements it sent."""
    await asyncio.sleep(0)  # asyncpg hands each logged query to the loop with call_soon: let earlier ones land
    queries.clear()
    answer = await call
    await asyncio.sleep(0)
    return answer, len(queries)


def _bound(size: int) -> int:
    """Nodes a proof may take from the store: two per level below the cut (a sibling and a right-edge subtree)."""
    return 2 * tree.cut_for(size)


def _rows_bound(size: int) -> int:
    """Rows a proof may read for them: the leaf's block and the tree's last block (the levels below
    `tree.STORED_FROM` are folded from their leaves), and two stored nodes per stored level below the cut."""
    cut = tree.cut_for(size)
    return 2 * tree.BLOCK - 1 + 2 * max(0, cut - tree.STORED_FROM)


async def _held(conn: asyncpg.Connection, queries: list[Any]) -> ReadTree:
    """A process's held tree, taken in: two statements (the newest checkpoint, the ranges of nodes it lacks)."""
    read_tree = ReadTree()
    await repo.node_ranges(conn, [(0, 0, 1), (1, 0, 1)])  # asyncpg looks up the array types once per connection
    await asyncio.sleep(0)
    queries.clear()
    await service.hold(conn, read_tree)
    await asyncio.sleep(0)
    assert len(queries) == 2 and read_tree.held.size == SIZE and read_tree.held.cut == tree.cut_for(SIZE) == 4
    await service.inclusion(conn, read_tree, _battery(0), 1, None)  # and the statements' result types
    await service.consistency(conn, read_tree, 1, 2)
    return read_tree


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The executed plan's nodes (EXPLAIN ANALYZE), flattened."""
    doc = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    plan = orjson.loads(doc)[0]["Plan"]
    out, todo = [], [plan]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(node.get("Plans", []))
    return out


def _log_table_reads(plan: list[dict[str, Any]]) -> int:
    scans = [n for n in plan if n.get("Relation Name") in ("log_leaves", "log_nodes")]
    assert scans and not [n for n in scans if "Seq Scan" in n["Node Type"]], scans
    return sum(int(n["Actual Rows"]) * int(n["Actual Loops"]) for n in scans)


async def test_an_inclusion_proof_is_one_statement_reading_a_bounded_number_of_nodes(
    filled: list[bytes], events_conn: tuple[asyncpg.Connection, list[Any]]
) -> None:
    conn, queries = events_conn
    read_tree = await _held(conn, queries)
    held = read_tree.held
    rnd = random.Random(14)
    for size in SIZES:
        root = _root(filled, size)
        for index in {0, size - 1, size // 2, *(rnd.randrange(size) for _ in range(20))}:
            answer, statements = await _counted(queries, service.inclusion(conn, read_tree, _battery(index), 1, size))
            assert statements == 1
            assert answer["leaf_index"] == index and answer["tree_size"] == size
            tlog.verify_inclusion(filled[index], index, size, tlog.unhex(answer["audit_path"]), root)
            read = await repo.inclusion_read(conn, _battery(index), 1, size, held.cut, held.size, held.edge_size)
            assert len(read.nodes) <= _bound(SIZE)
            assert all(level < held.cut for level, _ in read.nodes)
            assert held.unheld(tlog.needed_for_inclusion(index, size), size) <= set(read.nodes)
    newest, statements = await _counted(queries, service.inclusion(conn, read_tree, _battery(7), 1, None))
    assert newest["tree_size"] == SIZE and statements == 1  # default: the newest checkpoint
    assert read_tree.held is held  # nothing was read again


async def test_the_inclusion_statement_probes_indexes_under_the_pool_s_generic_plan_too(
    filled: list[bytes], events_conn: tuple[asyncpg.Connection, list[Any]]
) -> None:
    conn, _ = events_conn
    cut = tree.cut_for(SIZE)
    for mode in ("force_custom_plan", "force_generic_plan"):  # asyncpg prepares; after 5 runs PG may go generic
        await conn.execute(f"SET plan_cache_mode = {mode}")
        for index, size, held in ((SIZE - 3, SIZE, SIZE), (5, 99_999, SIZE), (98_765, 99_999, 0)):
            plan = await _plan(conn, repo.INCLUSION_READ, _battery(index), 1, size, cut, held, held)
            assert _log_table_reads(plan) <= _rows_bound(SIZE) + 1  # and the leaf by (battery_id, sequence)


async def test_refusals_are_unchanged_by_the_single_statement(
    filled: list[bytes], events_conn: tuple[asyncpg.Connection, list[Any]]
) -> None:
    conn, _ = events_conn
    read_tree = ReadTree()
    with pytest.raises(Unprocessable):
        await service.inclusion(conn, read_tree, _battery(1), 1, SIZE + 1)  # beyond the newest checkpoint
    with pytest.raises(NotFound):
        await service.inclusion(conn, read_tree, _battery(SIZE - 1), 1, 2**16)  # not in that older tree
    with pytest.raises(NotFound):
        await service.inclusion(conn, read_tree, "COST-NOPE", 1, SIZE)
    with pytest.raises(Unprocessable):
        await service.consistency(conn, read_tree, 5, SIZE + 1)
    with pytest.raises(Unprocessable):
        await service.consistency(conn, read_tree, 6, 5)


async def test_a_consistency_proof_is_one_statement_reading_a_bounded_number_of_nodes(
    filled: list[bytes], events_conn: tuple[asyncpg.Connection, list[Any]]
) -> None:
    conn, queries = events_conn
    read_tree = await _held(conn, queries)
    held = read_tree.held
    for first in SIZES:
        for second in (s for s in SIZES if s >= first):
            answer, statements = await _counted(queries, service.consistency(conn, read_tree, first, second))
            assert statements == 1
            proof = tlog.unhex(answer["proof"])
            # Per level a sibling on the old tree's edge and a subtree of the new one's, and the old edge's start.
            assert len(held.unheld(tlog.needed_for_consistency(first, second), second)) <= _bound(SIZE) + 1
            tlog.verify_consistency(first, second, proof, _root(filled, first), _root(filled, second))
    keys = sorted(held.unheld(tlog.needed_for_consistency(99_999, SIZE), SIZE))
    upper = [k for k in keys if k[0] > 0]
    plan = await _plan(
        conn,
        repo.NODES_AND_NEWEST,
        [i for lv, i in keys if lv == 0],
        [k[0] for k in upper],
        [k[1] for k in upper],
        [99_999, SIZE],
    )
    assert _log_table_reads(plan) <= _bound(SIZE) + 1


async def test_a_new_checkpoint_is_taken_in_by_reading_only_the_nodes_it_adds(
    filled: list[bytes], events_conn: tuple[asyncpg.Connection, list[Any]], db_url: str
) -> None:
    conn, queries = events_conn
    owner = await asyncpg.connect(asyncpg_dsn(db_url))
    try:  # the log as it was when its newest checkpoint was of 99,999 leaves
        await owner.execute("SET session_replication_role = replica")
        kept = await owner.fetch("SELECT * FROM events.log_checkpoints WHERE tree_size > 99999")
        await owner.execute("DELETE FROM events.log_checkpoints WHERE tree_size > 99999")
        read_tree = ReadTree()
        await service.hold(conn, read_tree)
        await service.inclusion(conn, read_tree, _battery(3), 1, None)  # and the statement is prepared
        old = read_tree.held
        assert (old.size, old.cut) == (99_999, tree.cut_for(99_999))
        await owner.executemany(
            "INSERT INTO events.log_checkpoints (tree_size, root_hash, note, log_key) VALUES ($1, $2, $3, $4)",
            [(r["tree_size"], r["root_hash"], r["note"], r["log_key"]) for r in kept],
        )
    finally:
        await owner.close()
    growth = old.growth(SIZE)
    added = sum(hi - lo for level, lo, hi in growth if level >= tree.cut_for(SIZE))
    assert added == sum((SIZE >> lv) - (99_999 >> lv) for lv in range(tree.cut_for(SIZE), SIZE.bit_length()))
    answer, statements = await _counted(queries, service.inclusion(conn, read_tree, _battery(12), 1, None))
    # The read, then the newest checkpoint and the nodes it adds; the cut rose (17 to 18 bits): read again.
    assert statements == 4 and answer["tree_size"] == SIZE
    tlog.verify_inclusion(filled[12], 12, SIZE, tlog.unhex(answer["audit_path"]), _root(filled, SIZE))
    assert read_tree.held.size == SIZE and read_tree.held.cut == tree.cut_for(SIZE)
