"""The transparency log: the sequencer appends committed ledger events to the Merkle tree in order, the
checkpointer signs the tree head, and the read side answers proofs and proof bundles. The formats are the
published contract (`shared.contract.tlog`); here is the orchestration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.log import repository as repo
from services.events.log.tree import HeldTree, ReadTree, storable
from services.events.models import SCHEMA
from shared.contract import tlog
from shared.contract.streams import (
    LOG_CHECKPOINT,
    SOURCE_EVENTS,
    TOPIC_LOG_CHECKPOINTS,
    LogCheckpointData,
    envelope,
)
from shared.db import raw_connection
from shared.outbox import ClaimCursor, OutboxMessage, enqueue
from shared.problems import NotFound, Problem, Unavailable, Unprocessable, field_error

log = logging.getLogger("batterytrace.events.log")


@dataclass(frozen=True)
class LogConfig:
    origin: str = "batterytrace.kr/log"
    signing_key: str | None = None  # C2SP signer key (PRIVATE+KEY+...); None: an ephemeral key per process
    checkpoint_interval_s: float = 10.0
    sequencer_interval_s: float = 0.25
    #: An idle sequencer waits longer between polls, doubling up to this (never past the checkpoint interval,
    #: and a checkpoint sequences first), so an idle log costs two polls a second, not twenty.
    sequencer_idle_max_s: float = 0.5
    batch_size: int = 5000
    witness_keys: tuple[str, ...] = ()  # verifier keys of the witnesses whose cosignatures are accepted

    @classmethod
    def from_key_file(cls, path: Path | None, **kw: Any) -> LogConfig:
        return cls(signing_key=path.read_text().strip() if path else None, **kw)


def load_signer(config: LogConfig) -> tlog.Signer:
    if config.signing_key:
        signer = tlog.Signer.decode(config.signing_key)
        if signer.name != config.origin:
            raise ValueError(f"the log signing key is named {signer.name!r}, but the log's origin is {config.origin!r}")
        return signer
    log.warning("no log signing key configured: checkpoints are signed with a key made for this process only")
    return tlog.Signer.generate(config.origin)


class LogUnavailable(Unavailable):
    code, title = "log-not-ready", "The log has no checkpoint yet"


# ---- writing: sequencer and checkpointer ----
async def append_pending(session: AsyncSession, limit: int, after: int = 0) -> repo.Taken:
    """Append queued ledger events to the tree (one transaction, one sequencer at a time): about `limit` of them,
    from the queue rows after `after` (a `ClaimCursor`'s start). Returns what it took."""
    conn = await raw_connection(session)
    if not await repo.try_lock(conn, repo.SEQUENCER_LOCK):
        return repo.Taken([], [])
    taken = await repo.take_and_append(conn, limit, after)
    if not taken.leaves:
        return taken
    frontier = await repo.nodes(conn, tlog.frontier_keys(taken.size))
    created = tlog.compact_nodes(taken.size, taken.leaves, tlog.getter(frontier))
    await repo.insert_nodes(conn, storable(created))
    return taken


async def make_checkpoint(session: AsyncSession, signer: tlog.Signer) -> repo.StoredCheckpoint | None:
    """Sign the current tree head if it grew since the last checkpoint, store it and publish it."""
    conn = await raw_connection(session)
    if not await repo.try_lock(conn, repo.CHECKPOINT_LOCK):
        return None
    size = await repo.tree_size(conn)
    last = await repo.latest_checkpoint(conn)
    if size == 0 or (last is not None and last.tree_size >= size):
        return None
    root = tlog.root(size, tlog.getter(await repo.nodes(conn, tlog.needed_for_root(size))))
    note = tlog.sign_note(tlog.Checkpoint(signer.name, size, root).body(), [signer]).encode()
    cp = repo.StoredCheckpoint(size, root, note, signer.verifier().encode())
    await repo.insert_checkpoint(conn, cp)
    await enqueue(session, SCHEMA, [checkpoint_message(cp, [])])  # then again with each cosignature
    return cp


def checkpoint_message(cp: repo.StoredCheckpoint, cosignatures: list[tuple[str, str]]) -> OutboxMessage:
    """The checkpoint as published (shared.contract.streams.LogCheckpointData): its note carries the
    cosignatures (witness, signature line) collected so far, so a reader can check each one itself."""
    cosigned_by = [witness for witness, _ in cosignatures]
    data = LogCheckpointData(
        tree_size=cp.tree_size,
        root_hash=cp.root_hash.hex(),
        log_key=cp.log_key,
        note=with_cosignatures(cp.note, cosignatures),
        cosigned_by=cosigned_by,
    )
    return OutboxMessage(
        topic=TOPIC_LOG_CHECKPOINTS,
        key=cp.log_key.split("+", 1)[0],
        payload=envelope(
            id=f"{cp.tree_size}:{len(cosigned_by)}",
            source=SOURCE_EVENTS,
            type=LOG_CHECKPOINT,
            subject=str(cp.tree_size),
            data=data.model_dump(),
        ),
    )


@dataclass
class LogWorker:
    """The sequencer and the checkpointer as background tasks. Any number of processes may run one: advisory
    locks let exactly one append and one sign at a time."""

    sessionmaker: async_sessionmaker[AsyncSession]
    config: LogConfig
    signer: tlog.Signer
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: Where the next take starts: taken rows leave dead entries in the queue's index until a vacuum, which a
    #: take from the first ID walks every time; a late-committing lower ID is waited at until its transaction
    #: has ended (as the outbox relay's claims do).
    _cursor: ClaimCursor = field(default_factory=ClaimCursor)
    #: Malformed queue rows seen (`repo.WELL_FORMED`): left in the queue as evidence, reported once each.
    set_aside: set[int] = field(default_factory=set)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self.sequence_once, self.config.sequencer_interval_s), name="log-sequencer"),
            asyncio.create_task(
                self._loop(self.checkpoint_once, self.config.checkpoint_interval_s), name="log-checkpointer"
            ),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def sequence_once(self) -> int:
        async with self.sessionmaker() as session, session.begin():
            taken = await append_pending(session, self.config.batch_size, self._cursor.start())
        if taken.snapshot is not None:
            # Committed. A malformed row set aside is passed like a taken one: it will never be taken.
            self._cursor.claimed(sorted([*taken.ids, *taken.set_aside]), taken.snapshot)
        new = sorted(set(taken.set_aside) - self.set_aside)
        if new:
            self.set_aside.update(new)
            log.warning(
                "log sequencer: queue rows %s are malformed (events.log_pending, repository.WELL_FORMED): set "
                "aside in the queue, their events are not in the log",
                new,
            )
        return len(taken.leaves)

    async def checkpoint_once(self) -> int:
        await self.sequence_once()
        async with self.sessionmaker() as session, session.begin():
            cp = await make_checkpoint(session, self.signer)
        return cp.tree_size if cp else 0

    async def _loop(self, job: Any, interval_s: float) -> None:
        idle_max = max(interval_s, min(self.config.sequencer_idle_max_s, self.config.checkpoint_interval_s))
        wait = interval_s
        while not self._stopping.is_set():
            try:
                busy = await job()
            except Exception as exc:  # the database may be away; try again later
                log.warning("log %s failed: %s: %s", job.__name__, exc.__class__.__name__, exc)
                busy = 0
            if job == self.sequence_once:
                if busy >= self.config.batch_size:
                    continue  # a backlog: go on at once
                wait = interval_s if busy else min(wait * 2, idle_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)


