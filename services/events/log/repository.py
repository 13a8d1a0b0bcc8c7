"""Every query of the transparency log. Statements are written once, from the models' tables; they run on a
raw asyncpg connection (inside a unit of work for writes, from the statement pool for reads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.events.log.models import LogCheckpoint, LogCosignature, LogLeaf, LogNode, LogQueue
from shared.contract.tlog import NodeKey


def _name(model: Any) -> str:
    table = model.__table__
    return f"{table.schema}.{table.name}"


QUEUE, LEAVES, NODES = _name(LogQueue), _name(LogLeaf), _name(LogNode)
CHECKPOINTS, COSIGNATURES = _name(LogCheckpoint), _name(LogCosignature)

#: One lock key per log job, so exactly one process sequences and one checkpoints at a time.
SEQUENCER_LOCK = 0x62745F6C6F675F31  # "bt_log_1"
CHECKPOINT_LOCK = 0x62745F6C6F675F32


@dataclass(frozen=True, slots=True)
class Pending:
    battery_id: str
    sequence: int
    hash: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    log_key: str


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """A transaction-scoped advisory lock: released at COMMIT or ROLLBACK, so a crashed holder frees it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))


async def tree_size(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(f"SELECT max(leaf_index) FROM {LEAVES}")
    return 0 if value is None else int(value) + 1


async def take_pending(conn: asyncpg.Connection, limit: int) -> list[Pending]:
    """Remove up to `limit` queued ledger events, oldest first (by queue order, which is commit order for
    one battery's events)."""
    rows = await conn.fetch(
        f"DELETE FROM {QUEUE} WHERE id IN (SELECT id FROM {QUEUE} ORDER BY id LIMIT $1) "
        "RETURNING id, battery_id, sequence, hash",
        limit,
    )
    return [Pending(r["battery_id"], r["sequence"], r["hash"]) for r in sorted(rows, key=lambda r: r["id"])]


async def pending_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {QUEUE}"))


_LEAF_COLUMNS = list(LogLeaf.__table__.c.keys())
_NODE_COLUMNS = list(LogNode.__table__.c.keys())


async def insert_leaves(
    conn: asyncpg.Connection, first_index: int, items: Sequence[Pending], hashes: Sequence[bytes]
) -> None:
    await conn.execute(
        f"INSERT INTO {LEAVES} ({', '.join(_LEAF_COLUMNS)}) "
        "SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bytea[])",
        list(range(first_index, first_index + len(items))),
        [i.battery_id for i in items],
        [i.sequence for i in items],
        list(hashes),
    )


async def insert_nodes(conn: asyncpg.Connection, nodes: Mapping[NodeKey, bytes]) -> None:
    if not nodes:
        return
    keys = sorted(nodes)
    await conn.execute(
        f"INSERT INTO {NODES} ({', '.join(_NODE_COLUMNS)}) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [nodes[k] for k in keys],
    )


async def nodes(conn: asyncpg.Connection, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """The hashes of the given complete subtrees (level 0: the leaves), in one round trip."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    leaves = [i for level, i in wanted if level == 0]
    upper = [(level, i) for level, i in wanted if level > 0]
    rows = await conn.fetch(
        f"SELECT 0::smallint AS level, leaf_index AS idx, leaf_hash AS hash FROM {LEAVES} "
        "WHERE leaf_index = ANY($1::bigint[]) "
        f"UNION ALL SELECT n.level, n.idx, n.hash FROM {NODES} n "
        "JOIN unnest($2::smallint[], $3::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx",
        leaves,
        [k[0] for k in upper],
        [k[1] for k in upper],
    )
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


@dataclass(frozen=True, slots=True)
class ProofRead:
    newest: int | None  # the newest checkpoint's tree size (None: none signed yet)
    leaf_index: int | None  # None: the log holds no such event
    nodes: dict[NodeKey, bytes]


#: One statement per inclusion proof: the newest checkpoint's size, the event's leaf index (the unique index on
#: (battery_id, sequence)), and the stored nodes a proof of that leaf in the tree of size $3 (default: the
#: newest) can read: `tlog.inclusion_candidates`, at most 2·log2(size) primary-key probes. At each level l the
#: complete sibling ((m >> l) # 1) of the leaf's ancestor, and the right-edge subtree ((n >> l) - 1) where bit l of
#: n is set. Keep the two in step: tests/test_log_proof_cost.py checks every proof it answers against RFC 9162.
INCLUSION_READ = f"""
WITH newest AS (SELECT max(tree_size) AS n FROM {CHECKPOINTS}),
leaf AS (SELECT leaf_index AS m FROM {LEAVES} WHERE battery_id = $1 AND sequence = $2),
size AS (SELECT coalesce($3::bigint, n) AS n FROM newest),
levels AS (SELECT l FROM size, generate_series(0, 62) AS l WHERE size.n >> l > 0),
wanted AS (
    SELECT l AS level, (m >> l) # 1 AS idx FROM leaf, size, levels
    WHERE m < size.n AND (((m >> l) # 1) + 1) << l <= size.n
    UNION
    SELECT l, (size.n >> l) - 1 FROM size, levels, leaf WHERE m < size.n AND (size.n >> l) & 1 = 1
),
found AS (
    SELECT 0::smallint AS level, f.leaf_index AS idx, f.leaf_hash AS hash
    FROM wanted w JOIN {LEAVES} f ON f.leaf_index = w.idx WHERE w.level = 0
    UNION ALL
    SELECT n.level, n.idx, n.hash FROM wanted w JOIN {NODES} n ON n.level = w.level AND n.idx = w.idx
    WHERE w.level > 0
)
SELECT newest.n AS newest, leaf.m AS leaf_index, found.level, found.idx, found.hash
FROM newest LEFT JOIN leaf ON true LEFT JOIN found ON true
"""


async def inclusion_read(conn: asyncpg.Connection, battery_id: str, sequence: int, size: int | None) -> ProofRead:
    """Everything an inclusion proof reads, in one round trip (`INCLUSION_READ`)."""
    rows = await conn.fetch(INCLUSION_READ, battery_id, sequence, size)
    first = rows[0]
    return ProofRead(
        None if first["newest"] is None else int(first["newest"]),
        None if first["leaf_index"] is None else int(first["leaf_index"]),
        {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows if r["hash"] is not None},
    )


#: The newest checkpoint's size rides along with the nodes (as level -1), so a consistency proof is one round trip.
NODES_AND_NEWEST = f"""
SELECT -1::smallint AS level, max(tree_size) AS idx, NULL::bytea AS hash FROM {CHECKPOINTS}
UNION ALL SELECT 0::smallint, leaf_index, leaf_hash FROM {LEAVES} WHERE leaf_index = ANY($1::bigint[])
UNION ALL SELECT n.level, n.idx, n.hash FROM {NODES} n
JOIN unnest($2::smallint[], $3::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx
"""


async def nodes_and_newest(conn: asyncpg.Connection, keys: Iterable[NodeKey]) -> ProofRead:
    wanted = sorted(set(keys))
    upper = [(level, i) for level, i in wanted if level > 0]
    rows = await conn.fetch(
        NODES_AND_NEWEST, [i for level, i in wanted if level == 0], [k[0] for k in upper], [k[1] for k in upper]
    )
    newest = next(r["idx"] for r in rows if r["level"] == -1)
    found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows if r["level"] >= 0}
    return ProofRead(None if newest is None else int(newest), None, found)


async def leaf_indexes(conn: asyncpg.Connection, battery_id: str) -> dict[int, int]:
    rows = await conn.fetch(f"SELECT sequence, leaf_index FROM {LEAVES} WHERE battery_id = $1", battery_id)
    return {r["sequence"]: int(r["leaf_index"]) for r in rows}


async def leaves_of(conn: asyncpg.Connection, first: int, last: int) -> list[tuple[int, str, int, bytes]]:
    """Leaves with index in [first, last): (index, battery_id, sequence, leaf hash)."""
    rows = await conn.fetch(
        f"SELECT leaf_index, battery_id, sequence, leaf_hash FROM {LEAVES} "
        "WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
        first,
        last,
    )
    return [(int(r["leaf_index"]), r["battery_id"], r["sequence"], bytes(r["leaf_hash"])) for r in rows]


async def insert_checkpoint(conn: asyncpg.Connection, cp: StoredCheckpoint) -> None:
    await conn.execute(
        f"INSERT INTO {CHECKPOINTS} (tree_size, root_hash, note, log_key) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tree_size) DO NOTHING",
        cp.tree_size,
        cp.root_hash,
        cp.note,
        cp.log_key,
    )


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(row["tree_size"]), bytes(row["root_hash"]), row["note"], row["log_key"])


async def latest_checkpoint(conn: asyncpg.Connection) -> StoredCheckpoint | None:
    row = await conn.fetchrow(
        f"SELECT tree_size, root_hash, note, log_key FROM {CHECKPOINTS} ORDER BY tree_size DESC LIMIT 1"
    )
    return None if row is None else _checkpoint(row)


async def checkpoint_at(conn: asyncpg.Connection, size: int) -> StoredCheckpoint | None:
    row = await conn.fetchrow(
        f"SELECT tree_size, root_hash, note, log_key FROM {CHECKPOINTS} WHERE tree_size = $1", size
    )
    return None if row is None else _checkpoint(row)


async def cosignatures(conn: asyncpg.Connection, size: int) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        f"SELECT witness, signature FROM {COSIGNATURES} WHERE tree_size = $1 ORDER BY witness", size
    )
    return [(r["witness"], r["signature"]) for r in rows]


async def insert_cosignature(conn: asyncpg.Connection, size: int, witness: str, signature: str) -> bool:
    status = await conn.execute(
        f"INSERT INTO {COSIGNATURES} (tree_size, witness, signature) VALUES ($1, $2, $3) "
        "ON CONFLICT (tree_size, witness) DO NOTHING",
        size,
        witness,
        signature,
    )
    return bool(status.endswith(" 1"))


async def leaves_of_battery(conn: asyncpg.Connection, battery_id: str) -> dict[int, bytes]:
    """sequence → leaf hash of every event of the battery the log holds."""
    rows = await conn.fetch(f"SELECT sequence, leaf_hash FROM {LEAVES} WHERE battery_id = $1", battery_id)
    return {r["sequence"]: bytes(r["leaf_hash"]) for r in rows}


async def queued_of_battery(conn: asyncpg.Connection, battery_id: str) -> set[int]:
    rows = await conn.fetch(f"SELECT sequence FROM {QUEUE} WHERE battery_id = $1", battery_id)
    return {r["sequence"] for r in rows}
