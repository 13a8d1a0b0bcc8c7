"""The held top of the tree against a store a database owner tampers with (as the events service's role reads it;
the owner switches the append-only triggers off): a stored node that does not verify is never served — the
proof that needs it is refused as `log-inconsistent`, every other proof is still answered and verifies — a node
tampered after it was held is not used, and a held tree is never used for a checkpoint that is not its own (the
same size signed with another root, or a store gone back to fewer leaves)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.events.log import repository as repo
from services.events.log import service, tree
from services.events.log.tree import BLOCK, NOTHING_HELD, STORED_FROM, ReadTree
from shared.contract import tlog
from shared.db import asyncpg_dsn
from shared.roles import service_url
from tests.log_helpers import copy_log

SIZE = 2_000  # 11 bits; with 6 levels held, the cut is at level 5
OLDER = 1_500
LOG = tlog.Signer.generate("batterytrace.test/log")


def _battery(i: int) -> str:
    return f"HELD-{i:05d}"


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [tlog.leaf_hash(hashlib.sha256(salt + i.to_bytes(8, "big")).digest()) for i in range(n)]


async def _sign(conn: asyncpg.Connection, leaves: list[bytes], size: int) -> None:
    root = tlog.root_from_leaves(leaves[:size])
    note = tlog.sign_note(tlog.Checkpoint(LOG.name, size, root).body(), [LOG]).encode()
    await repo.insert_checkpoint(conn, repo.StoredCheckpoint(size, root, note, LOG.verifier().encode()))


@pytest.fixture(autouse=True)
def six_upper_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "UPPER_LEVELS", 6)


@pytest.fixture
async def owner(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The database owner with the triggers off, and a log of SIZE leaves with checkpoints at OLDER and SIZE."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    leaves = _leaves(SIZE)
    await copy_log(conn, leaves, tlog.compact_nodes(0, leaves, tlog.getter({})), _battery)
    for size in (OLDER, SIZE):
        await _sign(conn, leaves, size)
    await conn.execute("SET session_replication_role = replica")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def events(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(service_url(db_url, "events")))
    try:
        yield conn
    finally:
        await conn.close()


async def _tamper(owner: asyncpg.Connection, level: int, index: int) -> None:
    status = await owner.execute(
        "UPDATE events.log_nodes SET hash = $1 WHERE level = $2 AND idx = $3",
        hashlib.sha256(b"tampered").digest(),
        level,
        index,
    )
    assert status == "UPDATE 1"


async def _proof(events: asyncpg.Connection, read_tree: ReadTree, index: int, size: int | None = None) -> Any:
    """The answered proof of leaf `index`, checked against the signed root of its tree."""
    answer = await service.inclusion(events, read_tree, _battery(index), 1, size)
    n = answer["tree_size"]
    tlog.verify_inclusion(
        _leaves(SIZE)[index], index, n, tlog.unhex(answer["audit_path"]), tlog.root_from_leaves(_leaves(SIZE)[:n])
    )
    return answer


def _user(level: int, node: int) -> int:
    """A leaf whose inclusion proof has stored node (level, node) as its sibling at that level."""
    return (node ^ 1) << level


async def test_a_tampered_node_below_the_cut_is_refused_and_every_other_proof_still_verifies(
    owner: asyncpg.Connection, events: asyncpg.Connection
) -> None:
    read_tree = ReadTree()
    await _proof(events, read_tree, 0)
    assert read_tree.held.cut == tree.cut_for(SIZE) == 5
    await _tamper(owner, STORED_FROM, 77)  # stored, below the cut (the levels under it are folded from leaves)
    with pytest.raises(service.LogInconsistent) as refused:
        await service.inclusion(events, read_tree, _battery(_user(STORED_FROM, 77)), 1, None)
    assert refused.value.status == 500 and refused.value.code == "log-inconsistent"
    with pytest.raises(service.LogInconsistent):
        await service.inclusion(events, read_tree, _battery(_user(STORED_FROM, 77)), 1, OLDER)  # in the older tree too
    for index in (0, 5, _user(STORED_FROM, 77) + BLOCK, 1_000, SIZE - 1):
        await _proof(events, read_tree, index)
    await _sign(owner, _leaves(SIZE), 77 * BLOCK)  # a checkpoint just before it: its consistency proof needs it
    with pytest.raises(service.LogInconsistent):
        await service.consistency(events, read_tree, 77 * BLOCK, SIZE)
    answer = await service.consistency(events, read_tree, OLDER, SIZE)
    old, new = (tlog.root_from_leaves(_leaves(SIZE)[:n]) for n in (OLDER, SIZE))
    tlog.verify_consistency(OLDER, SIZE, tlog.unhex(answer["proof"]), old, new)


async def test_a_tampered_leaf_is_refused_in_every_proof_its_block_folds_and_no_other(
    owner: asyncpg.Connection, events: asyncpg.Connection
) -> None:
    """Below `tree.STORED_FROM` the store keeps no nodes: a proof folds its siblings there from the leaves. An
    owner who changes one leaf (and can change no stored node to match, since none covers it alone) has every
    proof that folds it refused, the leaf's own included, and nothing else."""
    read_tree = ReadTree()
    await _proof(events, read_tree, 0)  # the top of the tree held before the tamper
    status = await owner.execute(
        "UPDATE events.log_leaves SET leaf_hash = $1 WHERE leaf_index = 700", hashlib.sha256(b"forged").digest()
    )
    assert status == "UPDATE 1"
    block = tree.block_start(700)  # 688..703: each proof there folds leaf 700 into a sibling (or is its own)
    for index in (block, 695, 699, 700, 701, block + tree.BLOCK - 1):
        with pytest.raises(service.LogInconsistent):
            await service.inclusion(events, read_tree, _battery(index), 1, None)
    for index in (0, block - 1, block + tree.BLOCK, 720, SIZE - 1):  # other blocks: their stored siblings hold
        await _proof(events, read_tree, index)