# ---- reading ----
async def newest(conn: asyncpg.Connection) -> repo.StoredCheckpoint:
    cp = await repo.latest_checkpoint(conn)
    if cp is None:
        raise LogUnavailable("No checkpoint has been signed yet; try again in a few seconds.")
    return cp


async def checkpoint_note(conn: asyncpg.Connection, size: int | None = None) -> str:
    """A checkpoint note with every cosignature collected so far."""
    cp = await newest(conn) if size is None else await repo.checkpoint_at(conn, size)
    if cp is None:
        raise NotFound(f"No checkpoint of tree size {size} was signed.", code="unknown-checkpoint")
    return with_cosignatures(cp.note, await repo.cosignatures(conn, cp.tree_size))


def with_cosignatures(note_text: str, cosigs: list[tuple[str, str]]) -> str:
    note = tlog.Note.parse(note_text)
    for _, line in cosigs:
        note = note.with_signature(line)
    return note.encode()


async def log_key(conn: asyncpg.Connection, signer: tlog.Signer | None) -> str:
    cp = await repo.latest_checkpoint(conn)
    if cp is not None:
        return cp.log_key
    if signer is None:
        raise LogUnavailable("No checkpoint has been signed yet; try again in a few seconds.")
    return signer.verifier().encode()


def _check_size(newest: int | None, tree_size: int | None, name: str) -> int:
    """The tree size asked for (default: the newest checkpoint's), refused beyond the newest checkpoint."""
    if newest is None:
        raise LogUnavailable("No checkpoint has been signed yet; try again in a few seconds.")
    if tree_size is None:
        return newest
    if tree_size > newest:
        raise Unprocessable(
            f"{name} {tree_size} is beyond the newest checkpoint ({newest}).",
            errors=[field_error(name, "at-most-newest-checkpoint", f"at most {newest}")],
        )
    return tree_size


