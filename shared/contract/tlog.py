"""The transparency log's formats: RFC 9162 Merkle tree hashing and proofs, C2SP `tlog-checkpoint` and C2SP
`signed-note` (Ed25519). Pure functions: outside verifiers (witnesses, `batterytrace verify`) and the events
service use the same code, and any RFC 9162 / C2SP implementation can check what it produces.

- leaf hash = SHA-256(0x00 ‖ leaf input), interior node = SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1);
  the leaf input of a ledger event is its 32-byte ledger hash.
- A checkpoint body is "<origin>\\n<tree size>\\n<base64 root hash>\\n" (C2SP tlog-checkpoint).
- A signed note is the body, a blank line, and signature lines "— <key name> <base64(key ID ‖ signature)>\\n";
  key ID = SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ Ed25519 public key)[:4]; a verifier key is
  "<name>+<hex key ID>+<base64(0x01 ‖ public key)>" (C2SP signed-note).

Proof generation works over any store of *complete* subtree hashes: `node(level, index)` is the hash of leaves
[index·2^level, (index+1)·2^level). `needed_*` lists which complete nodes a proof reads, so a store can fetch
them in one round trip before the proof is assembled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

HASH_SIZE = 32
ALG_ED25519 = 0x01
EM_DASH = "\u2014"
MAX_SIGNATURES = 100

NodeKey = tuple[int, int]  # (level, index) of a complete subtree
NodeGetter = Callable[[int, int], bytes]


class LogError(ValueError):
    """A proof, checkpoint or note that does not verify (the message says why)."""


# ---- RFC 9162 §2.1 hashing ----
def leaf_hash(leaf_input: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from the leaf hashes (reference form: O(n); for tests and small trees)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


def _decompose(start: int, end: int) -> list[NodeKey]:
    """[start, end) with `start` aligned to the range's subtree as complete subtrees, left to right: each the
    largest that `start`'s alignment and the rest of the range allow (bit arithmetic: O(subtrees))."""
    out: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def _fold(parts: Sequence[NodeKey], node: NodeGetter) -> bytes:
    """MTH of a range from its complete subtrees (`_decompose`): folded from the right, as RFC 9162 splits."""
    acc = node(*parts[-1])
    for level, index in reversed(parts[:-1]):
        acc = node_hash(node(level, index), acc)
    return acc


def _range_hash(start: int, end: int, node: NodeGetter) -> bytes:
    """MTH(D[start:end]) for the ranges RFC 9162 proofs use (a subtree, possibly partial at the right edge)."""
    return _fold(_decompose(start, end), node)


def root(size: int, node: NodeGetter) -> bytes:
    return EMPTY_ROOT if size == 0 else _range_hash(0, size, node)


def _path(m: int, start: int, end: int) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.3.1 PATH(m, D[start:end]) as the list of (start, end) ranges whose hashes form it."""
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, start, start + k), (start + k, end)]
    return [*_path(m - k, start + k, end), (start, start + k)]


def _subproof(m: int, start: int, end: int, complete: bool) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b) as ranges."""
    n = end - start
    if m == n:
        return [] if complete else [(start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, complete), (start + k, end)]
    return [*_subproof(m - k, start + k, end, False), (start, start + k)]


