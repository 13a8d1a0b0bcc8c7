"""Migration log_nodes_from_level_4: the upgrade removes the stored nodes below `tree.STORED_FROM` (each is folded
from its leaves when read) and keeps the rest; the downgrade folds them back from the leaves in SQL, equal to
RFC 9162's; proofs answered over the upgraded store verify against the signed root."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest
from alembic import command

from services.events.log import repository as repo
from services.events.log import service
from services.events.log.tree import STORED_FROM, ReadTree
from shared.contract import tlog
from shared.db import asyncpg_dsn
from shared.migrate import alembic_config
from shared.roles import service_url
from tests.log_helpers import copy_log

BEFORE, AFTER = "1766f017f594", "4b8e2c6a1d3f"
SIZE = 203  # not a multiple of 16: a partial block at the right edge
LOG = tlog.Signer.generate("batterytrace.test/log")


def _battery(i: int) -> str:
    return f"MIGR-{i:04d}"


async def alembic(url: str, verb: str, revision: str) -> None:
    await asyncio.to_thread(getattr(command, verb), alembic_config(url), revision)


async def _nodes(conn: asyncpg.Connection) -> dict[tuple[int, int], bytes]:
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in await conn.fetch("SELECT * FROM events.log_nodes")}


async def test_the_upgrade_drops_the_nodes_below_the_stored_level_and_the_downgrade_folds_them_back(
    db_url: str,
) -> None:
    leaves = [tlog.leaf_hash(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(SIZE)]
    every = tlog.compact_nodes(0, leaves, tlog.getter({}))
    root = tlog.root_from_leaves(leaves)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await copy_log(conn, leaves, every, _battery)  # what the sequencer stores now: levels 4 and up
        await alembic(db_url, "downgrade", BEFORE)
        assert await _nodes(conn) == every  # every level, as the code before it stored them
        await alembic(db_url, "upgrade", AFTER)
        kept = await _nodes(conn)
        assert kept == {k: h for k, h in every.items() if k[0] >= STORED_FROM} and kept
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # append-only again
            await conn.execute("DELETE FROM events.log_nodes")
        note = tlog.sign_note(tlog.Checkpoint(LOG.name, SIZE, root).body(), [LOG]).encode()
        await repo.insert_checkpoint(conn, repo.StoredCheckpoint(SIZE, root, note, LOG.verifier().encode()))
    finally:
        await conn.close()
    events = await asyncpg.connect(asyncpg_dsn(service_url(db_url, "events")))
    try:
        read_tree = ReadTree()
        for index in (0, 15, 16, 100, 191, 192, SIZE - 1):
            answer = await service.inclusion(events, read_tree, _battery(index), 1, None)
            tlog.verify_inclusion(leaves[index], index, SIZE, tlog.unhex(answer["audit_path"]), root)
        assert tlog.root(SIZE, tlog.getter(await repo.nodes(events, tlog.needed_for_root(SIZE)))) == root
    finally:
        await events.close()
