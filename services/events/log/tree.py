"""The top of the log's Merkle tree, held in memory by the read side once it has been checked against a signed
checkpoint (pure: no I/O; `service` reads what it asks for).

A complete subtree's hash never changes once the tree has grown over it, so a process keeps the top
`UPPER_LEVELS` levels of the tree of the newest checkpoint — at most 2^(UPPER_LEVELS+1) hashes whatever the
log's size — and a proof reads from the database only the few stored nodes below `cut` (at 1,000,000 leaves:
six levels of twenty). Nothing is held unchecked: every node taken in is the hash of its two children (each
held too), except at the cut, and the root folded from the held right edge and the stored nodes below the cut
must be the root the log signed. So a node tampered in the store is never held, and what is held is the tree
of one checkpoint, named by its size and root: when the store's checkpoint of that size has another root, or
the store holds fewer leaves (a rewritten history, a restored backup), `service` lets go of it and reads the
tree again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.contract import tlog
from shared.contract.tlog import NodeKey

#: Levels held in memory, counted down from the root.
UPPER_LEVELS = 14
#: The lowest level of interior nodes the store keeps. A complete subtree below it spans at most 2^STORED_FROM
#: leaves and is folded from them when read (`from_leaves`): storing every level costs about one node row per
#: leaf, storing from level 4 up one per 16 (measured at 1,000,000 leaves: the sequencer's node INSERT took
#: 4.2 to 5.1 ms per 1,000 events, about a third of the log's writes), while a proof reads one run of at most 16
#: leaves instead of three nodes and a leaf.
STORED_FROM = 4
#: The leaves of one stored-level block: [i·BLOCK, (i+1)·BLOCK).
BLOCK = 1 << STORED_FROM
#: A cut above every level: nothing held, every node read from the store.
NOTHING_HELD = 63

#: (level, first index, end index): stored complete subtrees of one level to read.
NodeRange = tuple[int, int, int]


def cut_for(size: int) -> int:
    """The lowest level held for the tree of `size` leaves."""
    return max(0, size.bit_length() - UPPER_LEVELS)


def _edge_levels(size: int, cut: int) -> list[int]:
    """The levels below the cut of the complete subtrees at the tree's right edge (the set bits of `size`)."""
    return [level for level in range(min(cut, size.bit_length())) if size >> level & 1]


def storable(nodes: Mapping[NodeKey, bytes]) -> dict[NodeKey, bytes]:
    """The nodes the store keeps (level STORED_FROM and above) of those an append created."""
    return {key: h for key, h in nodes.items() if key[0] >= STORED_FROM}


def block_start(leaf: int) -> int:
    """The first leaf of the block of `BLOCK` leaves that holds `leaf`."""
    return leaf >> STORED_FROM << STORED_FROM


def leaf_span(level: int, index: int) -> tuple[int, int]:
    """The leaves [start, end) of the complete subtree (level, index)."""
    return index << level, (index + 1) << level


def split_keys(keys: Iterable[NodeKey]) -> tuple[list[int], list[NodeKey]]:
    """What the store reads for these complete subtrees: the leaves (level 0, and every leaf of a subtree below
    STORED_FROM, which is folded from them), and the stored nodes."""
    leaves: set[int] = set()
    stored: set[NodeKey] = set()
    for level, index in keys:
        if level >= STORED_FROM:
            stored.add((level, index))
        else:
            leaves.update(range(*leaf_span(level, index)))
    return sorted(leaves), sorted(stored)


def split_ranges(ranges: Iterable[NodeRange]) -> tuple[list[tuple[int, int]], list[NodeRange]]:
    """`split_keys` for ranges of one level each: leaf ranges [lo, hi), and stored-node ranges."""
    leaves: list[tuple[int, int]] = []
    stored: list[NodeRange] = []
    for level, lo, hi in ranges:
        if level >= STORED_FROM:
            stored.append((level, lo, hi))
        elif lo < hi:
            leaves.append((lo << level, hi << level))
    merged: list[tuple[int, int]] = []  # the levels below overlap: each leaf read once
    for lo, hi in sorted(leaves):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged, stored