async def hold(conn: asyncpg.Connection, tree: ReadTree) -> HeldTree:
    """Hold the top of the tree of the newest checkpoint: read what the held tree lacks, check it against the
    signed root, swap it in (one refresh at a time; a caller that waited finds it done). A store that no longer
    extends the held tree (a rewritten history, a restored backup) is read again from the start; one whose nodes
    do not make up its own signed root is held as nothing (every proof then reads every node from the store,
    and is checked as always), and logged."""
    async with tree.lock:
        cp = await repo.latest_checkpoint(conn)
        held = tree.held
        if cp is None:
            tree.held = HeldTree()
            return tree.held
        if (cp.tree_size, cp.root_hash) == (held.size, held.root):
            return held
        if cp.tree_size <= held.size:  # the same size signed with another root, or fewer leaves
            held = HeldTree()
        try:
            tree.held = held.grown(cp.tree_size, cp.root_hash, await repo.node_ranges(conn, held.growth(cp.tree_size)))
        except tlog.LogError as exc:
            if held.size:
                log.warning(
                    "the log store does not extend the tree held of %d leaves (%s); reading it anew", held.size, exc
                )
                fresh = HeldTree()
                try:
                    tree.held = fresh.grown(
                        cp.tree_size, cp.root_hash, await repo.node_ranges(conn, fresh.growth(cp.tree_size))
                    )
                    return tree.held
                except tlog.LogError as again:
                    exc = again
            log.error("the log store is inconsistent with its checkpoint of %d leaves: %s", cp.tree_size, exc)
            tree.held = HeldTree(cp.tree_size, cp.root_hash)
        return tree.held


class LogInconsistent(Problem):
    status, code, title = 500, "log-inconsistent", "The log's store is inconsistent"


def _inconsistent(what: str, exc: tlog.LogError) -> LogInconsistent:
    log.error("the log store gave %s that does not verify: %s", what, exc)
    return LogInconsistent(f"The log's store gave {what} that does not verify ({exc}); the operator is alerted.")


def _inclusion_proof(
    index: int, size: int, held: HeldTree, stored: Mapping[tlog.NodeKey, bytes], leaf: bytes | None, root: bytes | None
) -> list[bytes]:
    """The proof from the nodes read from the store and the held tree (in the held tree's own size, straight from
    its nodes: `HeldTree.inclusion_path`), checked against the signed root of its tree (when there is one) before
    anyone sees it."""
    try:
        if size == held.edge_size:
            proof = held.inclusion_path(index, stored)
        else:
            proof = tlog.inclusion_proof(index, size, held.getter(stored))
        if leaf is not None and root is not None:
            tlog.verify_inclusion(leaf, index, size, proof, root)
    except tlog.LogError as exc:
        raise _inconsistent(f"an inclusion proof of leaf {index} in the tree of {size}", exc) from None
    return proof


