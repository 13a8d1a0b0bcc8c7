"""How stream messages become read-model rows: decoding, folding a battery's timeline into its current
head, and the flow figures each event adds. Pure functions; the consumer does the SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from services.portal.ingest.schemas import (
    DATA_MODELS,
    AliasAddedIn,
    BatteryRegisteredIn,
    ModelIn,
    ParticipantIn,
)
from shared.contract.lifecycle import EventType
from shared.contract.lifecycle import LedgerRecord as LifecycleEventIn
from shared.contract.streams import (
    ALIAS_ADDED,
    BATTERY_REGISTERED,
    LIFECYCLE_TYPE_PREFIX,
    MODEL_REGISTERED,
    PARTICIPANT_REGISTERED,
    REGISTRY_TYPE_PREFIX,
    is_known_lifecycle,
)
from shared.contract.streams import CloudEvent as CloudEventIn
from shared.kafka import ConsumerRecord, PoisonMessage

#: Ministries count by Korean calendar month.
KST = ZoneInfo("Asia/Seoul")
REGISTRY_TYPES: dict[str, type[Any]] = {
    PARTICIPANT_REGISTERED: ParticipantIn,
    MODEL_REGISTERED: ModelIn,
    BATTERY_REGISTERED: BatteryRegisteredIn,
    ALIAS_ADDED: AliasAddedIn,
}
RECOVERED = ("lithium", "nickel", "cobalt", "manganese", "copper")
CONTAINED = ("lithium", "nickel", "cobalt", "manganese")
REUSE_TYPES = {EventType.REPURPOSED.value, EventType.REMANUFACTURED.value}


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded stream message. `stream` is 'registry' or 'lifecycle'; `body` the parsed data."""

    stream: str
    event_id: str
    type: str
    body: Any


def decode(rec: ConsumerRecord[bytes, bytes]) -> Message | None:
    """Decode and check one record. None for a message the portal skips by the contract's
    `UNKNOWN_TYPE_RULE` (a type it does not use, or one newer than it); PoisonMessage for anything that can
    never be applied (not a CloudEvent, or a known type with malformed data)."""
    try:
        raw = orjson.loads(rec.value or b"")
        ce = CloudEventIn.model_validate(raw)
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise PoisonMessage(f"not a CloudEvents 1.0 JSON message: {exc}") from None
    try:
        if ce.type.startswith(REGISTRY_TYPE_PREFIX):
            model = REGISTRY_TYPES.get(ce.type)
            if model is None:
                return None  # a registry change the portal does not show (yet)
            return Message("registry", ce.id, ce.type, model.model_validate(ce.data))
        if ce.type.startswith(LIFECYCLE_TYPE_PREFIX):
            if not is_known_lifecycle(ce.type, ce.data):
                return None  # UNKNOWN_TYPE_RULE: a lifecycle type newer than this portal is skipped
            event = LifecycleEventIn.model_validate(ce.data)
            if event.event_id != ce.id:
                raise PoisonMessage(f"envelope id {ce.id} differs from data.event_id {event.event_id}")
            if ce.type != f"{LIFECYCLE_TYPE_PREFIX}{event.type.value.lower()}.v1":
                raise PoisonMessage(f"envelope type {ce.type} does not match data.type {event.type.value}")
            data_model = DATA_MODELS.get(event.type)
            if data_model is not None:
                data_model.model_validate(event.data)
            return Message("lifecycle", ce.id, event.type.value, event)
    except ValidationError as exc:
        raise PoisonMessage(f"{ce.type} {ce.id}: invalid data: {exc}") from None
    return None  # UNKNOWN_TYPE_RULE: a message family this portal does not read is skipped


def month_of(value: datetime) -> date:
    local = value.astimezone(KST)
    return date(local.year, local.month, 1)


def soh_bucket(soh: float) -> str:
    if soh >= 90:
        return "90-100"
    if soh >= 80:
        return "80-90"
    if soh >= 70:
        return "70-80"
    if soh >= 60:
        return "60-70"
    return "<60"


# ---- the head of a battery's timeline ----

HEAD_COLUMNS = (
    "sequence",
    "state",
    "state_since",
    "custodian",
    "region",
    "grade",
    "soh_pct",
    "cycle_count",
    "parent_id",
    "vin",
    "life",
    "status",
    "safety",
    "installed_at",
    "recycled_month",
    "recycled_region",
    "last_event_id",
    "last_recorded_at",
    "last_applied_at",
)