def _check_inclusion_args(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise LogError(f"leaf index {index} is not in a tree of size {size}")


def _check_consistency_args(first: int, second: int) -> None:
    if not 0 < first <= second:
        raise LogError(f"no consistency proof from size {first} to size {second} (need 0 < first <= second)")


#: Per proof hash, the complete subtrees (left to right) whose fold is that hash: what a store must read.
ProofPlan = list[list[NodeKey]]


def inclusion_plan(index: int, size: int) -> ProofPlan:
    _check_inclusion_args(index, size)
    return [_decompose(s, e) for s, e in _path(index, 0, size)]


def consistency_plan(first: int, second: int) -> ProofPlan:
    _check_consistency_args(first, second)
    return [_decompose(s, e) for s, e in _subproof(first, 0, second, True)]


def inclusion_candidates(index: int, size: int) -> set[NodeKey]:
    """A superset of `needed_for_inclusion` that needs no recursion, so a store can select it in the same
    statement that finds the leaf: at each level the complete sibling of the leaf's ancestor, and the tree's
    right-edge subtrees (`frontier_keys`), which make up a partial sibling. At most 2·log2(size) nodes."""
    _check_inclusion_args(index, size)
    siblings = {
        (level, (index >> level) ^ 1)
        for level in range(size.bit_length())
        if (((index >> level) ^ 1) + 1) << level <= size
    }
    return siblings | frontier_keys(size)


def plan_nodes(plan: ProofPlan) -> set[NodeKey]:
    return {key for parts in plan for key in parts}


def assemble(plan: ProofPlan, node: NodeGetter) -> list[bytes]:
    """The proof's hashes from the nodes its plan names."""
    return [_fold(parts, node) for parts in plan]


def needed_for_inclusion(index: int, size: int) -> set[NodeKey]:
    return plan_nodes(inclusion_plan(index, size))


def needed_for_consistency(first: int, second: int) -> set[NodeKey]:
    return plan_nodes(consistency_plan(first, second))


def needed_for_root(size: int) -> set[NodeKey]:
    return set(_decompose(0, size)) if size else set()


def inclusion_proof(index: int, size: int, node: NodeGetter) -> list[bytes]:
    return assemble(inclusion_plan(index, size), node)


def consistency_proof(first: int, second: int, node: NodeGetter) -> list[bytes]:
    return assemble(consistency_plan(first, second), node)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """RFC 9162 §2.1.3.2. Raises LogError unless `leaf` (a leaf hash) is at `index` in the tree `root_hash`."""
    _check_inclusion_args(index, size)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise LogError("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogError("inclusion proof is shorter than the tree needs")
    if r != root_hash:
        raise LogError(f"leaf {index} is not included in the tree of size {size} with that root")


def verify_consistency(first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes) -> None:
    """RFC 9162 §2.1.4.2. Raises LogError unless the tree `second_root` extends the tree `first_root`."""
    _check_consistency_args(first, second)
    if first == second:
        if proof:
            raise LogError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise LogError(f"two different roots for the same tree size {first}")
        return
    if not proof:
        raise LogError("empty consistency proof")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the first node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LogError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogError("consistency proof is shorter than the trees need")
    if fr != first_root:
        raise LogError(f"the tree of size {second} does not extend the tree of size {first}: old root differs")
    if sr != second_root:
        raise LogError(f"the consistency proof does not lead to the root of the tree of size {second}")


def compact_nodes(old_size: int, new_leaves: Sequence[bytes], node: NodeGetter) -> dict[NodeKey, bytes]:
    """The complete subtree nodes (level ≥ 1) that appending `new_leaves` to a tree of `old_size` creates.
    `node` answers the existing right-edge nodes (the tree's 'frontier') it combines with.

    Level by level: the level's new nodes run from index `first`; when `first` is odd its left sibling is a
    complete node of the old tree (it spans leaves below `first`·2^level ≤ `old_size`), read from `node`; the
    pairs make the next level's new nodes, and a last node without its right sibling is not complete yet."""
    created: dict[NodeKey, bytes] = {}
    level, first, row = 0, old_size, list(new_leaves)
    while len(row) > 1 or (row and first & 1):
        if first & 1:
            row.insert(0, node(level, first - 1))
            first -= 1
        row = [node_hash(left, right) for left, right in zip(row[::2], row[1::2], strict=False)]
        level, first = level + 1, first >> 1
        created.update(((level, first + k), h) for k, h in enumerate(row))
    return created


# ---- C2SP tlog-checkpoint ----
@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        if not body.endswith("\n"):
            raise LogError("checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3 or not lines[0]:
            raise LogError("checkpoint needs an origin line, a tree size and a root hash")
        origin, size_s, root_b64, *ext = lines
        if not (size_s.isascii() and size_s.isdigit()) or (size_s != "0" and size_s.startswith("0")):
            raise LogError(f"checkpoint tree size {size_s!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root_b64, validate=True)
        except binascii.Error:
            raise LogError("checkpoint root hash is not base64") from None
        if len(root_hash) != HASH_SIZE:
            raise LogError("checkpoint root hash is not 32 bytes")
        if any(not e for e in ext):
            raise LogError("checkpoint extension lines must not be empty")
        return cls(origin, int(size_s), root_hash, tuple(ext))


# ---- C2SP signed-note (Ed25519) ----
def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise LogError(f"key name {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Signer:
        _check_name(name)
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key)

    def sign(self, text: str) -> str:
        """The signature line for `text` (the note body, ending in a newline)."""
        sig = self.private_key.sign(text.encode())
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + sig).decode()}\n"

    def encode(self) -> str:
        """The signer key, C2SP form: PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + seed).decode()}"

    @classmethod
    def decode(cls, encoded: str) -> Signer:
        parts = encoded.strip().split("+", 4)  # base64 may hold '+'
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise LogError("a signer key reads PRIVATE+KEY+<name>+<hex key ID>+<base64 key>")
        name, hex_id, b64 = parts[2:]
        raw = base64.b64decode(b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise LogError("only Ed25519 signer keys are supported")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id:
            raise LogError("signer key ID does not match its key")
        return signer


@dataclass(frozen=True, slots=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: bytes

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()}"

    @classmethod
    def decode(cls, encoded: str) -> Verifier:
        parts = encoded.strip().split("+", 2)  # base64 may hold '+'
        if len(parts) != 3:
            raise LogError("a verifier key reads <name>+<hex key ID>+<base64(0x01 ‖ public key)>")
        name, hex_id, b64 = parts
        _check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise LogError("verifier key is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise LogError("only Ed25519 verifier keys are supported")
        verifier = cls(name, bytes.fromhex(hex_id), raw[1:])
        if key_id(name, verifier.public_key) != verifier.key_id:
            raise LogError(f"verifier key ID {hex_id} does not match key {name}")
        return verifier

    def verifies(self, text: str, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text.encode())
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, note: str) -> Note:
        split = note.rfind("\n\n")
        if split < 0 or not note.endswith("\n"):
            raise LogError("a signed note is text, a blank line and signature lines")
        text, sig_block = note[: split + 1], note[split + 2 :]
        if any(ord(c) < 0x20 and c != "\n" for c in text):
            raise LogError("note text holds a control character")
        sigs: list[NoteSignature] = []
        for line in sig_block[:-1].split("\n"):
            if not line.startswith(EM_DASH + " "):
                raise LogError(f"malformed signature line {line!r}")
            rest = line[2:].split(" ")
            if len(rest) != 2:
                raise LogError(f"malformed signature line {line!r}")
            name, b64 = rest
            _check_name(name)
            try:
                raw = base64.b64decode(b64, validate=True)
            except binascii.Error:
                raise LogError(f"signature of {name} is not base64") from None
            if len(raw) < 5:
                raise LogError(f"signature of {name} is too short")
            sigs.append(NoteSignature(name, raw[:4], raw[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise LogError(f"more than {MAX_SIGNATURES} signatures")
        return cls(text, tuple(sigs))

    def verified_by(self, verifiers: Iterable[Verifier]) -> list[str]:
        """Names of the given keys that signed this note. A known key's bad signature rejects the whole note;
        signatures by keys not given are ignored (C2SP signed-note)."""
        known = {(v.name, v.key_id): v for v in verifiers}
        names: list[str] = []
        for s in self.signatures:
            v = known.get((s.name, s.key_id))
            if v is None:
                continue
            if not v.verifies(self.text, s.signature):
                raise LogError(f"the signature of {s.name} on this note is invalid")
            if s.name not in names:
                names.append(s.name)
        return names

    def with_signature(self, line: str) -> Note:
        """This note with one more signature (a cosignature); a key that signed already is not added twice."""
        extra = Note.parse(self.text + "\n" + line).signatures[0]
        if any((s.name, s.key_id) == (extra.name, extra.key_id) for s in self.signatures):
            return self
        return Note(self.text, (*self.signatures, extra))


def sign_note(text: str, signers: Iterable[Signer]) -> Note:
    if not text.endswith("\n") or "\n\n" in text:
        raise LogError("note text must end with one newline and hold no blank line")
    lines = "".join(s.sign(text) for s in signers)
    return Note.parse(text + "\n" + lines)


def open_checkpoint(
    note_text: str, log_key: Verifier, witnesses: Iterable[Verifier] = ()
) -> tuple[Checkpoint, Note, list[str]]:
    """Parse a checkpoint note and verify the log's signature (required) and the given witnesses' (those
    present). Returns the checkpoint, the note, and the names of the witnesses that cosigned it."""
    note = Note.parse(note_text)
    if log_key.name not in note.verified_by([log_key]):
        raise LogError(f"the checkpoint is not signed by the log key {log_key.name}")
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != log_key.name:
        raise LogError(f"checkpoint origin {checkpoint.origin!r} is not the log {log_key.name!r}")
    cosigned = [n for n in note.verified_by(list(witnesses)) if n != log_key.name]
    return checkpoint, note, cosigned


def hexes(hashes: Iterable[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def unhex(values: Iterable[str]) -> list[bytes]:
    out = []
    for v in values:
        try:
            b = bytes.fromhex(v)
        except ValueError:
            raise LogError(f"{v!r} is not a hex hash") from None
        if len(b) != HASH_SIZE:
            raise LogError(f"{v!r} is not a 32-byte hash")
        out.append(b)
    return out


def getter(nodes: Mapping[NodeKey, bytes]) -> NodeGetter:
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LogError(f"the log store lacks node {level}/{index}") from None

    return get


def frontier_keys(size: int) -> set[NodeKey]:
    """The right-edge complete subtrees of a tree of `size` leaves: what appending to it combines with."""
    return {(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1}