async def inclusion(
    conn: asyncpg.Connection, tree: ReadTree, battery_id: str, sequence: int, tree_size: int | None
) -> dict[str, Any]:
    """One statement reads the newest checkpoint's size, the leaf, and the stored nodes below the held top of the
    tree its proof needs; the proof is checked against the signed root of its tree size before it is answered
    (a tree size no checkpoint has has no signed root to check against). After a new checkpoint a process first
    takes in the new top of the tree (`hold`)."""
    held = tree.held if tree.held.size else await hold(conn, tree)
    for _ in range(3):
        cut, edge = held.cut, held.edge_size
        read = await repo.inclusion_read(conn, battery_id, sequence, tree_size, cut, held.size, edge)
        size = _check_size(read.newest, tree_size, "tree_size")
        index = read.leaf_index
        if index is None or index >= size:
            raise NotFound(
                f"Event {sequence} of battery {battery_id} is not in the tree of size {size}.", code="not-in-log"
            )
        if read.held_root != held.root or size > held.size:
            held = await hold(conn, tree)
            if held.cut != cut or size > held.size or (size == edge and held.edge_size != size):
                continue  # what was read below the old cut (or without the held edge) does not fit the new tree
        proof = _inclusion_proof(index, size, held, read.nodes, read.leaf_hash, read.root)
        return {"leaf_index": index, "tree_size": size, "audit_path": tlog.hexes(proof)}
    raise LogUnavailable("The log changed while the proof was read; try again.")


async def consistency(conn: asyncpg.Connection, tree: ReadTree, first: int, second: int) -> dict[str, Any]:
    """One statement reads the newest checkpoint's size, the two trees' signed roots and the proof's nodes that
    are not held; the proof is checked against both roots when both trees have a checkpoint."""
    if not 0 < first <= second:
        read = await repo.nodes_and_newest(conn, (), ())
        _check_size(read.newest, second, "second")
        raise Unprocessable(
            f"first ({first}) must be at least 1 and at most second ({second}).",
            errors=[field_error("first", "range", "1 <= first <= second")],
        )
    plan = tlog.consistency_plan(first, second)
    keys = tlog.plan_nodes(plan)
    held = tree.held
    read = await repo.nodes_and_newest(conn, held.unheld(keys, second), (first, second, held.size))
    _check_size(read.newest, second, "second")
    if held.size and read.roots.get(held.size) != held.root:  # the store changed under the held tree
        held = await hold(conn, tree)
        read = await repo.nodes_and_newest(conn, held.unheld(keys, second), (first, second))
    old, new = read.roots.get(first), read.roots.get(second)
    try:
        proof = tlog.assemble(plan, held.getter(read.nodes))
        if old is not None and new is not None:
            tlog.verify_consistency(first, second, proof, old, new)
    except tlog.LogError as exc:
        raise _inconsistent(f"a consistency proof from {first} to {second}", exc) from None
    return {"first": first, "second": second, "proof": tlog.hexes(proof)}


def audit(
    events: list[dict[str, Any]], leaves: dict[int, bytes], queued: set[int], twice: Iterable[int] = ()
) -> list[str]:
    """Compare a battery's ledger rows with what the log holds for it: an event the log holds that the ledger
    lost (a deleted row, a truncated table), a ledger event whose hash differs from its leaf (a rewritten row),
    a ledger event the log never received (written around the trigger), and an event the log holds more than
    once (`twice`: a queue row made by hand)."""
    problems = [f"the log holds event {seq} more than once" for seq in sorted(set(twice))]
    by_seq = {int(e["sequence"]): e for e in events}
    for seq in sorted(set(leaves) - set(by_seq)):
        problems.append(f"the log holds event {seq}, which the ledger no longer has")
    for seq, e in sorted(by_seq.items()):
        leaf = leaves.get(seq)
        if leaf is None:
            if seq not in queued:
                problems.append(f"event {seq} never reached the log")
        elif leaf != tlog.leaf_hash(bytes.fromhex(str(e["hash"]))):
            problems.append(f"event {seq} differs from what the log recorded for it")
    return problems


