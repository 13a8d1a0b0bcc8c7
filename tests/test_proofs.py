"""Offline verification of proof bundles and the witness's decision, on bundles built the way the events
service builds them (pure: no server)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contract import tlog
from shared.contract.lifecycle import GENESIS, event_hash, ts
from shared.contract.proofs import verify_bundle, witness_step

LOG = tlog.Signer.generate("batterytrace.test/log")
WITNESS = tlog.Signer.generate("molit.test/witness")


def _events(battery: str, n: int) -> list[dict[str, Any]]:
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        e: dict[str, Any] = {
            "event_id": f"00000000-0000-4000-8000-{seq:012d}",
            "battery_id": battery,
            "sequence": seq,
            "type": "INCIDENT" if seq > 1 else "MANUFACTURED",
            "occurred_at": ts(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=seq)),
            "recorded_at": ts(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=seq, seconds=1)),
            "actor": "LGES",
            "actor_role": "manufacturer",
            "location": {"site": "Ochang"},
            "data": {"kind": "fire", "severity": "low"} if seq > 1 else {"model_id": "M1", "kind": "pack"},
            "state_after": "manufactured",
            "custodian_after": "LGES",
            "prev_hash": prev,
        }
        e["hash"] = prev = event_hash(prev, e)
        out.append(e)
    return out


def _bundle(events: list[dict[str, Any]], others: int = 5, pending: int = 0) -> dict[str, Any]:
    """The battery's events interleaved with other batteries' leaves, as the log would hold them."""
    leaves: list[bytes] = []
    index: dict[int, int] = {}
    for k, e in enumerate(events[: len(events) - pending]):
        leaves += [tlog.leaf_hash(bytes([k, j]) * 16) for j in range(others)]
        index[e["sequence"]] = len(leaves)
        leaves.append(tlog.leaf_hash(bytes.fromhex(e["hash"])))
    size = len(leaves)
    root = tlog.root_from_leaves(leaves)
    note = tlog.sign_note(tlog.Checkpoint(LOG.name, size, root).body(), [LOG])
    note = note.with_signature(WITNESS.sign(note.text))
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    for level in range(1, size.bit_length() + 1):
        for i in range(size >> level):
            nodes[(level, i)] = tlog.node_hash(nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)])
    get = tlog.getter(nodes)
    entries = []
    for e in events:
        if e["sequence"] in index:
            i = index[e["sequence"]]
            entries.append(
                {
                    "event": e,
                    "inclusion": {
                        "leaf_index": i,
                        "tree_size": size,
                        "audit_path": tlog.hexes(tlog.inclusion_proof(i, size, get)),
                    },
                }
            )
        else:
            entries.append({"event": e, "pending": True})
    return {"battery_id": events[0]["battery_id"], "checkpoint": note.encode(), "events": entries}


def test_an_honest_bundle_verifies_and_names_its_witnesses() -> None:
    verdict = verify_bundle(_bundle(_events("B1", 6)), LOG.verifier(), [WITNESS.verifier()])
    assert verdict.valid and verdict.tree_size == 36 and verdict.cosigned_by == ["molit.test/witness"]
    assert "VERIFIED" in verdict.report("en") and "검증됨" in verdict.report("ko")


def test_events_newer_than_the_checkpoint_are_reported_pending() -> None:
    verdict = verify_bundle(_bundle(_events("B1", 4), pending=1), LOG.verifier())
    assert verdict.valid and verdict.pending == [4]


def test_rewritten_content_a_rechained_history_and_a_foreign_key_are_each_caught() -> None:
    bundle = _bundle(_events("B1", 5))
    tampered = copy.deepcopy(bundle)
    tampered["events"][2]["event"]["data"]["severity"] = "critical"
    assert not verify_bundle(tampered, LOG.verifier()).valid

    # The database owner rewrites event 3 and recomputes every later hash: the chain holds, the log does not.
    events = _events("B1", 5)
    events[2]["data"] = {"kind": "leak", "severity": "low"}
    prev = events[1]["hash"]
    for e in events[2:]:
        e["prev_hash"] = prev
        e["hash"] = prev = event_hash(prev, e)
    rechained = copy.deepcopy(bundle)
    for entry, e in zip(rechained["events"], events, strict=True):
        entry["event"] = e
    verdict = verify_bundle(rechained, LOG.verifier())
    assert not verdict.valid and any("not included" in p for p in verdict.problems)

    impostor = tlog.Signer.generate(LOG.name)
    assert not verify_bundle(bundle, impostor.verifier()).valid


def test_the_witness_refuses_a_fork_a_rollback_and_an_inconsistent_extension() -> None:
    leaves = [tlog.leaf_hash(bytes([i]) * 32) for i in range(20)]
    old = tlog.Checkpoint("log", 10, tlog.root_from_leaves(leaves[:10]))
    new = tlog.Checkpoint("log", 20, tlog.root_from_leaves(leaves))
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    for level in range(1, 6):
        for i in range(20 >> level):
            nodes[(level, i)] = tlog.node_hash(nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)])
    proof = tlog.consistency_proof(10, 20, tlog.getter(nodes))
    assert witness_step(old, new, proof).accept
    assert witness_step(None, new, None).accept
    forged = list(leaves)
    forged[3] = tlog.leaf_hash(b"rewritten" * 4)
    fork = tlog.Checkpoint("log", 10, tlog.root_from_leaves(forged[:10]))
    assert "fork" in witness_step(old, fork, None).reason
    assert "shrank" in witness_step(new, old, None).reason
    rewritten = tlog.Checkpoint("log", 20, tlog.root_from_leaves(forged))
    assert not witness_step(old, rewritten, proof).accept
