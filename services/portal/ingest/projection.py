"""How stream messages become read models, as pure functions over typed values: decoding a record, folding
a battery's timeline into its head, a battery's next row, and the flow figures each event adds. No I/O;
`service.py` fetches, calls these and stores."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from services.portal.ingest.schemas import (
    DATA_MODELS,
    AliasAddedIn,
    AmendedIn,
    BatteryRegisteredIn,
    ModelIn,
    ParticipantIn,
    VinIn,
)
from shared.contract.corrections import DECLARATION, declared_sequences
from shared.contract.lifecycle import MATERIALS, EventType
from shared.contract.lifecycle import LedgerRecord as LifecycleEventIn
from shared.contract.recalls import Campaign
from shared.contract.streams import (
    ALIAS_ADDED,
    BATTERY_AMENDED,
    BATTERY_REGISTERED,
    LIFECYCLE_TYPE_PREFIX,
    MODEL_REGISTERED,
    PARTICIPANT_REACTIVATED,
    PARTICIPANT_REGISTERED,
    PARTICIPANT_SUSPENDED,
    RECALL_REGISTERED,
    REGISTRY_TYPE_PREFIX,
    TOPIC_LIFECYCLE,
    TOPIC_VINS,
    VIN_RECORDED,
    LifecycleCloudEvent,
    is_known_lifecycle,
)
from shared.contract.streams import CloudEvent as CloudEventIn
from shared.kafka import ConsumerRecord, PoisonMessage

#: Ministries count by Korean calendar month.
KST = ZoneInfo("Asia/Seoul")
REGISTRY_TYPES: dict[str, type[ParticipantIn | ModelIn | BatteryRegisteredIn | AliasAddedIn | AmendedIn | Campaign]] = {
    PARTICIPANT_REGISTERED: ParticipantIn,
    PARTICIPANT_SUSPENDED: ParticipantIn,
    PARTICIPANT_REACTIVATED: ParticipantIn,
    MODEL_REGISTERED: ModelIn,
    BATTERY_REGISTERED: BatteryRegisteredIn,
    ALIAS_ADDED: AliasAddedIn,
    BATTERY_AMENDED: AmendedIn,
    RECALL_REGISTERED: Campaign,
}
#: Every material a recycler may report recovered, and a battery's registered content may name (the contract's).
RECOVERED = MATERIALS
#: The content always counted (0 when not registered); the contract's other materials where registered.
CONTAINED = ("lithium", "nickel", "cobalt", "manganese")
REUSE_TYPES = {EventType.REPURPOSED.value, EventType.REMANUFACTURED.value}


Body = ParticipantIn | ModelIn | BatteryRegisteredIn | AliasAddedIn | AmendedIn | LifecycleEventIn | VinIn | Campaign


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded stream message. `stream` is 'registry' or 'lifecycle'; `body` the parsed data."""

    stream: str
    event_id: str
    type: str
    body: Body

    @property
    def key(self) -> str:
        """What the portal dedupes on: a lifecycle event's place in its battery's ledger (event IDs are unique
        per poster only, so two posters' events may share one); a registry message's ID."""
        if isinstance(self.body, LifecycleEventIn):
            return f"{self.body.battery_id}/{self.body.sequence}"
        return self.event_id


def decode(rec: ConsumerRecord[bytes, bytes]) -> Message | None:
    """Decode and check one record. None for a message the portal skips by the contract's
    `UNKNOWN_TYPE_RULE` (a type it does not use, or one newer than it); PoisonMessage for anything that can
    never be applied (not a CloudEvent, or a known type with malformed data)."""
    if rec.topic.endswith(TOPIC_VINS):
        return decode_vin(rec)
    if rec.value and rec.topic.endswith(TOPIC_LIFECYCLE):
        known = LifecycleCloudEvent.known(rec.value)  # the fast path: one parse, one validation
        if known is not None:
            return _lifecycle(known.id, known.type, known.data)
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
            return _lifecycle(ce.id, ce.type, LifecycleEventIn.model_validate(ce.data))
    except ValidationError as exc:
        raise PoisonMessage(f"{ce.type} {ce.id}: invalid data: {exc}") from None
    return None  # UNKNOWN_TYPE_RULE: a message family this portal does not read is skipped


