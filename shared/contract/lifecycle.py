"""Lifecycle event types and states, the shared vocabularies, the ledger record and its hash chain: the
lifecycle half of the published contract (DOMAIN.md, Lifecycle and Integrity).

The ledger record is what `battery.lifecycle.v1` carries in a CloudEvent's `data` and what
`GET /v1/batteries/{id}/events` answers. Its hash chain:

    hash = sha256_hex(prev_hash + canonical_json({field: record[field] for field in HASHED_FIELDS}))

canonical JSON: UTF-8, keys sorted, no insignificant whitespace, timestamps as UTC ISO 8601 with six
fractional digits and a 'Z'. The first event's prev_hash is `GENESIS` (64 zeros)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model


class EventType(StrEnum):
    MANUFACTURED = "MANUFACTURED"
    ASSEMBLED = "ASSEMBLED"
    DISASSEMBLED = "DISASSEMBLED"
    INSTALLED = "INSTALLED"
    INSPECTED = "INSPECTED"
    REMOVED = "REMOVED"
    COLLECTED = "COLLECTED"
    GRADED = "GRADED"
    REMANUFACTURED = "REMANUFACTURED"
    REPURPOSED = "REPURPOSED"
    SAFETY_INSPECTED = "SAFETY_INSPECTED"
    RECYCLED = "RECYCLED"
    DISPOSED = "DISPOSED"
    TRANSFERRED = "TRANSFERRED"
    INCIDENT = "INCIDENT"
    BMS_REPORTED = "BMS_REPORTED"  # a battery management system's readings (EU 2023/1542 Art. 14, Annex VII)
    ERROR_DECLARED = "ERROR_DECLARED"  # marks an earlier event as declared in error


class State(StrEnum):
    manufactured = "manufactured"
    assembled = "assembled"
    in_service = "in_service"
    removed = "removed"
    collected = "collected"
    graded = "graded"
    remanufactured = "remanufactured"
    repurposed = "repurposed"
    recycled = "recycled"
    disposed = "disposed"


FINAL_STATES = frozenset({State.recycled, State.disposed})


class Grade(StrEnum):
    reuse = "reuse"
    remanufacture = "remanufacture"
    recycle = "recycle"


class RemovalReason(StrEnum):
    end_of_life = "end_of_life"
    accident = "accident"
    recall = "recall"
    replacement = "replacement"


class IncidentKind(StrEnum):
    fire = "fire"
    thermal_runaway = "thermal_runaway"
    leak = "leak"
    swelling = "swelling"
    damage = "damage"
    other = "other"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class BatteryKind(StrEnum):
    cell = "cell"
    module = "module"
    pack = "pack"


#: Materials, in kg, in a battery's content and a recycler's recovered output.
MATERIALS = ("lithium", "nickel", "cobalt", "manganese", "copper", "aluminium", "graphite", "lead")


#: BMS_REPORTED's readings, by `data` member, each in the unit the passport standards state it in (Battery Pass 1.2
#: PerformanceAndDurability, Catena-X BatteryPass 6.1 `performance/dynamic`). The numbers: SoH, SoCE and SoC in %,
#: full equivalent cycles, remaining capacity (Ah) and energy (kWh), capacity, power and round-trip efficiency fade
#: (%), remaining round-trip efficiency (%), the self-discharge rate (% per month) and its evolution (%), and the
#: running totals.
BMS_NUMBERS: dict[str, str] = {
    "soh_pct": "%",
    "soce_pct": "%",
    "soc_pct": "%",
    "cycle_count": "cycles",
    "remaining_capacity_ah": "Ah",
    "remaining_energy_kwh": "kWh",
    "capacity_fade_pct": "%",
    "power_fade_pct": "%",
    "remaining_round_trip_efficiency_pct": "%",
    "round_trip_efficiency_fade_pct": "%",
    "self_discharge_rate_pct_per_month": "%/month",
    "self_discharge_evolution_pct": "%",
    "energy_throughput_kwh": "kWh",
    "capacity_throughput_ah": "Ah",
    "deep_discharge_events": "events",
    "overcharge_events": "events",
}
#: The components `internal_resistance_ohm` (Ω) and `internal_resistance_increase_pct` (%) are given for.
BMS_COMPONENTS = ("pack", "module", "cell")
#: `extreme_temperature_min`: the minutes spent above and below the battery's temperature limits, and charging
#: above and below them (cumulative, all four together).
EXTREME_TEMPERATURE = ("above", "below", "charging_above", "charging_below")
#: Running totals since the battery was made: a later reading never shows less (plausibility). Dotted names are
#: members of an object.
BMS_TOTALS = (
    "energy_throughput_kwh",
    "capacity_throughput_ah",
    "deep_discharge_events",
    "overcharge_events",
    *(f"extreme_temperature_min.{k}" for k in EXTREME_TEMPERATURE),
)


def member(data: Mapping[str, Any], name: str) -> Any:
    """The value at a dotted name (`extreme_temperature_min.above`) of an event's data; None where there is none."""
    value: Any = data
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def amounts_model(name: str, materials: Iterable[str], amount: Any) -> type[BaseModel]:
    """The one declaration of an amount per material: a model with a member of type `amount` per material
    named (of MATERIALS), each 0 unless given, and no other member."""
    fields: dict[str, Any] = {m: (amount, 0.0) for m in materials}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