async def proof_bundle(
    conn: asyncpg.Connection, tree: ReadTree, battery_id: str, events: list[dict[str, Any]], *, partial: bool = False
) -> dict[str, Any]:
    """A battery's events, each with its inclusion proof against the newest checkpoint, and that checkpoint:
    enough to verify offline (`batterytrace verify`). Events newer than the checkpoint are listed without a
    proof (`pending`)."""
    cp = await newest(conn)
    held = tree.held
    if (held.size, held.root) != (cp.tree_size, cp.root_hash):
        held = await hold(conn, tree)
    first: dict[int, repo.BatteryLeaf] = {}  # each event's first leaf; an event held again goes to `twice`
    twice: set[int] = set()
    for leaf in await repo.leaves_of_battery(conn, battery_id):
        if leaf.sequence in first:
            twice.add(leaf.sequence)
        else:
            first[leaf.sequence] = leaf
    indexes = {seq: leaf.leaf_index for seq, leaf in first.items()}
    leaves = {seq: leaf.leaf_hash for seq, leaf in first.items()}
    needed: set[tlog.NodeKey] = set()
    for e in events:
        i = indexes.get(e["sequence"])
        if i is not None and i < cp.tree_size:
            needed |= tlog.needed_for_inclusion(i, cp.tree_size)
    stored = await repo.nodes(conn, held.unheld(needed, cp.tree_size))
    out = []
    for e in events:
        seq = e["sequence"]
        i = indexes.get(seq)
        entry: dict[str, Any] = {"event": e}
        if i is not None and i < cp.tree_size:
            proof = _inclusion_proof(i, cp.tree_size, held, stored, leaves.get(seq), cp.root_hash)
            entry["inclusion"] = {"leaf_index": i, "tree_size": cp.tree_size, "audit_path": tlog.hexes(proof)}
        else:
            entry["pending"] = True
        out.append(entry)
    # A partial view (a certifier's) cannot show what it hides; its events are each still proven.
    problems = [] if partial else audit(events, leaves, await repo.queued_of_battery(conn, battery_id), twice)
    if problems:
        log.error("ledger and log disagree for battery %s: %s", battery_id, "; ".join(problems))
    return {
        "format": "batterytrace-proof-bundle/1",
        "battery_id": battery_id,
        "partial": partial,
        "log_audit": {"leaves_in_log": len(leaves), "problems": problems},
        "log_key": cp.log_key,
        "checkpoint": with_cosignatures(cp.note, await repo.cosignatures(conn, cp.tree_size)),
        "events": out,
    }


async def add_cosignature(
    session: AsyncSession, tree_size: int, line: str, witness_keys: tuple[str, ...]
) -> dict[str, Any]:
    """Store a witness's signature on checkpoint `tree_size` if it is a valid signature by a configured key."""
    conn = await raw_connection(session)
    cp = await repo.checkpoint_at(conn, tree_size)
    if cp is None:
        raise NotFound(f"No checkpoint of tree size {tree_size} was signed.", code="unknown-checkpoint")
    note = tlog.Note.parse(cp.note)
    try:
        added = note.with_signature(line if line.endswith("\n") else line + "\n")
    except tlog.LogError as exc:
        raise Unprocessable(
            f"The cosignature is malformed: {exc}", errors=[field_error("signature", "signed-note-line", str(exc))]
        ) from None
    sig = added.signatures[-1]
    verifiers = [tlog.Verifier.decode(k) for k in witness_keys]
    known = {(v.name, v.key_id) for v in verifiers}
    if (sig.name, sig.key_id) not in known:
        raise Problem(
            f"{sig.name} is not a configured witness of this log.",
            status=403,
            code="unknown-witness",
            title="Not a witness",
        )
    try:
        names = tlog.Note(note.text, (sig,)).verified_by(verifiers)
    except tlog.LogError:
        names = []
    if sig.name not in names:
        raise Unprocessable(
            f"The signature of {sig.name} does not verify over checkpoint {tree_size}.",
            errors=[field_error("signature", "valid-signature", "does not verify over the checkpoint")],
        )
    stored = await repo.insert_cosignature(conn, tree_size, sig.name, sig.line())
    cosignatures = await repo.cosignatures(conn, tree_size)
    cosigned = [w for w, _ in cosignatures]
    if stored:  # published again, with this cosignature (the portal shows who cosigned)
        await enqueue(session, SCHEMA, [checkpoint_message(cp, cosignatures)])
    return {"tree_size": tree_size, "witness": sig.name, "stored": stored, "cosigned_by": cosigned}