def from_leaves(keys: Iterable[NodeKey], leaves: Mapping[int, bytes]) -> dict[NodeKey, bytes]:
    """The complete subtrees below STORED_FROM among `keys` whose leaves are all in `leaves` (by index), folded
    (RFC 9162 MTH of 2^level leaves); the others are left out, as a missing stored node would be."""
    memo: dict[NodeKey, bytes | None] = {}

    def node(level: int, index: int) -> bytes | None:
        if level == 0:
            return leaves.get(index)
        key = (level, index)
        if key not in memo:
            left, right = node(level - 1, 2 * index), node(level - 1, 2 * index + 1)
            memo[key] = None if left is None or right is None else tlog.node_hash(left, right)
        return memo[key]

    out: dict[NodeKey, bytes] = {}
    for level, index in keys:
        if level < STORED_FROM:
            h = node(level, index)
            if h is not None:
                out[(level, index)] = h
    return out


def ranges_from_leaves(ranges: Iterable[NodeRange], leaves: Mapping[int, bytes]) -> dict[NodeKey, bytes]:
    """`from_leaves` for every subtree of ranges of one level each below STORED_FROM."""
    keys = [(level, i) for level, lo, hi in ranges if 0 < level < STORED_FROM for i in range(lo, hi)]
    return from_leaves(sorted(keys), leaves)


