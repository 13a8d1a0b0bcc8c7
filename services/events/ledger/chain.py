"""The hash chain: each event's hash covers the previous hash and the event's canonical JSON.

Canonical JSON: UTF-8, keys sorted, no insignificant whitespace, timestamps as UTC ISO 8601 with
microseconds and a 'Z'. Anyone can recompute it from `GET /v1/batteries/{id}/events`:
    hash = sha256_hex(prev_hash + canonical_json({event_id, battery_id, sequence, type, occurred_at,
                       recorded_at, actor, actor_role, location, data, state_after, custodian_after}))
The first event's prev_hash is 64 zeros.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64
HASHED_FIELDS = (
    "event_id",
    "battery_id",
    "sequence",
    "type",
    "occurred_at",
    "recorded_at",
    "actor",
    "actor_role",
    "location",
    "data",
    "state_after",
    "custodian_after",
)


@functools.lru_cache(maxsize=8192)
def ts(value: datetime) -> str:
    # Cached: one capture formats the same occurred_at/recorded_at several times (hash, digest, envelope).
    # isoformat, not strftime: strftime("%Y") does not pad years before 1000 to four digits.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def hashed_view(event: Mapping[str, Any]) -> dict[str, Any]:
    view = {k: event[k] for k in HASHED_FIELDS}
    for k in ("occurred_at", "recorded_at"):
        value = view[k]
        if isinstance(value, str):  # as read from the JSON timeline
            value = datetime.fromisoformat(value)
        view[k] = ts(value)
    view["event_id"] = str(view["event_id"])
    return view


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_json(hashed_view(event))).hexdigest()


def verify_chain(events: Iterable[Mapping[str, Any]]) -> tuple[bool, int | None, str | None, int, str | None]:
    """(valid, broken_at_sequence, reason, count, head_hash) for events ordered by sequence."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for ev in events:
        count += 1
        if ev["sequence"] != expected_seq:
            return False, ev["sequence"], f"sequence {ev['sequence']} where {expected_seq} was expected", count, None
        if ev["prev_hash"] != prev:
            return False, ev["sequence"], "prev_hash does not match the previous event's hash", count, None
        recomputed = event_hash(prev, ev)
        if recomputed != ev["hash"]:
            return False, ev["sequence"], "the event's content does not match its hash", count, None
        prev = ev["hash"]
        expected_seq += 1
    return True, None, None, count, (prev if count else None)


def request_digest(fields: Mapping[str, Any]) -> str:
    """Digest of what a client sent (for idempotent retries by event ID)."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()
