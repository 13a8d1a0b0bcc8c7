"""Every query of the transparency log. Statements are written once, from the models' tables; they run on a
raw asyncpg connection (inside a unit of work for writes, from the statement pool for reads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.events.log import tree
from services.events.log.models import LogCheckpoint, LogCosignature, LogLeaf, LogNode, LogPending
from shared.contract.tlog import NodeKey
from shared.outbox import SNAPSHOT_COLUMNS, Snapshot


def _name(model: Any) -> str:
    table = model.__table__
    return f"{table.schema}.{table.name}"


PENDING, LEAVES, NODES = _name(LogPending), _name(LogLeaf), _name(LogNode)
CHECKPOINTS, COSIGNATURES = _name(LogCheckpoint), _name(LogCosignature)

#: One lock key per log job, so exactly one process sequences and one checkpoints at a time.
SEQUENCER_LOCK = 0x62745F6C6F675F31  # "bt_log_1"
CHECKPOINT_LOCK = 0x62745F6C6F675F32


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


_LEAF_COLUMNS = list(LogLeaf.__table__.c.keys())

#: Queued statements after the cursor's ID, oldest first, until `$1` events are taken (always at least one row,
#: however many events it holds; `events` is stored beside the arrays, so counting reads no array), appended as
#: leaves from the tree's size (read in the same snapshot, before the INSERT) in the same statement: by queue row,
#: each row's events in the (battery_id, sequence) order its arrays hold, each leaf's hash RFC 9162's
#: SHA-256(0x00 ‖ the ledger hash), as `tlog.leaf_hash`. The events never travel to the service and back; it gets
#: the tree's size before, the queue rows taken and the new leaves' hashes (for the subtrees above them).
#: A queue row is taken only if it is well formed: as many battery IDs, sequences and hashes as it counts events,
#: none NULL, every hash 64 lowercase hex digits (what the ledger trigger writes). Any other row (only a hand-made
#: one: the events role may insert queue rows) would make the append fail, and the log stop, at every take; it is
#: set aside instead, left in the queue as evidence and reported (`set_aside`). The take's rows (its budget of
#: events, in ID order) are tested, and only those: what is taken and what is set aside together are a prefix of the
#: queue, as a claim's rows are for the cursor. The set-aside rows' events do not enter the log, which the proof
#: bundle's audit then reports. The test costs 0.35 µs per event taken (bare server).
WELL_FORMED = (
    "q.events > 0 AND cardinality(q.battery_ids) = q.events AND cardinality(q.sequences) = q.events "
    "AND cardinality(q.hashes) = q.events AND array_position(q.battery_ids, NULL) IS NULL "
    "AND array_position(q.sequences, NULL) IS NULL AND array_position(q.hashes, NULL) IS NULL "
    "AND array_to_string(q.hashes, ',') ~ '^[0-9a-f]{64}(,[0-9a-f]{64})*$'"
)
TAKE_AND_APPEND = f"""
WITH size AS (
    SELECT coalesce(max(leaf_index) + 1, 0) AS n FROM {LEAVES}
), budget AS (
    SELECT q.id, coalesce({WELL_FORMED}, false) AS ok
    FROM (
        SELECT id, sum(events) OVER (ORDER BY id) - events AS before
        FROM (SELECT id, events FROM {PENDING} WHERE id > $2 ORDER BY id LIMIT 1000) w
    ) b JOIN {PENDING} q ON q.id = b.id WHERE b.before < $1
), taken AS (
    DELETE FROM {PENDING} WHERE id IN (SELECT id FROM budget WHERE ok)
    RETURNING id, battery_ids, sequences, hashes
), appended AS (
    INSERT INTO {LEAVES} ({", ".join(_LEAF_COLUMNS)})
    SELECT (SELECT n FROM size) + row_number() OVER (ORDER BY t.id, u.n) - 1, u.battery_id, u.sequence,
           sha256('\\x00'::bytea || decode(u.hash, 'hex'))
    FROM taken t CROSS JOIN LATERAL unnest(t.battery_ids, t.sequences, t.hashes)
        WITH ORDINALITY AS u(battery_id, sequence, hash, n)
    RETURNING leaf_index, leaf_hash
)
SELECT (SELECT n FROM size) AS size, (SELECT array_agg(id ORDER BY id) FROM taken) AS ids,
       (SELECT array_agg(leaf_hash ORDER BY leaf_index) FROM appended) AS leaves,
       (SELECT array_agg(id ORDER BY id) FROM budget WHERE NOT ok) AS set_aside, {SNAPSHOT_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class Taken:
    ids: list[int]  # the queue rows taken, ascending (for the cursor, once their transaction commits)
    leaves: list[bytes]  # the leaf hashes appended, in leaf order from `size`
    snapshot: Snapshot | None = None  # the take's snapshot (None: no take, the sequencer's lock was held)
    size: int = 0  # the tree's size before the take
    set_aside: list[int] = field(default_factory=list)  # malformed queue rows passed over (WELL_FORMED)


async def take_and_append(conn: asyncpg.Connection, limit: int, after: int) -> Taken:
    """Move queued ledger events (about `limit`, whole statements) after queue row `after` into the tree as its
    next leaves: oldest first, by queue order, which is commit order for one battery's events (in the
    sequencer's transaction, under its lock)."""
    row = await conn.fetchrow(TAKE_AND_APPEND, limit, after)
    # Taken or not, the snapshot goes to the cursor: a take that finds nothing lets it give up what never comes.
    return Taken(
        list(row["ids"] or []),
        list(row["leaves"] or []),
        Snapshot.of(row),
        int(row["size"]),
        list(row["set_aside"] or []),
    )


_NODE_COLUMNS = list(LogNode.__table__.c.keys())


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
    """The hashes of the given complete subtrees (level 0: the leaves; below `tree.STORED_FROM`: folded from
    their leaves), in one round trip. A subtree the store lacks is left out."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    leaves, upper = tree.split_keys(wanted)
    rows = await conn.fetch(
        f"SELECT 0::smallint AS level, leaf_index AS idx, leaf_hash AS hash FROM {LEAVES} "
        "WHERE leaf_index = ANY($1::bigint[]) "
        f"UNION ALL SELECT n.level, n.idx, n.hash FROM {NODES} n "
        "JOIN unnest($2::smallint[], $3::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx",
        leaves,
        [k[0] for k in upper],
        [k[1] for k in upper],
    )
    return _with_folded(wanted, rows)


def _with_folded(wanted: Sequence[NodeKey], rows: Iterable[Any]) -> dict[NodeKey, bytes]:
    """The wanted subtrees from stored rows (level, idx, hash): the stored ones as they are, the leaves asked for,
    and those below `tree.STORED_FROM` folded from the leaves read."""
    found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    leaf_hashes = {i: h for (level, i), h in found.items() if level == 0}
    asked = set(wanted)
    out = {k: h for k, h in found.items() if k in asked}
    out.update(tree.from_leaves((k for k in wanted if 0 < k[0] < tree.STORED_FROM), leaf_hashes))
    return out


@dataclass(frozen=True, slots=True)
class InclusionRead:
    newest: int | None  # the newest checkpoint's tree size (None: none signed yet)
    size: int | None  # the tree size asked for, else the newest
    root: bytes | None  # the signed root of the tree of `size` leaves (None: no checkpoint of that size)
    held_root: bytes | None  # the signed root, as the store holds it now, of the tree the reader holds
    leaf_index: int | None  # None: the log holds no such event
    leaf_hash: bytes | None
    nodes: dict[NodeKey, bytes]  # the stored nodes below the cut the proof can need


#: One statement per inclusion proof: the newest checkpoint's size, the signed roots of the tree asked for and
#: of the tree the reader holds (`tree.HeldTree`: its levels at and above the cut $4, and its right edge), the
#: event's leaf (the hash index on battery_id, the sequence a filter), and what a proof of that leaf in the tree of size
#: $3 (default: the newest) can need below the cut: the leaf's block of `tree.BLOCK` leaves (its siblings below
#: `tree.STORED_FROM` are folded from them), and by primary key at each stored level the sibling
#: ((m >> l) # 1) of the leaf's ancestor; and — unless the reader holds that tree's right edge ($6) — the
#: leaves of the tree's last block and the stored right-edge subtree ((n >> l) - 1) where bit l of n is set.
#: The node arrays are positional (siblings: level STORED_FROM first; edge: the set bits of n from bit
#: STORED_FROM; NULL where nothing is stored). The levels come from a constant series filtered by $4, so the
#: pool's prepared statement settles on one generic plan (a parameter in the series' bounds has the planner
#: plan every call anew, which costs more than running it). tests/test_log_proof_cost.py checks every proof it
#: answers against RFC 9162.
INCLUSION_READ = f"""
SELECT cp.newest, cp.n AS size,
       (SELECT root_hash FROM {CHECKPOINTS} WHERE tree_size = cp.n) AS root,
       (SELECT root_hash FROM {CHECKPOINTS} WHERE tree_size = $5) AS held_root,
       f.leaf_index, f.leaf_hash,
       ARRAY(SELECT s.leaf_hash FROM {LEAVES} s
             WHERE $4 > 0 AND s.leaf_index >= (f.leaf_index >> {tree.STORED_FROM}) << {tree.STORED_FROM}
               AND s.leaf_index < least(((f.leaf_index >> {tree.STORED_FROM}) + 1) << {tree.STORED_FROM}, cp.n)
             ORDER BY s.leaf_index) AS block,
       ARRAY(SELECT n.hash FROM generate_series({tree.STORED_FROM}, 62) AS l
             LEFT JOIN {NODES} n ON n.level = l AND n.idx = (f.leaf_index >> l) # 1
             WHERE l < $4 AND cp.n >> l > 0 ORDER BY l) AS siblings,
       ARRAY(SELECT s.leaf_hash FROM {LEAVES} s
             WHERE $4 > 0 AND cp.n <> $6 AND s.leaf_index >= (cp.n >> {tree.STORED_FROM}) << {tree.STORED_FROM}
               AND s.leaf_index < cp.n
             ORDER BY s.leaf_index) AS edge_block,
       ARRAY(SELECT n.hash FROM generate_series({tree.STORED_FROM}, 62) AS l
             LEFT JOIN {NODES} n ON n.level = l AND n.idx = (cp.n >> l) - 1
             WHERE l < $4 AND cp.n <> $6 AND (cp.n >> l) & 1 = 1 ORDER BY l) AS edge
FROM (SELECT newest, coalesce($3::bigint, newest) AS n FROM (SELECT max(tree_size) AS newest FROM {CHECKPOINTS}) x) cp
LEFT JOIN {LEAVES} f ON f.battery_id = $1 AND f.sequence = $2
"""


def _block(first: int, hashes: Sequence[bytes]) -> dict[int, bytes]:
    return {first + k: h for k, h in enumerate(hashes)}


async def inclusion_read(
    conn: asyncpg.Connection,
    battery_id: str,
    sequence: int,
    size: int | None,
    cut: int,
    held_size: int,
    edge_size: int,
) -> InclusionRead:
    """Everything an inclusion proof reads from the store, in one round trip (`INCLUSION_READ`)."""
    row = await conn.fetchrow(INCLUSION_READ, battery_id, sequence, size, cut, held_size, edge_size)
    m, n = row["leaf_index"], row["size"]
    low = min(cut, tree.STORED_FROM)  # the levels below the cut folded from leaves
    nodes: dict[NodeKey, bytes] = {}
    if m is not None:
        siblings = [(level, (m >> level) ^ 1) for level in range(low)]
        nodes.update(tree.from_leaves(siblings, _block(tree.block_start(m), row["block"])))
        for level, h in enumerate(row["siblings"], tree.STORED_FROM):
            if h is not None:
                nodes[(level, (m >> level) ^ 1)] = h
    if n is not None:
        edge_low = [(level, (n >> level) - 1) for level in range(low) if n >> level & 1]
        nodes.update(tree.from_leaves(edge_low, _block(tree.block_start(n), row["edge_block"])))
        edge = (level for level in range(tree.STORED_FROM, min(cut, n.bit_length())) if n >> level & 1)
        for level, h in zip(edge, row["edge"], strict=False):
            if h is not None:
                nodes[(level, (n >> level) - 1)] = h
    return InclusionRead(
        None if row["newest"] is None else int(row["newest"]),
        None if n is None else int(n),
        row["root"],
        row["held_root"],
        None if m is None else int(m),
        row["leaf_hash"],
        nodes,
    )


@dataclass(frozen=True, slots=True)
class ProofRead:
    newest: int | None  # the newest checkpoint's tree size (None: none signed yet)
    roots: dict[int, bytes]  # the signed roots of the tree sizes asked for that have a checkpoint
    nodes: dict[NodeKey, bytes]


#: The newest checkpoint's size (as level -1) and the signed roots asked for (level -2, by tree size) ride along
#: with the nodes, so a consistency proof is one round trip.
NODES_AND_NEWEST = f"""
SELECT -1::smallint AS level, max(tree_size) AS idx, NULL::bytea AS hash FROM {CHECKPOINTS}
UNION ALL SELECT -2::smallint, tree_size, root_hash FROM {CHECKPOINTS} WHERE tree_size = ANY($4::bigint[])
UNION ALL SELECT 0::smallint, leaf_index, leaf_hash FROM {LEAVES} WHERE leaf_index = ANY($1::bigint[])
UNION ALL SELECT n.level, n.idx, n.hash FROM {NODES} n
JOIN unnest($2::smallint[], $3::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx
"""


async def nodes_and_newest(conn: asyncpg.Connection, keys: Iterable[NodeKey], sizes: Iterable[int]) -> ProofRead:
    wanted = sorted(set(keys))
    leaves, upper = tree.split_keys(wanted)
    rows = await conn.fetch(
        NODES_AND_NEWEST,
        leaves,
        [k[0] for k in upper],
        [k[1] for k in upper],
        sorted(set(sizes)),
    )
    newest = next(r["idx"] for r in rows if r["level"] == -1)
    roots = {int(r["idx"]): r["hash"] for r in rows if r["level"] == -2}
    found = _with_folded(wanted, (r for r in rows if r["level"] >= 0))
    return ProofRead(None if newest is None else int(newest), roots, found)


#: Stored nodes by ranges of one level each (level 0: the leaves; a range below `tree.STORED_FROM` is read as
#: its leaves and folded): what the read side takes in to hold the top of the tree (`tree.HeldTree.growth`).
#: One index range scan per range: OFFSET 0 keeps each LATERAL subquery whole (pulled up into a join, the
#: planner would rather scan the whole table for a few thousand rows of it).
NODE_RANGES = f"""
SELECT 0::smallint AS level, f.leaf_index AS idx, f.leaf_hash AS hash
FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi)
CROSS JOIN LATERAL (SELECT leaf_index, leaf_hash FROM {LEAVES} WHERE leaf_index >= r.lo AND leaf_index < r.hi OFFSET 0) f
UNION ALL
SELECT r.level, n.idx, n.hash
FROM unnest($3::smallint[], $4::bigint[], $5::bigint[]) AS r(level, lo, hi)
CROSS JOIN LATERAL (SELECT idx, hash FROM {NODES} WHERE level = r.level AND idx >= r.lo AND idx < r.hi OFFSET 0) n
"""


async def node_ranges(conn: asyncpg.Connection, ranges: Sequence[tuple[int, int, int]]) -> dict[NodeKey, bytes]:
    if not ranges:
        return {}
    leaves, upper = tree.split_ranges(ranges)
    rows = await conn.fetch(
        NODE_RANGES,
        [r[0] for r in leaves],
        [r[1] for r in leaves],
        [r[0] for r in upper],
        [r[1] for r in upper],
        [r[2] for r in upper],
    )
    found = {(r["level"], r["idx"]): r["hash"] for r in rows}  # with the leaves read to fold the levels below
    found.update(tree.ranges_from_leaves(ranges, {i: h for (level, i), h in found.items() if level == 0}))
    return found


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


@dataclass(frozen=True, slots=True)
class BatteryLeaf:
    sequence: int
    leaf_index: int
    leaf_hash: bytes


async def leaves_of_battery(conn: asyncpg.Connection, battery_id: str) -> list[BatteryLeaf]:
    """Every leaf the log holds for the battery's events, in leaf order (an event held twice: twice)."""
    rows = await conn.fetch(
        f"SELECT sequence, leaf_index, leaf_hash FROM {LEAVES} WHERE battery_id = $1 ORDER BY leaf_index", battery_id
    )
    return [BatteryLeaf(r["sequence"], int(r["leaf_index"]), bytes(r["leaf_hash"])) for r in rows]


async def queued_of_battery(conn: asyncpg.Connection, battery_id: str) -> set[int]:
    rows = await conn.fetch(
        f"SELECT u.sequence FROM {PENDING} p, unnest(p.battery_ids, p.sequences) AS u(battery_id, sequence) "
        "WHERE u.battery_id = $1",
        battery_id,
    )
    return {r["sequence"] for r in rows}