@dataclass(frozen=True)
class HeldTree:
    """Every complete subtree at level `cut` or above of the tree of `size` leaves whose signed root is `root`
    (`levels[l][i]`: the subtree over leaves [i·2^l, (i+1)·2^l)), and the tree's right edge below the cut (the
    complete subtrees the root folds, `edge`). `size` 0: nothing held yet."""

    size: int = 0
    root: bytes = tlog.EMPTY_ROOT
    cut: int = NOTHING_HELD
    levels: Mapping[int, list[bytes]] = field(default_factory=dict)
    edge: Mapping[NodeKey, bytes] = field(default_factory=dict)
    #: By level l: MTH(D[(size >> l) << l : size]), the partial subtree at the right edge that an inclusion proof
    #: in this tree has at level l when the leaf's ancestor there is the last complete one (None where size has
    #: no bits below l). The same for every leaf, so folded once, when the tree is taken in (`inclusion_path`).
    partials: tuple[bytes | None, ...] = ()

    @property
    def edge_size(self) -> int:
        """The tree size whose right edge below the cut is held (0: none, when nothing is held)."""
        return self.size if self.cut < NOTHING_HELD else 0

    def get(self, level: int, index: int) -> bytes | None:
        held = self.levels.get(level)
        if held is not None:
            return held[index] if index < len(held) else None
        return self.edge.get((level, index))

    def growth(self, size: int) -> list[NodeRange]:
        """What to read from the store to hold the tree of `size` (≥ this one's) leaves: the nodes at or above
        its cut that this tree lacks, and the right edge below the cut (for the root)."""
        cut = cut_for(size)
        ranges = [
            (level, len(self.levels.get(level, ())), size >> level)
            for level in range(cut, size.bit_length())
            if len(self.levels.get(level, ())) < size >> level
        ]
        edge = [(level, (size >> level) - 1, size >> level) for level in _edge_levels(size, cut)]
        return edge + ranges

    def grown(self, size: int, root: bytes, stored: Mapping[NodeKey, bytes]) -> HeldTree:
        """This tree extended to the checkpoint (`size`, `root`) with the nodes `growth(size)` named, each checked;
        raises LogError (and holds nothing of it) if a node is missing, is not the hash of its children, or the
        nodes do not make up `root`."""
        if size < self.size:
            raise tlog.LogError(f"the tree of {size} leaves is smaller than the one held ({self.size})")

        def read(level: int, index: int) -> bytes:
            try:
                return stored[(level, index)]
            except KeyError:
                raise tlog.LogError(f"the log store lacks node {level}/{index}") from None

        cut = cut_for(size)
        levels: dict[int, list[bytes]] = {}
        for level in range(cut, size.bit_length()):
            held = self.levels.get(level, [])
            new = [read(level, i) for i in range(len(held), size >> level)]
            if level > cut:
                below = levels[level - 1]
                for i, h in enumerate(new, len(held)):
                    if h != tlog.node_hash(below[2 * i], below[2 * i + 1]):
                        raise tlog.LogError(f"stored node {level}/{i} is not the hash of its two children")
            levels[level] = held + new if new else held

        def node(level: int, index: int) -> bytes:
            return levels[level][index] if level >= cut else read(level, index)

        if tlog.root(size, node) != root:
            raise tlog.LogError(f"the stored nodes do not make up the root the log signed for {size} leaves")
        edge = {(level, (size >> level) - 1): read(level, (size >> level) - 1) for level in _edge_levels(size, cut)}
        return HeldTree(size, root, cut, levels, edge, _partials(size, node))

    def inclusion_path(self, index: int, stored: Mapping[NodeKey, bytes]) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size]) in this tree, bottom up, straight from the nodes: at each level
        the sibling of the leaf's ancestor — complete (from `stored`, else held), the right edge's partial subtree
        (`partials`), or none where the ancestor is the last node of its level and has no sibling. What
        `tlog.inclusion_proof` assembles through its plan, without the plan (tests/test_log_tree.py: equal, and
        the RFC's PATH, for every leaf of every tree it grows). Raises LogError where a node is missing."""
        size = self.size
        if not 0 <= index < size or self.edge_size != size:
            raise tlog.LogError(f"no inclusion path of leaf {index} from the tree held of {size} leaves")
        proof = []
        for level in range(size.bit_length()):
            sibling = (index >> level) ^ 1
            start = sibling << level
            if start >= size:
                continue  # the ancestor is the last node of its level: no sibling, no hash
            if start + (1 << level) > size:
                h = self.partials[level]
            else:
                h = stored.get((level, sibling))
                if h is None:
                    h = self.get(level, sibling)
            if h is None:
                raise tlog.LogError(f"the log store lacks node {level}/{sibling}")
            proof.append(h)
        return proof

    def getter(self, stored: Mapping[NodeKey, bytes]) -> tlog.NodeGetter:
        """Nodes from what a proof read from the store, else from the held tree."""

        def get(level: int, index: int) -> bytes:
            h = stored.get((level, index))
            if h is None:
                h = self.get(level, index)
            if h is None:
                raise tlog.LogError(f"the log store lacks node {level}/{index}")
            return h

        return get

    def unheld(self, keys: set[NodeKey], size: int) -> set[NodeKey]:
        """The nodes of a proof in the tree of `size` leaves that must be read from the store."""
        if size > self.size:
            return keys
        return {(level, i) for level, i in keys if level < self.cut and (level, i) not in self.edge}


def _partials(size: int, node: tlog.NodeGetter) -> tuple[bytes | None, ...]:
    """`HeldTree.partials` of the tree of `size` leaves: its right-edge subtrees (the set bits of size) folded
    from the lowest up, each level's the fold of those below it."""
    out: list[bytes | None] = []
    acc: bytes | None = None
    for level in range(size.bit_length()):
        out.append(acc)
        if size >> level & 1:
            h = node(level, (size >> level) - 1)
            acc = h if acc is None else tlog.node_hash(h, acc)
    return tuple(out)


@dataclass
class ReadTree:
    """The held tree of one app (`service` swaps it for a newer one under `lock`, one refresh at a time)."""

    held: HeldTree = field(default_factory=HeldTree)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