def _lifecycle(ce_id: str, ce_type: str, event: LifecycleEventIn) -> Message:
    """A known lifecycle event, checked against its envelope and its type's data model."""
    if event.event_id != ce_id:
        raise PoisonMessage(f"envelope id {ce_id} differs from data.event_id {event.event_id}")
    if ce_type != f"{LIFECYCLE_TYPE_PREFIX}{event.type.value.lower()}.v1":
        raise PoisonMessage(f"envelope type {ce_type} does not match data.type {event.type.value}")
    data_model = DATA_MODELS.get(event.type)
    if data_model is not None:
        try:
            data_model.model_validate(event.data)
        except ValidationError as exc:
            raise PoisonMessage(f"{ce_type} {ce_id}: invalid data: {exc}") from None
    return Message("lifecycle", ce_id, event.type.value, event)


def decode_vin(rec: ConsumerRecord[bytes, bytes]) -> Message | None:
    """A record of the compacted `battery.vins.v1`: a VIN, or (a tombstone: no value) its erasure. Keyed on
    the stream position, so a VIN erased and recorded again in one batch is applied in order."""
    at = f"{rec.partition}@{rec.offset}"
    try:
        if rec.value is None:
            pseudonym = (rec.key or b"").decode()
            return Message("vins", at, "tombstone", VinIn(pseudonym=pseudonym, vin=None))
        ce = CloudEventIn.model_validate(orjson.loads(rec.value))
        if ce.type != VIN_RECORDED:
            return None
        return Message("vins", at, ce.type, VinIn.model_validate(ce.data))
    except (orjson.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"not a VIN record: {exc}") from None


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