def fold(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The battery's current facts from its events in sequence order: the event with the highest
    sequence decides the state, so a late, out-of-order delivery changes nothing it should not."""
    head: dict[str, Any] = dict.fromkeys(HEAD_COLUMNS)
    head.update(sequence=0, life=0, status="original")
    for e in sorted(events, key=lambda e: e["sequence"]):
        data, kind = e["data"], e["type"]
        if e["state_after"] != head["state"]:
            head["state_since"] = e["occurred_at"]
        head.update(
            sequence=e["sequence"],
            state=e["state_after"],
            custodian=e["custodian_after"],
            last_event_id=e["event_id"],
            last_recorded_at=e["recorded_at"],
            last_applied_at=e.get("applied_at"),
        )
        head["region"] = event_region(e) or head["region"]
        if kind == "INSTALLED":
            head["vin"] = data.get("vin")
            head["installed_at"] = head["installed_at"] or e["occurred_at"]
        elif kind in ("INSPECTED", "GRADED"):
            head["soh_pct"] = data.get("soh_pct")
            if kind == "INSPECTED":
                head["cycle_count"] = data.get("cycle_count")
            else:
                head["grade"] = data.get("grade")
        elif kind == "ASSEMBLED":
            head["parent_id"] = data.get("parent_id")
        elif kind == "DISASSEMBLED":
            head["parent_id"] = None
        elif kind in REUSE_TYPES:
            # A new life and a new passport (EU rule); it is put into service anew.
            head.update(life=head["life"] + 1, status=kind.lower(), safety=None, installed_at=None)
        elif kind == "SAFETY_INSPECTED":
            head["safety"] = data.get("result")
        elif kind == "RECYCLED":
            head.update(status="waste", recycled_month=month_of(e["occurred_at"]), recycled_region=event_region(e))
        elif kind == "DISPOSED":
            head["status"] = "waste"
    return head


def event_region(e: dict[str, Any]) -> str | None:
    region = (e.get("location") or {}).get("region")
    if not region and e["type"] == "COLLECTED":
        region = e["data"].get("region")
    return region or None


def count_key(row: dict[str, Any]) -> tuple[str, ...] | None:
    """The battery's cell in `current_counts`, or None while no lifecycle event has arrived."""
    if not row.get("state"):
        return None
    reused = row.get("status") in ("repurposed", "remanufactured")
    return (
        row["state"],
        row.get("region") or "",
        row.get("manufacturer") or "",
        row.get("chemistry") or "",
        row.get("kind") or "",
        row.get("status") or "original",
        (row.get("safety") or "pending") if reused else "",
        row.get("grade") or "",
    )


# ---- flows ----


@dataclass
class Flows:
    """Increments to `flow_stats`, summed per key before they reach the database."""

    rows: dict[tuple[str, date, str, str, str, str], tuple[int, dict[str, float]]] = field(default_factory=dict)

    def add(
        self,
        metric: str,
        month: date,
        region: str | None = "",
        k1: Any = "",
        k2: Any = "",
        k3: Any = "",
        n: int = 1,
        **amounts: float | None,
    ) -> None:
        key = (metric, month, region or "", str(k1 or ""), str(k2 or ""), str(k3 or ""))
        count, sums = self.rows.get(key, (0, {}))
        for name, value in amounts.items():
            if value is not None:
                sums[name] = sums.get(name, 0.0) + float(value)
        self.rows[key] = (count + n, sums)


def registration_flows(flows: Flows, b: BatteryRegisteredIn) -> None:
    rc = b.recycled_content_pct
    flows.add(
        "registered",
        month_of(b.manufactured_at),
        "",
        b.manufacturer,
        b.chemistry,
        b.kind,
        kwh=b.model.get("rated_energy_kwh"),
        rc_lithium=rc.get("lithium", 0.0),
        rc_nickel=rc.get("nickel", 0.0),
        rc_cobalt=rc.get("cobalt", 0.0),
        rc_lead=rc.get("lead", 0.0),
    )


def event_flows(flows: Flows, e: dict[str, Any], timeline: Sequence[dict[str, Any]], battery: dict[str, Any]) -> None:
    """What one newly applied lifecycle event adds to the ministry figures."""
    kind, data = e["type"], e["data"]
    month = month_of(e["occurred_at"])
    region = event_region(e) or battery.get("region") or ""
    manufacturer = e.get("manufacturer") or battery.get("manufacturer")
    battery_kind = e.get("kind") or battery.get("kind")
    if kind == "INSTALLED":
        flows.add("installed", month, region, "vehicle" if data.get("vin") else "ess", manufacturer, battery_kind)
    elif kind == "INSPECTED":
        flows.add("inspected", month, region, soh_bucket(data["soh_pct"]), soh_pct=data["soh_pct"])
    elif kind == "REMOVED":
        flows.add("removed", month, region, data["reason"])
    elif kind == "COLLECTED":
        flows.add("collected", month, data["region"], data["centre"])
    elif kind == "GRADED":
        flows.add("graded", month, region, data["grade"], soh_pct=data["soh_pct"])
    elif kind == "SAFETY_INSPECTED":
        flows.add("safety_inspected", month, region, data["result"], data["body"], data.get("standard", "KC 10031"))
    elif kind == "INCIDENT":
        after_reuse = any(p["type"] in REUSE_TYPES and p["sequence"] < e["sequence"] for p in timeline)
        flows.add("incident", month, region, data["kind"], data["severity"], "after_reuse" if after_reuse else "")
    elif kind == "DISPOSED":
        flows.add("disposed", month, region, data.get("method"))
    if kind in ("REPURPOSED", "REMANUFACTURED", "RECYCLED"):
        flows.add("outcome", month, region, kind.lower(), manufacturer, battery_kind)
    if kind == "RECYCLED":
        recovered = data["recovered_kg"]
        flows.add(
            "recycled",
            month,
            region,
            data["process"],
            input_mass_kg=data["input_mass_kg"],
            black_mass_kg=data["black_mass_kg"],
            **{m: recovered.get(m, 0.0) for m in RECOVERED},
        )


def contained_flows(flows: Flows, row: dict[str, Any]) -> bool:
    """Once a battery is both registered and recycled, its contained materials join the recovery-rate
    denominator (the two facts come from different streams, in either order). True if counted."""
    if row.get("contained_counted") or not row.get("registered") or row.get("recycled_month") is None:
        return False
    materials = row.get("materials_kg") or {}
    flows.add(
        "recycled_contained",
        row["recycled_month"],
        row.get("recycled_region"),
        **{m: materials.get(m, 0.0) for m in CONTAINED},
    )
    return True


def unique(messages: Iterable[Message | None]) -> list[Message]:
    seen: set[tuple[str, str]] = set()
    out = []
    for m in messages:
        if m is not None and (m.stream, m.event_id) not in seen:
            seen.add((m.stream, m.event_id))
            out.append(m)
    return out