async def test_a_node_tampered_before_it_is_held_is_never_held_nor_served(
    owner: asyncpg.Connection, events: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await _tamper(owner, 7, 3)  # above the cut: it would be held
    read_tree = ReadTree()
    await _proof(events, read_tree, 0)
    assert read_tree.held.size == SIZE and read_tree.held.cut == NOTHING_HELD and not read_tree.held.levels
    assert "inconsistent with its checkpoint of 2000 leaves" in caplog.text
    with pytest.raises(service.LogInconsistent):
        await service.inclusion(events, read_tree, _battery(_user(7, 3)), 1, None)
    held = read_tree.held
    for index in (1, 999, SIZE - 1):  # proofs that do not need it, each read whole from the store
        await _proof(events, read_tree, index)
        if index < OLDER:
            await _proof(events, read_tree, index, OLDER)
    assert read_tree.held is held  # not read again on every request


async def test_a_node_tampered_after_it_was_held_is_not_used(
    owner: asyncpg.Connection, events: asyncpg.Connection
) -> None:
    read_tree = ReadTree()
    await _proof(events, read_tree, 0)
    assert read_tree.held.get(7, 3) is not None
    await _tamper(owner, 7, 3)
    await _proof(events, read_tree, _user(7, 3))  # the held node, checked when it was taken in
    answer = await service.consistency(events, read_tree, 3 * 128, SIZE)  # it is the old tree's next sibling
    old, new = (tlog.root_from_leaves(_leaves(SIZE)[:n]) for n in (3 * 128, SIZE))
    tlog.verify_consistency(3 * 128, SIZE, tlog.unhex(answer["proof"]), old, new)


async def test_a_held_tree_is_not_used_for_another_checkpoint_of_its_size_nor_for_fewer_leaves(
    owner: asyncpg.Connection, events: asyncpg.Connection
) -> None:
    read_tree = ReadTree()
    await _proof(events, read_tree, 10)
    # The owner rewrites the history (one leaf changed, every node above it recomputed) and signs it anew.
    forged = _leaves(SIZE)
    forged[42] = tlog.leaf_hash(b"rewritten")
    await owner.execute("UPDATE events.log_leaves SET leaf_hash = $1 WHERE leaf_index = 42", forged[42])
    await owner.execute("DELETE FROM events.log_nodes")
    await owner.executemany(
        "INSERT INTO events.log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
        [(*k, h) for k, h in tree.storable(tlog.compact_nodes(0, forged, tlog.getter({}))).items()],
    )
    await owner.execute("DELETE FROM events.log_checkpoints")
    await _sign(owner, forged, SIZE)
    # The store's checkpoint of SIZE has another root now: the proof is of the rewritten tree, from it.
    answer = await service.inclusion(events, read_tree, _battery(10), 1, None)
    tlog.verify_inclusion(forged[10], 10, SIZE, tlog.unhex(answer["audit_path"]), tlog.root_from_leaves(forged))
    assert read_tree.held.root == tlog.root_from_leaves(forged)
    # A store gone back to fewer leaves (an older backup): the held tree of SIZE is let go of too.
    await owner.execute("DELETE FROM events.log_checkpoints")
    await _sign(owner, forged, OLDER)
    answer = await service.inclusion(events, read_tree, _battery(10), 1, None)
    assert answer["tree_size"] == OLDER and read_tree.held.size == OLDER
    tlog.verify_inclusion(
        forged[10], 10, OLDER, tlog.unhex(answer["audit_path"]), tlog.root_from_leaves(forged[:OLDER])
    )
