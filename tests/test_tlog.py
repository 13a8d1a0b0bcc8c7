"""The transparency log's formats against published reference vectors (RFC 6962/9162 test data of the
Certificate Transparency project; the signed note of Go's golang.org/x/mod/sumdb/note documentation), and
generated proofs against the RFC's verification algorithms for every shape of tree up to 70 leaves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract import tlog

CT_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


class Store:
    """Complete subtree hashes built incrementally with `compact_nodes`, as the events service stores them."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0

    def append(self, leaves: list[bytes]) -> None:
        frontier = {k: self.nodes[k] for k in tlog.frontier_keys(self.size)}  # all an append may read
        created = tlog.compact_nodes(self.size, leaves, tlog.getter(frontier))
        for i, leaf in enumerate(leaves):
            self.nodes[(0, self.size + i)] = leaf
        self.nodes.update(created)
        self.size += len(leaves)

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


def _ct_store() -> Store:
    store = Store()
    for leaf in CT_LEAVES:  # one at a time: every frontier shape
        store.append([tlog.leaf_hash(leaf)])
    return store


def test_roots_match_rfc6962_reference_vectors() -> None:
    hashes = [tlog.leaf_hash(x) for x in CT_LEAVES]
    store = _ct_store()
    for n in range(len(CT_LEAVES) + 1):
        assert tlog.root_from_leaves(hashes[:n]).hex() == CT_ROOTS[n]
        assert tlog.root(n, store.get).hex() == CT_ROOTS[n]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_inclusion_proofs_match_reference_vectors(index: int, size: int, proof: list[str]) -> None:
    store = _ct_store()
    assert tlog.hexes(tlog.inclusion_proof(index, size, store.get)) == proof
    leaf = tlog.leaf_hash(CT_LEAVES[index])
    tlog.verify_inclusion(leaf, index, size, tlog.unhex(proof), bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_reference_vectors(first: int, second: int, proof: list[str]) -> None:
    store = _ct_store()
    assert tlog.hexes(tlog.consistency_proof(first, second, store.get)) == proof
    tlog.verify_consistency(
        first, second, tlog.unhex(proof), bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    )


def test_every_proof_in_every_tree_up_to_70_leaves_verifies_and_a_wrong_one_does_not() -> None:
    leaves = [tlog.leaf_hash(bytes([i, i * 7 % 256])) for i in range(70)]
    store = Store()
    store.append(leaves[:3])
    store.append(leaves[3:40])  # batches of any size build the same nodes
    for leaf in leaves[40:]:
        store.append([leaf])
    for n in range(1, 71):
        root = tlog.root(n, store.get)
        assert root == tlog.root_from_leaves(leaves[:n])
        for i in range(n):
            proof = tlog.inclusion_proof(i, n, store.get)
            assert set(tlog.needed_for_inclusion(i, n)) <= set(store.nodes)
            tlog.verify_inclusion(leaves[i], i, n, proof, root)
            with pytest.raises(tlog.LogError):
                tlog.verify_inclusion(leaves[(i + 1) % n] if n > 1 else b"x" * 32, i, n, proof, root)
        for m in range(1, n + 1):
            proof = tlog.consistency_proof(m, n, store.get)
            tlog.verify_consistency(m, n, proof, tlog.root(m, store.get), root)
            if m < n:
                with pytest.raises(tlog.LogError):
                    tlog.verify_consistency(m, n, proof, tlog.leaf_hash(b"forged"), root)


@given(st.integers(min_value=1, max_value=2000), st.data())
def test_a_rewritten_leaf_breaks_consistency_with_the_old_tree(size: int, data: st.DataObject) -> None:
    leaves = [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    old = tlog.root_from_leaves(leaves)
    rewritten = data.draw(st.integers(min_value=0, max_value=size - 1))
    forged = list(leaves)
    forged[rewritten] = tlog.leaf_hash(b"rewritten")
    forged += [tlog.leaf_hash(b"more")]
    store = Store()
    store.append(forged)
    proof = tlog.consistency_proof(size, size + 1, store.get)
    with pytest.raises(tlog.LogError):
        tlog.verify_consistency(size, size + 1, proof, old, tlog.root(size + 1, store.get))


GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signed_note_matches_go_sumdb_note_byte_for_byte() -> None:
    signer = tlog.Signer.decode(GO_SKEY)
    assert signer.verifier().encode() == GO_VKEY
    assert signer.encode() == GO_SKEY
    assert tlog.sign_note(GO_TEXT, [signer]).encode() == GO_NOTE
    note = tlog.Note.parse(GO_NOTE)
    assert note.verified_by([tlog.Verifier.decode(GO_VKEY)]) == ["PeterNeumann"]


def test_a_bad_signature_by_a_known_key_rejects_the_note_and_unknown_keys_are_ignored() -> None:
    verifier = tlog.Verifier.decode(GO_VKEY)
    forged = GO_NOTE.replace("problem is.", "problem was.")
    with pytest.raises(tlog.LogError):
        tlog.Note.parse(forged).verified_by([verifier])
    other = tlog.Signer.generate("someone.else")
    note = tlog.Note.parse(GO_NOTE).with_signature(other.sign(GO_TEXT))
    assert note.verified_by([verifier]) == ["PeterNeumann"]
    assert note.verified_by([verifier, other.verifier()]) == ["PeterNeumann", "someone.else"]
    assert tlog.Note.parse(note.encode()) == note
    assert note.with_signature(other.sign(GO_TEXT)) == note  # a cosignature is not added twice


@pytest.mark.parametrize(
    "bad",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # key ID off by one
        "PeterNeumann+c74f20a3+AhpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not an Ed25519 key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
    ],
)
def test_malformed_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(tlog.LogError):
        tlog.Verifier.decode(bad)


def test_checkpoint_round_trips_and_opens_only_with_the_log_key() -> None:
    log = tlog.Signer.generate("batterytrace.kr/log")
    witness = tlog.Signer.generate("motie.go.kr/witness")
    cp = tlog.Checkpoint("batterytrace.kr/log", 8, bytes.fromhex(CT_ROOTS[8]))
    assert cp.body() == f"batterytrace.kr/log\n8\n{tlog.base64.b64encode(cp.root_hash).decode()}\n"
    assert tlog.Checkpoint.parse(cp.body()) == cp
    note = tlog.sign_note(cp.body(), [log])
    cosigned = note.with_signature(witness.sign(note.text))
    opened, _, names = tlog.open_checkpoint(cosigned.encode(), log.verifier(), [witness.verifier()])
    assert opened == cp and names == ["motie.go.kr/witness"]
    with pytest.raises(tlog.LogError):
        tlog.open_checkpoint(tlog.sign_note(cp.body(), [witness]).encode(), log.verifier())
    root = tlog.base64.b64encode(cp.root_hash).decode()
    odd_sizes = [f"origin\n{size}\n{root}\n" for size in ("\u00b2", "\u0663", "\uff18")]  # isdigit(), not ASCII
    for body in ["origin\n08\nAAAA\n", "origin\n8\n", "origin\n-1\n" + "A" * 44 + "\n", *odd_sizes]:
        with pytest.raises(tlog.LogError):
            tlog.Checkpoint.parse(body)


@given(st.integers(min_value=1, max_value=1 << 40).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_the_inclusion_candidates_hold_every_node_a_proof_reads_and_at_most_two_per_level(at: tuple[int, int]) -> None:
    # The events service's inclusion read (log/repository.INCLUSION_READ) selects these below the held levels.
    index, size = at
    candidates = tlog.inclusion_candidates(index, size)
    assert tlog.needed_for_inclusion(index, size) <= candidates
    assert len(candidates) <= 2 * size.bit_length()


@given(st.integers(0, 200), st.integers(0, 200))
def test_an_append_creates_exactly_the_complete_subtrees_holding_a_new_leaf(old: int, new: int) -> None:
    """`compact_nodes` (level by level) against RFC 9162's MTH of each complete subtree of the grown tree: it
    returns every one with at least one new leaf, and reads only complete subtrees of the old tree."""
    leaves = [tlog.leaf_hash(i.to_bytes(2, "big")) for i in range(old + new)]
    every = {
        (level, i): tlog.root_from_leaves(leaves[i << level : (i + 1) << level])
        for level in range(1, max(old + new, 1).bit_length())
        for i in range((old + new) >> level)
    }
    before = {k: h for k, h in every.items() if (k[1] + 1) << k[0] <= old} | {(0, i): leaves[i] for i in range(old)}
    assert tlog.compact_nodes(old, leaves[old:], tlog.getter(before)) == {
        k: h for k, h in every.items() if k not in before
    }
