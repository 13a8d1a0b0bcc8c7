"""Reading a published checkpoint (pure): the note must be a checkpoint signed by the log key the message
names, of the tree size and root hash it states, and every witness it lists must have signed the note.
Which ministry a witness stands for is read from its key name (`molit.go.kr/witness` → MOLIT)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.access import Ministry
from shared.contract import tlog
from shared.contract.streams import LogCheckpointData


class InvalidCheckpoint(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root_hash: str
    origin: str
    log_key: str
    note: str
    signatures: int
    published_at: datetime | None
    cosigners: tuple[tuple[str, str], ...]  # (witness, signature line)


def read(data: LogCheckpointData, published_at: datetime | None) -> Checkpoint:
    """The checkpoint a message carries, checked against itself (InvalidCheckpoint otherwise)."""
    try:
        log_key = tlog.Verifier.decode(data.log_key)
        checkpoint, note, _ = tlog.open_checkpoint(data.note, log_key)
    except (tlog.LogError, ValueError) as exc:
        raise InvalidCheckpoint(f"the checkpoint note does not verify with its log key: {exc}") from None
    if checkpoint.size != data.tree_size or checkpoint.root_hash.hex() != data.root_hash:
        raise InvalidCheckpoint(
            f"the note is of tree size {checkpoint.size} and root {checkpoint.root_hash.hex()}, "
            f"the message says {data.tree_size} and {data.root_hash}"
        )
    lines = {s.name: s.line() for s in note.signatures if s.name != log_key.name}
    unsigned = [w for w in data.cosigned_by if w not in lines]
    if unsigned:
        raise InvalidCheckpoint(f"the message lists {unsigned} as cosigners, but the note carries no signature of them")
    return Checkpoint(
        tree_size=checkpoint.size,
        root_hash=data.root_hash,
        origin=checkpoint.origin,
        log_key=data.log_key,
        note=data.note,
        signatures=len(note.signatures),
        published_at=published_at,
        cosigners=tuple((w, lines[w]) for w in dict.fromkeys(data.cosigned_by)),
    )


def ministry_of(witness: str) -> Ministry | None:
    """The ministry a witness key name stands for: a host `<ministry>.go.kr` (`motie.go.kr/witness` → MOTIE).
    Any other name is shown as it is (only witness keys the operator configured are ever accepted)."""
    host = witness.split("/", 1)[0].lower()
    label, _, domain = host.partition(".")
    return Ministry(label.upper()) if domain == "go.kr" and label.upper() in Ministry.__members__ else None
