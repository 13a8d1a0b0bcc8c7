"""Checking what the log hands out, with no server: a proof bundle (a battery's events with inclusion proofs
against a signed checkpoint) and a witness's step from the checkpoint it holds to a newer one. Pure functions
over the published formats, used by `batterytrace verify` and `batterytrace log witness`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.contract import tlog
from shared.contract.lifecycle import event_hash, verify_chain

MESSAGES = {
    "ok": (
        "검증됨: 배터리 {battery} 의 사건 {events}건이 모두 로그 체크포인트(크기 {size})에 포함되어 있습니다.",
        "VERIFIED: all {events} events of battery {battery} are in the log checkpoint of size {size}.",
    ),
    "fail": ("검증 실패: {why}", "NOT VERIFIED: {why}"),
    "pending": (
        "아직 체크포인트에 포함되지 않은 사건: {n}건 (순번 {seqs})",
        "events not yet in a checkpoint: {n} (sequences {seqs})",
    ),
    "cosigned": ("공동 서명한 증인: {names}", "cosigned by witnesses: {names}"),
    "no_witness": ("공동 서명한 증인 없음 (지정된 증인 키 기준)", "no cosignature by the given witness keys"),
}


def say(key: str, lang: str, **kw: Any) -> str:
    ko, en = MESSAGES[key]
    return (ko if lang == "ko" else en).format(**kw)


@dataclass
class BundleVerdict:
    valid: bool
    battery_id: str
    tree_size: int
    events: int
    problems: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    cosigned_by: list[str] = field(default_factory=list)

    def report(self, lang: str = "en") -> str:
        lines = []
        if self.valid:
            lines.append(
                say("ok", lang, battery=self.battery_id, events=self.events - len(self.pending), size=self.tree_size)
            )
        else:
            lines += [say("fail", lang, why=p) for p in self.problems]
        if self.pending:
            lines.append(say("pending", lang, n=len(self.pending), seqs=", ".join(map(str, self.pending))))
        lines.append(
            say("cosigned", lang, names=", ".join(self.cosigned_by)) if self.cosigned_by else say("no_witness", lang)
        )
        return "\n".join(lines)


def verify_bundle(
    bundle: Mapping[str, Any], log_key: tlog.Verifier, witness_keys: Sequence[tlog.Verifier] = ()
) -> BundleVerdict:
    """Each event's hash from its canonical content, the battery's hash chain, each inclusion proof, and the
    checkpoint's signatures (the log's required, the given witnesses' reported)."""
    battery = str(bundle.get("battery_id", ""))
    entries = list(bundle.get("events") or [])
    verdict = BundleVerdict(False, battery, 0, len(entries))
    try:
        checkpoint, _, cosigned = tlog.open_checkpoint(str(bundle["checkpoint"]), log_key, witness_keys)
    except (KeyError, tlog.LogError) as exc:
        verdict.problems.append(f"checkpoint: {exc}")
        return verdict
    verdict.tree_size, verdict.cosigned_by = checkpoint.size, cosigned
    events = [dict(e["event"]) for e in entries]
    for e in events:
        if e.get("battery_id") != battery:
            verdict.problems.append(f"event {e.get('sequence')} belongs to battery {e.get('battery_id')}")
    chain = verify_chain(events)
    if not chain.valid and not bundle.get("partial"):  # a partial view (a certifier's) has gaps by design
        verdict.problems.append(f"hash chain broken at sequence {chain.broken_at_sequence}: {chain.reason}")
    for entry, e in zip(entries, events, strict=True):
        seq = e.get("sequence")
        try:
            recomputed = event_hash(e["prev_hash"], e)
        except (KeyError, TypeError, ValueError) as exc:
            verdict.problems.append(f"event {seq}: unreadable ({exc})")
            continue
        if recomputed != e.get("hash"):
            verdict.problems.append(f"event {seq}: its content does not match its hash")
            continue
        proof = entry.get("inclusion")
        if proof is None:
            verdict.pending.append(int(e["sequence"]))
            continue
        try:
            if int(proof["tree_size"]) != checkpoint.size:
                raise tlog.LogError(
                    f"proof is for tree size {proof['tree_size']}, not the checkpoint's {checkpoint.size}"
                )
            tlog.verify_inclusion(
                tlog.leaf_hash(bytes.fromhex(recomputed)),
                int(proof["leaf_index"]),
                checkpoint.size,
                tlog.unhex(proof["audit_path"]),
                checkpoint.root_hash,
            )
        except (KeyError, ValueError, tlog.LogError) as exc:
            verdict.problems.append(f"event {seq}: not included in the checkpoint ({exc})")
    for problem in (bundle.get("log_audit") or {}).get("problems") or []:
        verdict.problems.append(f"the log disagrees with the ledger: {problem}")
    verdict.valid = not verdict.problems
    return verdict


@dataclass(frozen=True)
class WitnessStep:
    """What a witness decided about a new checkpoint, given the one it holds."""

    accept: bool
    reason: str


def witness_step(
    held: tlog.Checkpoint | None, new: tlog.Checkpoint, consistency: Sequence[bytes] | None
) -> WitnessStep:
    if held is None:
        return WitnessStep(True, f"first checkpoint held (size {new.size})")
    if new.origin != held.origin:
        return WitnessStep(False, f"origin changed from {held.origin!r} to {new.origin!r}")
    if new.size < held.size:
        return WitnessStep(
            False, f"the log shrank from {held.size} to {new.size} leaves (a rollback or a restored backup)"
        )
    if new.size == held.size:
        if new.root_hash != held.root_hash:
            return WitnessStep(False, f"two different roots for tree size {new.size}: the log was rewritten (a fork)")
        return WitnessStep(True, f"unchanged (size {new.size})")
    try:
        tlog.verify_consistency(held.size, new.size, consistency or [], held.root_hash, new.root_hash)
    except tlog.LogError as exc:
        return WitnessStep(
            False, f"the checkpoint of size {new.size} is not consistent with the held one of size {held.size}: {exc}"
        )
    return WitnessStep(True, f"consistent: {held.size} → {new.size}")
