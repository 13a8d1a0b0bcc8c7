"""The top of the tree the events service holds in memory (services/events/log/tree.py), pure: proofs assembled
from the held levels and the stored nodes below the cut are the proofs RFC 9162 defines, computed here from
scratch over the leaves (§2.1.3.1 PATH, §2.1.4.1 SUBPROOF, written out independently of the node store), for
every way the held tree can have grown; and a stored node that is not what the signed root commits to is
never held."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.events.log import tree
from services.events.log.tree import NOTHING_HELD, HeldTree
from shared.contract import tlog
from shared.contract.tlog import NodeKey


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf hashes."""
    if not leaves:
        return tlog.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return tlog.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _leaves(n: int) -> list[bytes]:
    return [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _store(leaves: list[bytes]) -> dict[NodeKey, bytes]:
    """Every complete subtree, as the sequencer stores them (level 0: the leaves)."""
    return {**{(0, i): h for i, h in enumerate(leaves)}, **tlog.compact_nodes(0, leaves, tlog.getter({}))}


def _grow(held: HeldTree, size: int, store: dict[NodeKey, bytes], leaves: list[bytes]) -> HeldTree:
    """What the service does on a new checkpoint: read what `growth` names, take it in."""
    wanted = {(level, i) for level, lo, hi in held.growth(size) for i in range(lo, hi)}
    return held.grown(size, _mth(leaves[:size]), {k: store[k] for k in wanted})


@pytest.fixture(autouse=True, scope="module")
def few_upper_levels() -> Iterator[None]:
    """Hold the top 3 levels, so trees of a few hundred leaves have several levels below the cut (module scope:
    hypothesis runs a test's examples inside one function-scoped fixture)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tree, "UPPER_LEVELS", 3)
        yield


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proofs_from_the_held_tree_are_the_rfc_9162_proofs_computed_from_scratch(data: st.DataObject) -> None:
    total = data.draw(st.integers(min_value=1, max_value=600), label="leaves")
    leaves, store = _leaves(total), _store(_leaves(total))
    # The held tree grows checkpoint by checkpoint, the cut rising with the size.
    checkpoints = sorted(set(data.draw(st.lists(st.integers(1, total), min_size=1, max_size=5), label="sizes")))
    held = HeldTree()
    for size in checkpoints:
        held = _grow(held, size, store, leaves)
        assert held.size == size and held.cut == tree.cut_for(size)
        assert sum(len(v) for v in held.levels.values()) < 2 ** (tree.UPPER_LEVELS + 1)
    for _ in range(8):
        n = data.draw(st.integers(1, held.size), label="tree size")
        m = data.draw(st.integers(0, n - 1), label="leaf")
        keys = held.unheld(tlog.needed_for_inclusion(m, n), n)
        assert all(level < held.cut for level, _ in keys)  # the held levels are never read from the store
        proof = tlog.inclusion_proof(m, n, held.getter({k: store[k] for k in keys}))
        assert proof == _path(m, leaves[:n])
        tlog.verify_inclusion(leaves[m], m, n, proof, _mth(leaves[:n]))
        first = data.draw(st.integers(1, n), label="first")
        keys = held.unheld(tlog.needed_for_consistency(first, n), n)
        proof = tlog.consistency_proof(first, n, held.getter({k: store[k] for k in keys}))
        assert proof == _subproof(first, leaves[:n], True)
        tlog.verify_consistency(first, n, proof, _mth(leaves[:first]), _mth(leaves[:n]))


def _read_below_the_cut(held: HeldTree, m: int, store: dict[NodeKey, bytes]) -> dict[NodeKey, bytes]:
    """What the inclusion statement reads for leaf m in the held tree's own size (log/repository.INCLUSION_READ):
    the stored sibling of the leaf's ancestor at each level below the cut."""
    return {
        (level, (m >> level) ^ 1): store[(level, (m >> level) ^ 1)]
        for level in range(min(held.cut, held.size.bit_length()))
        if (level, (m >> level) ^ 1) in store and (((m >> level) ^ 1) + 1) << level <= held.size
    }


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_inclusion_path_in_the_held_size_is_the_rfc_9162_path(data: st.DataObject) -> None:
    total = data.draw(st.integers(min_value=1, max_value=600), label="leaves")
    leaves, store = _leaves(total), _store(_leaves(total))
    held = HeldTree()
    for size in sorted(set(data.draw(st.lists(st.integers(1, total), min_size=1, max_size=4), label="sizes"))):
        held = _grow(held, size, store, leaves)
        for m in {0, size - 1, *data.draw(st.lists(st.integers(0, size - 1), max_size=6), label="leaves asked")}:
            path = held.inclusion_path(m, _read_below_the_cut(held, m, store))
            assert path == _path(m, leaves[:size]) == tlog.inclusion_proof(m, size, tlog.getter(store))


def test_the_inclusion_path_of_every_leaf_of_small_trees_is_the_rfc_9162_path() -> None:
    for size in range(1, 70):
        leaves = _leaves(size)
        store = _store(leaves)
        held = _grow(HeldTree(), size, store, leaves)
        for m in range(size):
            assert held.inclusion_path(m, _read_below_the_cut(held, m, store)) == _path(m, leaves)


def test_the_inclusion_path_refuses_a_missing_node_and_a_tree_not_held() -> None:
    leaves = _leaves(100)  # 7 bits: cut 4
    store = _store(leaves)
    held = _grow(HeldTree(), 100, store, leaves)
    with pytest.raises(tlog.LogError, match="lacks node 2/"):
        held.inclusion_path(5, {k: v for k, v in _read_below_the_cut(held, 5, store).items() if k[0] != 2})
    with pytest.raises(tlog.LogError):
        held.inclusion_path(100, store)  # not a leaf of the tree
    with pytest.raises(tlog.LogError):
        HeldTree(100, _mth(leaves), NOTHING_HELD).inclusion_path(5, store)  # nothing held: no right edge


def test_a_grown_tree_reads_only_what_the_new_checkpoint_adds() -> None:
    leaves = _leaves(300)
    store = _store(leaves)
    held = _grow(HeldTree(), 200, store, leaves)  # 8 bits: cut 5
    ranges = held.growth(230)  # still cut 5: the new nodes at levels 5..7, the right edge below 5
    assert ranges == [(1, 114, 115), (2, 56, 57), (5, 6, 7)]
    grown = _grow(held, 230, store, leaves)
    assert all(grown.levels[level][: len(held.levels[level])] == held.levels[level] for level in held.levels)
    bigger = held.growth(300)  # 9 bits: cut 6, level 5 let go of
    assert {level for level, _, _ in bigger if level >= 6} == {6, 7, 8} and 5 not in _grown_levels(held, 300, store)


def _grown_levels(held: HeldTree, size: int, store: dict[NodeKey, bytes]) -> set[int]:
    return set(_grow(held, size, store, _leaves(size)).levels)


@pytest.mark.parametrize("where", ["at the cut", "above the cut", "right edge below the cut", "a leaf"])
def test_a_tampered_stored_node_is_never_held(where: str) -> None:
    leaves = _leaves(333)  # 9 bits: cut 6
    store = _store(leaves)
    cut = tree.cut_for(333)
    key = {
        "at the cut": (cut, 2),
        "above the cut": (cut + 1, 1),
        "right edge below the cut": (2, (333 >> 2) - 1),
        "a leaf": (0, 332),  # the right edge's last leaf: the root folds it
    }[where]
    tampered = {**store, key: tlog.leaf_hash(b"tampered")}
    with pytest.raises(tlog.LogError):
        _grow(HeldTree(), 333, tampered, leaves)
    # ...and a tree already held does not take in a tampered node of a larger tree either.
    held = _grow(HeldTree(), 300, store, leaves)
    later = {**store, (cut, 4): tlog.leaf_hash(b"tampered")}
    with pytest.raises(tlog.LogError):
        _grow(held, 333, later, leaves)


def test_a_held_tree_is_one_checkpoint_s_and_nothing_held_reads_everything() -> None:
    leaves = _leaves(100)
    store = _store(leaves)
    held = _grow(HeldTree(), 100, store, leaves)
    other = _leaves(101)[1:]  # another history of the same size
    with pytest.raises(tlog.LogError):  # the held nodes do not make up the other history's root
        held.grown(100, _mth(other), store)
    with pytest.raises(tlog.LogError):
        held.grown(99, _mth(leaves[:99]), {})  # fewer leaves: not an extension
    # A tree larger than the held one is read from the store whole; so is every node when nothing is held.
    keys = tlog.needed_for_inclusion(5, 100)
    assert held.unheld(keys, 101) == keys
    assert HeldTree(100, _mth(leaves), NOTHING_HELD).unheld(keys, 100) == keys


# ---- the store keeps nodes from tree.STORED_FROM up; the levels below are folded from their leaves ----
@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), appended=st.lists(st.integers(1, 40), max_size=6))
def test_the_store_keeps_only_nodes_from_the_stored_level_and_folds_the_ones_below_to_rfc_9162(
    size: int, appended: list[int]
) -> None:
    leaves = _leaves(size + sum(appended))
    kept: dict[NodeKey, bytes] = tree.storable(tlog.compact_nodes(0, leaves[:size], tlog.getter({})))
    done = size
    for n in appended:  # as the sequencer appends: its frontier read from the kept nodes and the leaves
        stored = {**kept, **{(0, i): h for i, h in enumerate(leaves[:done])}}
        frontier = tree.from_leaves(tlog.frontier_keys(done), dict(enumerate(leaves[:done])))
        frontier.update({k: stored[k] for k in tlog.frontier_keys(done) if k[0] >= tree.STORED_FROM})
        created = tlog.compact_nodes(done, leaves[done : done + n], tlog.getter(frontier))
        kept.update(tree.storable(created))
        done += n
    assert all(level >= tree.STORED_FROM for level, _ in kept)
    every = tlog.compact_nodes(0, leaves, tlog.getter({}))
    assert kept == {k: h for k, h in every.items() if k[0] >= tree.STORED_FROM}
    below = [k for k in every if k[0] < tree.STORED_FROM]
    assert tree.from_leaves(below, dict(enumerate(leaves))) == {k: every[k] for k in below}
    for level, index in below[:20]:  # each is the MTH of its 2^level leaves
        start, end = tree.leaf_span(level, index)
        assert every[(level, index)] == _mth(leaves[start:end])


def test_a_subtree_below_the_stored_level_with_a_leaf_missing_is_left_out_as_a_missing_node_would_be() -> None:
    leaves = dict(enumerate(_leaves(16)))
    del leaves[5]
    folded = tree.from_leaves([(1, 2), (1, 3), (2, 0), (2, 1), (3, 1), (0, 5), (0, 6)], leaves)
    assert set(folded) == {(1, 3), (2, 0), (3, 1), (0, 6)}  # (1, 2), (2, 1) and (0, 5) need leaf 5


def test_reads_below_the_stored_level_are_their_leaves_each_read_once() -> None:
    leaves, stored = tree.split_keys([(0, 3), (2, 1), (4, 7), (1, 3), (5, 0)])
    assert leaves == [3, 4, 5, 6, 7] and stored == [(4, 7), (5, 0)]
    ranges, nodes = tree.split_ranges([(0, 0, 10), (1, 0, 8), (3, 2, 3), (2, 7, 8), (4, 0, 2), (2, 5, 5)])
    assert ranges == [(0, 24), (28, 32)] and nodes == [(4, 0, 2)]