# ---- the ledger record ----
GENESIS = "0" * 64

#: The fields covered by an event's hash, in the record as published.
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
#: Every field of a ledger record: the hashed ones and the chain links.
LEDGER_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")
#: What the lifecycle topic adds to a ledger record, for consumers that keep no registry copy.
STREAM_EXTRA_FIELDS = ("kind", "manufacturer")


class Location(BaseModel):
    """Where an event happened (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")
    site: str | None = None
    region: str | None = None


class TimelineEntry(BaseModel):
    """A ledger record without its battery ID: an entry of one battery's timeline (where the battery is named once,
    as the portal's history names it)."""

    sequence: int
    event_id: str
    type: EventType
    occurred_at: datetime
    recorded_at: datetime
    actor: str = Field(description="The organisation that posted the event (from its credential).")
    actor_role: str
    location: dict[str, Any]
    data: dict[str, Any]
    state_after: State
    custodian_after: str
    prev_hash: str
    hash: str


class LedgerEvent(TimelineEntry):
    """A ledger record as published: what `GET /v1/batteries/{id}/events` answers and the topic carries."""

    battery_id: str


class LedgerRecord(LedgerEvent):
    """A ledger record as a consumer reads it from `battery.lifecycle.v1` (unknown fields ignored), with what
    the consumer relies on checked."""

    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(min_length=1)
    battery_id: str = Field(min_length=1, max_length=24)
    sequence: int = Field(ge=1)
    location: Location = Location()  # type: ignore[assignment]
    data: dict[str, Any] = {}
    kind: str | None = None
    manufacturer: str | None = None


@functools.lru_cache(maxsize=8192)
def ts(value: datetime) -> str:
    """The contract's timestamp form. isoformat, not strftime: strftime("%Y") does not pad years before 1000."""
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


class ChainCheck(NamedTuple):
    valid: bool
    broken_at_sequence: int | None
    reason: str | None
    events: int
    head_hash: str | None


def verify_chain(
    events: Iterable[Mapping[str, Any]], *, recompute: bool = True, from_sequence: int = 1, prev: str = GENESIS
) -> ChainCheck:
    """Check events ordered by sequence: contiguous from `from_sequence`, each linked to the previous hash (the
    first to `prev`: GENESIS, or for a page of a longer chain the stored hash of the event before it), and (with
    `recompute`) each hash equal to the hash of its content."""
    expected = from_sequence
    count = 0
    for ev in events:
        count += 1
        if ev["sequence"] != expected:
            return ChainCheck(
                False, ev["sequence"], f"sequence {ev['sequence']} where {expected} was expected", count, None
            )
        if ev["prev_hash"] != prev:
            return ChainCheck(False, ev["sequence"], "prev_hash does not match the previous event's hash", count, None)
        if recompute and event_hash(prev, ev) != ev["hash"]:
            return ChainCheck(False, ev["sequence"], "the event's content does not match its hash", count, None)
        prev = ev["hash"]
        expected += 1
    return ChainCheck(True, None, None, count, prev if count else None)