# ---- a battery: its registry facts and the head of its timeline ----


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One event of a battery's timeline as the portal stored it: what the fold and the flows read."""

    sequence: int
    event_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    state_after: str
    custodian_after: str
    location: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)  # type-specific, checked when decoded
    applied_at: datetime | None = None
    actor: str = ""
    declared_by: int | None = None  # as stored: the sequence of the ERROR_DECLARED that declared it

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> TimelineEvent:
        """From a row of `portal.events`."""
        return cls(
            sequence=row["sequence"],
            event_id=row["event_id"],
            type=row["type"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            state_after=row["state_after"],
            custodian_after=row["custodian_after"],
            location=row.get("location") or {},
            data=row.get("data") or {},
            applied_at=row.get("applied_at"),
            actor=row.get("actor") or "",
            declared_by=row.get("declared_by"),
        )


# ---- corrections: a declared event has no effect on any projection ----


def corrected(events: Sequence[TimelineEvent]) -> list[TimelineEvent]:
    """The timeline in sequence order without the events declared in error (shared.contract.corrections); the
    declarations stay (each records the corrected state and custodian)."""
    declared = declared_sequences(events)
    return [e for e in sorted(events, key=lambda e: e.sequence) if e.sequence not in declared]


def declared_marks(events: Sequence[TimelineEvent]) -> dict[int, int | None]:
    """{sequence: declared_by} for the events whose stored mark differs from what the timeline says now."""
    declared = declared_sequences(events)
    return {e.sequence: declared.get(e.sequence) for e in events if e.declared_by != declared.get(e.sequence)}


@dataclass(frozen=True, slots=True)
class Head:
    """A battery's current facts, folded from its timeline (the lifecycle columns of `portal.batteries`)."""

    sequence: int = 0
    state: str | None = None
    state_since: datetime | None = None
    custodian: str | None = None
    region: str | None = None
    grade: str | None = None
    soh_pct: float | None = None
    cycle_count: int | None = None
    parent_id: str | None = None
    vin: str | None = None
    life: int = 0
    status: str = "original"
    safety: str | None = None
    certificate_number: str | None = None  # the latest KC 10031 certificate of this life (None: none passing)
    certificate_body: str | None = None
    certificate_valid_until: date | None = None
    installed_at: datetime | None = None
    recycled_month: date | None = None
    recycled_region: str | None = None
    last_event_id: str | None = None
    last_recorded_at: datetime | None = None
    last_applied_at: datetime | None = None


HEAD_COLUMNS = tuple(f.name for f in fields(Head))


@dataclass(frozen=True, slots=True)
class Facts:
    """The registry facts a battery row keeps (the history answers them as they are)."""

    registered: bool = False
    model_id: str | None = None
    kind: str | None = None
    chemistry: str | None = None
    manufacturer: str | None = None
    serial_number: str | None = None
    manufactured_at: datetime | None = None
    manufacturing_site: str | None = None
    materials_kg: Mapping[str, float] | None = None
    recycled_content_pct: Mapping[str, float] | None = None
    carbon_footprint_kg_co2e_per_kwh: float | None = None
    model: Mapping[str, Any] | None = None

    @classmethod
    def registered_as(cls, b: BatteryRegisteredIn) -> Facts:
        return cls(registered=True, **b.model_dump(include=set(REGISTRY_FACTS)))


FACT_COLUMNS = tuple(f.name for f in fields(Facts))
REGISTRY_FACTS = tuple(name for name in FACT_COLUMNS if name != "registered")
#: The facts an amendment may change (the registry's `amendments.service.AMENDABLE`); others are ignored.
AMENDABLE = frozenset(
    {
        "manufactured_at",
        "manufacturing_site",
        "materials_kg",
        "recycled_content_pct",
        "carbon_footprint_kg_co2e_per_kwh",
    }
)


def amend(facts: Facts, amendments: Sequence[AmendedIn]) -> Facts:
    """The facts after the amendments, applied in number order: each changed fact takes its `after`."""
    values: dict[str, Any] = {}
    for a in sorted(amendments, key=lambda a: a.number):
        for name, change in a.changes.items():
            if name in AMENDABLE:
                after = change.after
                if name == "manufactured_at" and isinstance(after, str):
                    after = datetime.fromisoformat(after)
                values[name] = after
    return replace(facts, **values) if values else facts


@dataclass(frozen=True, slots=True)
class Battery:
    """A row of `portal.batteries`: registry facts, the folded head, and whether its contained materials
    have joined the recovery-rate denominator."""

    id: str
    facts: Facts = Facts()
    head: Head = Head()
    contained_counted: bool = False

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Battery:
        return cls(
            id=row["id"],
            facts=Facts(**{name: row[name] for name in FACT_COLUMNS}),
            head=Head(**{name: row[name] for name in HEAD_COLUMNS}),
            contained_counted=row["contained_counted"],
        )

    def row(self) -> dict[str, Any]:
        """As `repository.save_batteries` writes it."""
        out: dict[str, Any] = {"id": self.id, "contained_counted": self.contained_counted}
        out.update((name, getattr(self.facts, name)) for name in FACT_COLUMNS)
        out.update((name, getattr(self.head, name)) for name in HEAD_COLUMNS)
        return out


def fold(events: Sequence[TimelineEvent]) -> Head:
    """The battery's current facts from its events in sequence order: the event with the highest
    sequence decides the state, so a late, out-of-order delivery changes nothing it should not. Events declared
    in error are left out (`corrected`); a declaration moves only the state and custodian (to the corrected ones
    the events service recorded on it) and the head's sequence. An ERROR_DECLARED refolds the whole timeline."""
    head = Head()
    for e in corrected(events):
        head = step(head, e)
    return head


def step(head: Head, e: TimelineEvent) -> Head:
    """The head after one more event in effect (the fold's step)."""
    data, kind = e.data, e.type
    changes: dict[str, Any] = {
        "sequence": e.sequence,
        "state": e.state_after,
        "custodian": e.custodian_after,
        "region": (None if kind == DECLARATION else event_region(e)) or head.region,
        "last_event_id": e.event_id,
        "last_recorded_at": e.recorded_at,
        "last_applied_at": e.applied_at,
    }
    if e.state_after != head.state:
        changes["state_since"] = e.occurred_at
    if kind == "INSTALLED":
        changes.update(vin=data.get("vin"), installed_at=head.installed_at or e.occurred_at)
    elif kind in ("INSPECTED", "GRADED"):
        changes["soh_pct"] = data.get("soh_pct")
        if kind == "INSPECTED":
            changes["cycle_count"] = data.get("cycle_count")
        else:
            changes["grade"] = data.get("grade")
    elif kind == "BMS_REPORTED":
        # A report carries any subset of readings: what it reads moves the head, what it leaves out stays.
        changes.update({name: data[name] for name in ("soh_pct", "cycle_count") if data.get(name) is not None})
    elif kind == "ASSEMBLED":
        changes["parent_id"] = data.get("parent_id")
    elif kind == "DISASSEMBLED":
        changes["parent_id"] = None
    elif kind in REUSE_TYPES:
        # A new life and a new passport (EU rule); it is put into service anew.
        changes.update(life=head.life + 1, status=kind.lower(), safety=None, installed_at=None, **NO_CERTIFICATE)
    elif kind == "SAFETY_INSPECTED":
        changes["safety"] = data.get("result")
        changes.update(certificate(data))
    elif kind == "RECYCLED":
        changes.update(status="waste", recycled_month=month_of(e.occurred_at), recycled_region=event_region(e))
    elif kind == "DISPOSED":
        changes["status"] = "waste"
    return replace(head, **changes)


NO_CERTIFICATE: dict[str, Any] = {"certificate_number": None, "certificate_body": None, "certificate_valid_until": None}


def certificate(data: Mapping[str, Any]) -> dict[str, Any]:
    """The head's certificate after a SAFETY_INSPECTED: a passing one's number, body and validity; a failed one
    leaves none (the battery may not be installed on it)."""
    until = data.get("valid_until")
    if data.get("result") != "pass" or not until:
        return NO_CERTIFICATE
    return {
        "certificate_number": data.get("certificate_number"),
        "certificate_body": data.get("body"),
        "certificate_valid_until": date.fromisoformat(until),
    }


def lithium_based(chemistry: str | None) -> str:
    """'lithium' or 'other' for the EU recycling-efficiency targets (Annex XII part B); '' when not known yet."""
    if not chemistry:
        return ""
    return "other" if chemistry == "sodium-ion" else "lithium"


def event_region(e: TimelineEvent) -> str | None:
    region = e.location.get("region")
    if not region and e.type == "COLLECTED":
        region = e.data.get("region")
    return region or None


def count_key(b: Battery) -> tuple[str, ...] | None:
    """The battery's cell in `current_counts`, or None while no lifecycle event has arrived."""
    head, facts = b.head, b.facts
    if not head.state:
        return None
    reused = head.status in ("repurposed", "remanufactured")
    return (
        head.state,
        head.region or "",
        facts.manufacturer or "",
        facts.chemistry or "",
        facts.kind or "",
        head.status or "original",
        (head.safety or "pending") if reused else "",
        head.grade or "",
    )


def count_deltas(deltas: dict[tuple[str, ...], int], old: Battery, new: Battery) -> None:
    """Move the battery from its old cell of `current_counts` to its new one."""
    old_key, new_key = count_key(old), count_key(new)
    if old_key != new_key:
        if old_key:
            deltas[old_key] = deltas.get(old_key, 0) - 1
        if new_key:
            deltas[new_key] = deltas.get(new_key, 0) + 1


def advance(
    before: Battery,
    registration: BatteryRegisteredIn | None,
    timeline: Sequence[TimelineEvent],
    envelope: LifecycleEventIn | None,
    inserted: Container[tuple[str, int]],
    flows: Flows,
    amendments: Sequence[AmendedIn] = (),
) -> Battery:
    """The battery's next row after a batch: its registration (if it came) and its amendments, its head folded
    again from the whole timeline, the envelope's kind and manufacturer until the registration arrives. `flows`
    gets the change of the battery's contribution to the ministry figures: what it adds now (`contribution`) less
    what it added before the batch (the timeline without the events new in it), so an event declared in error, or
    a registry fact amended, takes back what it added. Where the batch only continues the timeline, `extend`
    comes to the same without the timeline."""
    facts = facts_after(before.facts, registration, envelope, amendments)
    battery = replace(before, facts=facts, head=fold(timeline) if timeline else before.head)
    battery = replace(battery, contained_counted=contains(battery))
    earlier = [e for e in timeline if (battery.id, e.sequence) not in inserted]
    flows.merge(contribution(before, earlier), -1)
    flows.merge(contribution(battery, timeline), 1)
    return battery


def facts_after(
    facts: Facts,
    registration: BatteryRegisteredIn | None,
    envelope: LifecycleEventIn | None,
    amendments: Sequence[AmendedIn] = (),
) -> Facts:
    """A battery's registry facts after a batch: its registration, its amendments, and until the registration
    arrives the kind and manufacturer the last lifecycle envelope names."""
    facts = Facts.registered_as(registration) if registration is not None else facts
    facts = amend(facts, amendments)
    if envelope is not None and not (facts.kind and facts.manufacturer):
        facts = replace(
            facts, kind=facts.kind or envelope.kind, manufacturer=facts.manufacturer or envelope.manufacturer
        )
    return facts


def continues(head: Head, events: Sequence[TimelineEvent]) -> bool:
    """Whether the events, in this order, take the timeline on from its head: the next sequences one after the
    other, none an ERROR_DECLARED. The head's sequence is the highest the portal holds (a declaration only
    declares an earlier event, so the last one is always in effect), and an event after it changes nothing
    folded before it: the head folded on by these events is the fold of the whole timeline. A gap, a late or
    repeated event, or a declaration (which may take back any earlier event) needs the whole timeline."""
    return all(e.sequence == head.sequence + i and e.type != DECLARATION for i, e in enumerate(events, 1))


def extend(before: Battery, events: Sequence[TimelineEvent], flows: Flows) -> Battery:
    """`advance` for a batch whose events only continue the battery's timeline (`continues`) and that changes none
    of its registry facts: the head folded on from where it is, and `flows` the flows of the new events alone
    (at the region the head holds, after a reuse if the head counts one) and the move of its contained materials.
    That is the difference `advance` takes between the whole timeline's contribution and the earlier events',
    without reading the timeline. (So a battery's head is no longer refolded by every batch that touches it: a
    head column added later is filled by a rebuild, as its migration says.)"""
    head, reused = before.head, before.head.life > 0
    for e in events:
        head = step(head, e)
        event_flows(flows, e, reused, before, head.region or "")
        reused = reused or e.type in REUSE_TYPES
    battery = replace(before, head=head)
    battery = replace(battery, contained_counted=contains(battery))
    flows.merge(contained_contribution(before), -1)
    flows.merge(contained_contribution(battery), 1)
    return battery


def contribution(b: Battery, timeline: Sequence[TimelineEvent]) -> Flows:
    """Everything one battery adds to the ministry figures, from its registry facts and its corrected timeline:
    its registration, each event's flow (at the region the battery was in at that event), and its contained
    materials once it is recycled. A pure function of the two, so the figures are the same whatever the batching,
    and any change to either (a late event, a declaration, an amendment) moves them by the difference."""
    out = Flows()
    if b.facts.registered:
        registration_flows(out, b.facts)
    region: str | None = None
    reused = False
    for e in corrected(timeline):
        if e.type == DECLARATION:
            continue
        region = event_region(e) or region
        event_flows(out, e, reused, b, region or "")
        reused = reused or e.type in REUSE_TYPES
    if contains(b):
        _add_contained(out, b)
    return out


def contained_contribution(b: Battery) -> Flows:
    """The battery's contained materials in the recovery-rate denominator: nothing until it is both registered
    and recycled."""
    out = Flows()
    if contains(b):
        _add_contained(out, b)
    return out


def proven_handlers(b: Battery, timeline: Sequence[TimelineEvent]) -> set[str]:
    """Who the corrected timeline proves a relation for (as `service.handlers_of` adds them): the manufacturer,
    every custodian after an event in effect, every consignee one names. A declared event proves nothing."""
    found = {e.custodian_after for e in corrected(timeline)}
    found |= {c for e in corrected(timeline) if isinstance(c := e.data.get("consignee"), str) and c}
    if b.facts.manufacturer:
        found.add(b.facts.manufacturer)
    return found


def posted(
    rows: Iterable[Mapping[str, Any]], inserted: Mapping[tuple[str, int], datetime]
) -> dict[str, list[TimelineEvent]]:
    """The events a batch added to the portal's timelines (`event_row`s, with the `applied_at` each was stored
    with), per battery in sequence order, as the timeline read back would give them: times in UTC, as the
    database answers them."""
    out: dict[str, list[TimelineEvent]] = {}
    for row in rows:
        applied_at = inserted.get((row["battery_id"], row["sequence"]))
        if applied_at is not None:
            utc = {k: row[k].astimezone(UTC) for k in ("occurred_at", "recorded_at")}
            out.setdefault(row["battery_id"], []).append(TimelineEvent.of({**row, **utc, "applied_at": applied_at}))
    for events in out.values():
        events.sort(key=lambda e: e.sequence)
    return out


def event_row(e: LifecycleEventIn) -> dict[str, Any]:
    """A lifecycle event as `repository.insert_events` writes it."""
    row = e.model_dump(mode="python", exclude={"kind", "manufacturer"})
    row["type"] = e.type.value
    row["state_after"] = e.state_after.value
    row["location"] = e.location.model_dump(exclude_none=True)
    row["parent_id"] = e.data.get("parent_id") if e.type.value in ("ASSEMBLED", "DISASSEMBLED") else None
    return row


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

    def merge(self, other: Flows, sign: int) -> None:
        """Add (sign 1) or take away (sign -1) another's rows."""
        for key, (n, sums) in other.rows.items():
            count, mine = self.rows.get(key, (0, {}))
            for name, value in sums.items():
                mine[name] = mine.get(name, 0.0) + sign * value
            self.rows[key] = (count + sign * n, mine)

    def changes(self) -> dict[tuple[str, date, str, str, str, str], tuple[int, dict[str, float]]]:
        """The rows that change anything (a battery's unchanged contribution cancels out)."""
        return {k: (n, sums) for k, (n, sums) in self.rows.items() if n or any(sums.values())}


def registration_flows(flows: Flows, b: Facts) -> None:
    rc = b.recycled_content_pct or {}
    model = b.model or {}
    if b.manufactured_at is None:
        return
    flows.add(
        "registered",
        month_of(b.manufactured_at),
        "",
        b.manufacturer,
        b.chemistry,
        b.kind,
        kwh=model.get("rated_energy_kwh"),
        rc_lithium=rc.get("lithium", 0.0),
        rc_nickel=rc.get("nickel", 0.0),
        rc_cobalt=rc.get("cobalt", 0.0),
        rc_lead=rc.get("lead", 0.0),
    )


def event_flows(flows: Flows, e: TimelineEvent, after_reuse: bool, battery: Battery, region: str) -> None:
    """What one lifecycle event adds to the ministry figures (`after_reuse`: whether a REPURPOSED or
    REMANUFACTURED in effect came before it; `region`: where the battery was at it)."""
    kind, data = e.type, e.data
    month = month_of(e.occurred_at)
    manufacturer = battery.facts.manufacturer
    battery_kind = battery.facts.kind
    if kind == "INSTALLED":
        flows.add("installed", month, region, "vehicle" if data.get("vin") else "ess", manufacturer, battery_kind)
    elif kind == "INSPECTED":
        flows.add("inspected", month, region, soh_bucket(data["soh_pct"]), soh_pct=data["soh_pct"])
    elif kind == "REMOVED":
        flows.add("removed", month, region, data["reason"])
    elif kind == "COLLECTED":
        collected_flow(flows, e, battery)
    elif kind == "GRADED":
        pre = "pre_removal" if data.get("pre_removal") else ""
        flows.add("graded", month, region, data["grade"], pre, soh_pct=data["soh_pct"])
    elif kind == "SAFETY_INSPECTED":
        flows.add("safety_inspected", month, region, data["result"], data["body"], data.get("standard", "KC 10031"))
    elif kind == "INCIDENT":
        flows.add("incident", month, region, data["kind"], data["severity"], "after_reuse" if after_reuse else "")
    elif kind == "DISPOSED":
        flows.add("disposed", month, region, data.get("method"))
    if kind in ("REPURPOSED", "REMANUFACTURED", "RECYCLED"):
        flows.add("outcome", month, region, kind.lower(), manufacturer, battery_kind)
    if kind == "RECYCLED":
        recycled_flow(flows, e, region, lithium_based(battery.facts.chemistry))


def collected_flow(flows: Flows, e: TimelineEvent, battery: Battery) -> None:
    """A collection: one battery, its registered mass and rated energy (when registered: a registration that
    arrives later moves the battery's contribution by the difference, see `contribution`)."""
    model: Mapping[str, Any] = battery.facts.model or {}
    kg, kwh = model.get("mass_kg"), model.get("rated_energy_kwh")
    flows.add("collected", month_of(e.occurred_at), e.data["region"], e.data["centre"], kg=kg, kwh=kwh)


def recycled_flow(flows: Flows, e: TimelineEvent, region: str, family: str) -> None:
    """A recycling, keyed by process, recycler (its custodian's event) and chemistry family."""
    data, recovered = e.data, e.data["recovered_kg"]
    flows.add(
        "recycled",
        month_of(e.occurred_at),
        region,
        data["process"],
        e.custodian_after,
        family,
        input_mass_kg=data["input_mass_kg"],
        black_mass_kg=data["black_mass_kg"],
        **{m: recovered.get(m, 0.0) for m in RECOVERED},
    )


def contains(b: Battery) -> bool:
    """Once a battery is both registered and recycled, its contained materials join the recovery-rate
    denominator (the two facts come from different streams, in either order)."""
    return b.facts.registered and b.head.recycled_month is not None


def contained_flows(flows: Flows, b: Battery) -> bool:
    """Add the battery's contained materials unless they are counted already (`contained_counted`) or it is not
    both registered and recycled. True if added."""
    if b.contained_counted or not contains(b):
        return False
    _add_contained(flows, b)
    return True


def _add_contained(flows: Flows, b: Battery) -> None:
    materials: Mapping[str, Any] = b.facts.materials_kg or {}  # Any: `add` takes the amounts as keywords
    flows.add(
        "recycled_contained",
        b.head.recycled_month or date.min,
        b.head.recycled_region,
        b.head.custodian,  # the recycler, as in the "recycled" flow's k2
        **{m: materials.get(m, 0.0) for m in CONTAINED},
        **{m: materials[m] for m in MATERIALS if m not in CONTAINED and m in materials},
    )


def unique(messages: Iterable[Message | None]) -> list[Message]:
    seen: set[tuple[str, str]] = set()
    out = []
    for m in messages:
        if m is not None and (m.stream, m.key) not in seen:
            seen.add((m.stream, m.key))
            out.append(m)
    return out
