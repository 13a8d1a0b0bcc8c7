"""The lifecycle state machine, pure: no I/O, no SQL, no web framework.

Given a battery's state, the poster and an event (with the assembly parent's state and the declared event where
the event needs them), `apply` answers a `Transition` (the new state and the ledger row, hashed) or a `Refusal`
(the problem a client gets: status, code, title, detail, field errors, extra members). The transition table it
follows is `rules.py`. The service locks, looks up, stores and publishes; it never decides."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from services.events.lifecycle.plausibility import CODES as IMPLAUSIBLE_CODES
from services.events.lifecycle.plausibility import Facts, Implausible, Readings, Tolerances, check, observe
from services.events.lifecycle.rules import (
    ASSEMBLY_PAIRS,
    DESIGNATED_BODIES,
    NAMES_CONSIGNEE,
    NEEDS_CERTIFICATE,
    PRE_GRADED_SOURCES,
    READS_IN_SERVICE,
    Custody,
    Rule,
    admits,
    allowed_events,
    is_pre_removal,
    may_hold,
    rule_for,
)
from shared.access import Role
from shared.contract.corrections import declared_sequences
from shared.contract.lifecycle import FINAL_STATES, GENESIS, EventType, Grade, State, event_hash, ts
from shared.contract.streams import manufactured_event_id
from shared.problem_catalogue import CATALOGUE


def as_row(value: Any) -> dict[str, Any]:
    """A dataclass's fields as a row to store or publish: text as plain `str` (a StrEnum by its value), mappings
    as dicts (of plain values), nested dataclasses as rows. (On the hot path, several times per event: field
    names are looked up once per class, and plain values pass without the ABC checks.)"""
    return {name: _plain(getattr(value, name)) for name in field_names(type(value))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, looked up once per class (`dataclasses.fields` builds a tuple each call)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class Row:
    """A dataclass that is stored and published as a row (`as_row`)."""

    __slots__ = ()

    def as_row(self) -> dict[str, Any]:
        return as_row(self)


_PLAIN = frozenset({int, float, bool, type(None), datetime})


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN or kind is str:
        return value
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    if kind in _FIELD_NAMES:  # a dataclass seen before: no ABC check on the way
        return as_row(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return as_row(value) if is_dataclass(value) else value


# ---- inputs ----
@dataclass(frozen=True, slots=True)
class SafetyInspection:
    """The battery's latest SAFETY_INSPECTED (since its last remanufacturing or repurposing): its KC 10031
    certificate (None members: not given, e.g. on a failed inspection, or recorded before certificates were)."""

    standard: str  # the safety standard inspected against, e.g. "KC 10031"
    result: str  # "pass" or "fail"
    body: str  # the designated inspection body
    at: str  # when it was inspected (the event's occurred_at, ISO)
    event_id: str  # the SAFETY_INSPECTED that recorded it
    certificate_number: str | None = None
    edition: str | None = None
    valid_until: str | None = None  # ISO date: the last day the certificate is valid
    report_ref: str | None = None

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SafetyInspection:
        """From its stored JSON, or a SAFETY_INSPECTED's data with `at` and `event_id` (other members ignored;
        the certificate's members may be missing)."""
        return cls(**{name: value[name] for name in field_names(cls) if name in value})

    def valid_on(self, day: date) -> bool:
        """A passing certificate valid on that day."""
        return self.result == "pass" and self.valid_until is not None and date.fromisoformat(self.valid_until) >= day


@dataclass(frozen=True, slots=True)
class BatteryState(Row):
    """A battery's current lifecycle state: what its last event left."""

    battery_id: str
    kind: str  # cell, module or pack
    model_id: str
    manufacturer: str  # the participant that made it (the registry's record)
    state: State
    custodian: str  # the participant holding it now
    sequence: int  # of its last event; the next one must be sequence + 1
    last_hash: str  # its last event's hash, which the next one chains to
    last_event_at: datetime  # its last event's occurred_at; a later event may not be older
    grade: Grade | None = None
    safety_inspection: SafetyInspection | None = None
    parent_id: str | None = None
    consignee: str | None = None  # named by the custodian's REMOVED; may take custody by COLLECTED
    pre_removal_grade: Grade | None = None  # a grade given in service, deciding what follows the removal
    facts: Facts = field(default_factory=Facts)  # the registry's facts the plausibility rules compare with
    readings: Readings = field(default_factory=Readings)  # the last SoH and cycle count, for the plausibility rules

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BatteryState:
        values = {name: row[name] for name in field_names(cls) if name in row}
        grade, si, pre = values.get("grade"), values.get("safety_inspection"), values.get("pre_removal_grade")
        values["state"] = State(values["state"])
        values["grade"] = None if grade is None else Grade(grade)
        values["pre_removal_grade"] = None if pre is None else Grade(pre)
        values["safety_inspection"] = None if si is None else SafetyInspection.from_json(si)
        values["facts"] = Facts.from_json(values.get("facts"))
        values["readings"] = Readings.from_json(values.get("readings"))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Poster:
    """Who posts: the organisation and role from the credential."""

    org: str
    role: Role
    is_authority: bool = False


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the participant directory says of TRANSFERRED's `data.to`: its role and whether it is active
    (`role` None: not a registered participant)."""

    org: str
    role: Role | None
    active: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """An event as posted, its `data` already validated against its type (JSON form, no None members)."""

    type: EventType
    event_id: str
    battery_id: str
    occurred_at: datetime
    location: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    expected_sequence: int | None = None
    request_digest: str = ""  # what the client sent, for idempotent retries; stored with the row


@dataclass(frozen=True, slots=True)
class DeclaredEvent:
    """The ledger event an ERROR_DECLARED names."""

    event_id: str
    battery_id: str
    type: EventType
    actor: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeclaredEvent:
        return cls(str(row["event_id"]), row["battery_id"], EventType(row["type"]), row["actor"])


# ---- outputs ----
@dataclass(frozen=True, slots=True)
class LedgerRow(Row):
    """One ledger record, hashed: what is appended to the ledger and published."""

    event_id: str
    battery_id: str
    sequence: int
    type: EventType
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    actor_role: str
    location: Mapping[str, Any]
    data: Mapping[str, Any]
    state_after: State
    custodian_after: str
    prev_hash: str
    hash: str
    request_digest: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LedgerRow:
        """From a stored ledger row."""
        values = {name: row[name] for name in field_names(cls)}
        values["event_id"] = str(values["event_id"])
        values["type"] = EventType(values["type"])
        values["state_after"] = State(values["state_after"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Transition:
    """An applied event: the battery's state after it, and the ledger row that records it."""

    state: BatteryState  # what the next event of the battery is checked against
    row: LedgerRow  # chained to the previous row's hash; appended by the service


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an event is not applied, as the problem the client gets (the service renders it)."""

    status: int
    code: str
    title: str
    detail: str
    errors: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def field_error(field: str, rule: str, message: str) -> dict[str, Any]:
    return {"field": field, "rule": rule, "message": message}


#: The code of `registration_pending`: the service answers the whole request with it (503, Retry-After).
REGISTRATION_PENDING = "registration-pending"

#: The HTTP status of every refusal's code. Its title is the English one of the problem catalogue
#: (`shared.problem_catalogue`), so that a code answers with one status and one title wherever it is refused.
REFUSAL_STATUS: Mapping[str, int] = {
    "validation-error": 422,
    "event-id-conflict": 409,
    "depends-on-failed-item": 409,
    "forbidden": 403,
    "unknown-battery": 404,
    "unknown-event": 404,
    "sequence-conflict": 409,
    "illegal-transition": 409,
    "not-custodian": 409,
    "not-a-component": 409,
    "already-declared": 409,
    "correction-window-closed": 403,
    "later-events-depend": 409,
    "unknown-recall-campaign": 422,
    "recall-not-covering": 422,
    "recall-campaign-required": 422,
    REGISTRATION_PENDING: 503,
    **dict.fromkeys(IMPLAUSIBLE_CODES, 422),
}


def refuse(code: str, detail: str, *errors: Mapping[str, Any], **extra: Any) -> Refusal:
    """The refusal of this code (a key of `REFUSAL_STATUS`), with its status and title."""
    return Refusal(REFUSAL_STATUS[code], code, CATALOGUE[code].title_en, detail, errors, extra)


def invalid(detail: str, *errors: Mapping[str, Any]) -> Refusal:
    return refuse("validation-error", detail, *errors)


def id_conflict(event_id: str) -> Refusal:
    return refuse(
        "event-id-conflict",
        f"Event ID {event_id} was already used for different content.",
        field_error("event_id", "unique-content", "already used for different content"),
    )


def depends_on_failed(battery_id: str) -> Refusal:
    return refuse(
        "depends-on-failed-item",
        f"Not applied: an earlier event for battery {battery_id} in this batch failed.",
    )


#: How far ahead of the server's clock an event's occurred_at may be (the events setting
#: `occurred_at_max_ahead_s` overrides it).
MAX_AHEAD = timedelta(seconds=5)


# ---- the rules ----
def postable(etype: EventType) -> Refusal | None:
    """MANUFACTURED comes from the registry, never from a client."""
    if etype is EventType.MANUFACTURED:
        return invalid(
            "MANUFACTURED is recorded when the battery is registered at the registry.",
            field_error("type", "postable", "MANUFACTURED cannot be posted"),
        )
    return None


def authorize(etype: EventType, poster: Poster, data: Mapping[str, Any] | None = None) -> Refusal | None:
    """The poster's role may post the type (a postable one)."""
    rule = rule_for(etype, data)
    if poster.role not in rule.roles:
        return refuse(
            "forbidden",
            f"Role '{poster.role.value}' may not post {etype.value}; allowed roles: "
            f"{', '.join(sorted(r.value for r in rule.roles))}.",
        )
    return None


def genesis(
    *,
    battery_id: str,
    kind: str,
    model_id: str,
    manufacturer: str,
    manufactured_at: datetime,
    site: str | None,
    recorded_at: datetime,
    facts: Facts = Facts(),
) -> Transition:
    """A registered battery's first state and its MANUFACTURED ledger row (sequence 1); `facts`: what the registry
    says of it that the plausibility rules compare with."""
    made = Event(
        EventType.MANUFACTURED,
        manufactured_event_id(battery_id),
        battery_id,
        manufactured_at,
        {"site": site},
        {"model_id": model_id, "kind": kind},
    )
    row = _row(0, GENESIS, Poster(manufacturer, Role.manufacturer), made, recorded_at, State.manufactured, manufacturer)
    row = replace(row, request_digest=row.hash)  # no client sent the registration: its digest is its hash
    state = BatteryState(
        battery_id=battery_id,
        kind=kind,
        model_id=model_id,
        manufacturer=manufacturer,
        state=State.manufactured,
        custodian=manufacturer,
        sequence=1,
        last_hash=row.hash,
        last_event_at=manufactured_at,
        facts=facts,
    )
    return Transition(state, row)


def apply(
    state: BatteryState | None,
    poster: Poster,
    event: Event,
    *,
    recorded_at: datetime,
    parent: BatteryState | None = None,
    declared: DeclaredEvent | None = None,
    max_ahead: timedelta = MAX_AHEAD,
    receiver: Receiver | None = None,
    tolerances: Tolerances = Tolerances(),
    designated_bodies: Sequence[str] = DESIGNATED_BODIES,
    corrections: Corrections | None = None,
) -> Transition | Refusal:
    """Apply one event. `parent`: the state of `data.parent_id` (ASSEMBLED, DISASSEMBLED); `declared`: the
    event `data.declared_event_id` names (ERROR_DECLARED); `receiver`: what the participant directory says of
    TRANSFERRED's `data.to` (None: not looked up, the receiver is not checked). None where it is not known.
    `recorded_at` is the server's clock: `occurred_at` may be at most `max_ahead` later. `tolerances`: how far
    reported numbers may stray (`plausibility`); `designated_bodies`: who may issue KC 10031 certificates;
    `corrections`: the battery's ledger an ERROR_DECLARED corrects (see `correct`); without it a declaration only
    marks the event."""
    refusal = postable(event.type) or authorize(event.type, poster, event.data)
    if refusal is not None:
        return refusal
    if state is None:
        return refuse("unknown-battery", f"No battery '{event.battery_id}' is registered.")
    if event.expected_sequence is not None and event.expected_sequence != state.sequence:
        return refuse(
            "sequence-conflict",
            f"expected_sequence {event.expected_sequence} but battery {event.battery_id} is at {state.sequence}.",
            current_sequence=state.sequence,
        )
    rule = rule_for(event.type, event.data)
    corrected: BatteryState | None = None
    if event.type is EventType.ERROR_DECLARED:
        refusal = _check_declaration(event, declared, poster)
        if refusal is not None:
            return refusal
        if corrections is not None and declared is not None:
            outcome = correct(
                state,
                poster,
                declared,
                corrections,
                recorded_at=recorded_at,
                tolerances=tolerances,
                designated_bodies=designated_bodies,
            )
            if isinstance(outcome, Refusal):
                return outcome
            corrected = outcome
    refusal = _check_source(state, event, rule)
    if refusal is not None:
        return refusal
    if event.occurred_at > recorded_at + max_ahead:
        return invalid(
            f"occurred_at {event.occurred_at.isoformat()} is more than {max_ahead.total_seconds():g} s ahead of the "
            f"server's clock ({recorded_at.isoformat()}).",
            field_error("occurred_at", "not-in-future", f"more than {max_ahead.total_seconds():g} s in the future"),
        )
    if event.occurred_at < state.last_event_at:
        return invalid(
            f"occurred_at {event.occurred_at.isoformat()} precedes the battery's last event "
            f"({state.last_event_at.isoformat()}).",
            field_error("occurred_at", "not-before-last-event", "precedes the battery's last event"),
        )
    moved = _custody(state, poster, event, rule, parent)
    if isinstance(moved, Refusal):
        return moved
    if event.type is EventType.TRANSFERRED and receiver is not None:
        refusal = _check_receiver(state, receiver)
        if refusal is not None:
            return refusal
    if event.type is EventType.SAFETY_INSPECTED:
        refusal = _check_certificate(event, designated_bodies)
        if refusal is not None:
            return refusal
    # After the custody check: the numbers a refusal names (a battery's registered content) reach only its holder.
    verdict = check(event.type, event.data, state.facts, state.readings, tolerances)
    if verdict.implausible is not None:
        return implausible(verdict.implausible)
    if verdict.pending is not None:
        return registration_pending(state.battery_id, verdict.pending)
    return _transition(state, poster, event, rule, moved, recorded_at, verdict.unchecked, corrected)


def registration_pending(battery_id: str, field: str) -> Refusal:
    """A rule needs the battery's registered content, which arrives with its registration; the ledger began from
    the registry's public read before that. Retry: the event is neither refused nor flagged for good."""
    return refuse(
        REGISTRATION_PENDING,
        f"Battery {battery_id}'s registration (its material content, which {field} is checked against) has not "
        "reached the events service yet; retry shortly.",
        field_error(field, "registered-content", "checked against the registration, not received yet"),
    )


def implausible(found: Implausible) -> Refusal:
    """A broken plausibility rule as the problem the client gets: its code names the rule, its members the
    numbers."""
    return refuse(
        found.code, found.detail, field_error(found.field, found.rule, found.detail), rule=found.rule, **found.numbers
    )


def _check_certificate(event: Event, designated_bodies: Sequence[str]) -> Refusal | None:
    """A KC 10031 certificate comes from a designated body and is not already expired when issued."""
    data = event.data
    if data["body"] not in designated_bodies:
        return invalid(
            f"'{data['body']}' is not a body designated for KC 10031 safety inspections "
            f"(designated: {', '.join(designated_bodies)}).",
            field_error("data.body", "designated-body", "not a designated inspection body"),
        )
    valid_until = data.get("valid_until")
    if valid_until is not None and date.fromisoformat(valid_until) < event.occurred_at.date():
        return invalid(
            f"valid_until {valid_until} precedes the inspection ({event.occurred_at.date().isoformat()}).",
            field_error("data.valid_until", "not-before-inspection", "precedes the inspection"),
        )
    return None


def _illegal(state: BatteryState, etype: EventType, why: str) -> Refusal:
    allowed = [e.value for e in allowed_events(state.state, state.grade, state.pre_removal_grade)]
    return refuse(
        "illegal-transition",
        f"{etype.value} is not allowed for battery {state.battery_id} in state '{state.state.value}'{why}. "
        f"Allowed next events: {', '.join(allowed) or 'none (final state)'}.",
        current_state=state.state.value,
        allowed_events=allowed,
    )


def _check_source(state: BatteryState, event: Event, rule: Rule) -> Refusal | None:
    """The battery's state (and grade, grade before removal, and certificate) admits the event."""
    current, pre = state.state, state.pre_removal_grade
    if not admits(rule, current, state.grade, pre):
        if rule.grade is not None and current in PRE_GRADED_SOURCES and pre is not None:
            return _illegal(state, event.type, f" (graded '{pre.value}' before removal, not '{rule.grade.value}')")
        if rule.grade is not None and current is State.graded:
            grade = None if state.grade is None else state.grade.value
            return _illegal(state, event.type, f" (graded '{grade}', not '{rule.grade.value}')")
        if event.type is EventType.GRADED:
            hint = (
                " (pre-removal grading is for a battery in service)"
                if is_pre_removal(event.type, event.data)
                else " (in service, only a pre-removal grading: data.pre_removal = true)"
                if current is State.in_service
                else ""
            )
            return _illegal(state, event.type, hint)
        return _illegal(state, event.type, "")
    if event.type is EventType.INSTALLED and current in NEEDS_CERTIFICATE:
        si, day = state.safety_inspection, event.occurred_at.date()
        if si is None or si.result != "pass":
            return _illegal(
                state,
                event.type,
                f" (a {current.value} battery needs a passing SAFETY_INSPECTED first)",
            )
        if not si.valid_on(day):
            expired = "has no validity date" if si.valid_until is None else f"expired on {si.valid_until}"
            return _illegal(
                state,
                event.type,
                f" (its KC 10031 certificate {si.certificate_number or si.event_id} {expired}: a new "
                "SAFETY_INSPECTED is needed)",
            )
    return None


@dataclass(frozen=True, slots=True)
class _Moved:
    """Custody after the event: the custodian, the parent, the pending consignee."""

    custodian: str
    parent_id: str | None
    consignee: str | None


def _custody(
    state: BatteryState, poster: Poster, event: Event, rule: Rule, parent: BatteryState | None
) -> _Moved | Refusal:
    """Custody after the event, or why the poster may not post it. Custody moves only with the custodian's
    consent (its TRANSFERRED, or the consignee its REMOVED named), and to whoever takes the battery out of a
    vehicle (REMOVED). A consignment lapses when custody moves."""
    custodian, parent_id = state.custodian, state.parent_id
    holds = custodian == poster.org
    if rule.custody in (Custody.custodian, Custody.receiver, Custody.assembly) and not holds:
        return _not_custodian(event, custodian)
    if rule.custody is Custody.consignee and not holds and state.consignee != poster.org:
        return _not_custodian(event, custodian, state.consignee)
    if rule.custody is Custody.reporter and not (holds or _reads(state, poster)):
        return _not_custodian(
            event, custodian, also=" (or to be its manufacturer, or an inspector or assessor while in service)"
        )
    if rule.custody is Custody.receiver:
        if event.data["to"] == custodian:
            return invalid(
                "data.to is already the custodian.",
                field_error("data.to", "other-than-custodian", "already the custodian"),
            )
        return _Moved(event.data["to"], parent_id, None)
    if rule.custody in (Custody.becomes, Custody.consignee):
        consignee = event.data.get("consignee") if event.type in NAMES_CONSIGNEE else None
        if consignee is not None and consignee == poster.org:
            return invalid(
                "data.consignee is the poster, who becomes the custodian.",
                field_error("data.consignee", "other-than-custodian", "the poster becomes the custodian"),
            )
        return _Moved(poster.org, parent_id, consignee)
    if rule.custody in (Custody.parent, Custody.assembly):
        return _assembly(state, poster, event, parent)
    return _Moved(custodian, parent_id, state.consignee)


def _reads(state: BatteryState, poster: Poster) -> bool:
    """Whether a BMS_REPORTED's poster who does not hold the battery may report on it (`READS_IN_SERVICE`)."""
    return poster.org == state.manufacturer or (state.state is State.in_service and poster.role in READS_IN_SERVICE)


def _assembly(state: BatteryState, poster: Poster, event: Event, parent: BatteryState | None) -> _Moved | Refusal:
    """ASSEMBLED (the poster holds the child, checked before, and the parent) and DISASSEMBLED (the poster holds
    the parent, and becomes the child's custodian)."""
    parent_id: str = event.data["parent_id"]
    if parent is None:
        return refuse(
            "unknown-battery",
            f"No parent battery '{parent_id}' is registered.",
            field_error("data.parent_id", "known-battery", "not registered"),
        )
    if parent.custodian != poster.org:
        return refuse(
            "not-custodian",
            f"{event.type.value} needs custody of the parent {parent_id}; its custodian is {parent.custodian}.",
            custodian=parent.custodian,
        )
    if event.type is EventType.ASSEMBLED:
        if parent_id == event.battery_id or (state.kind, parent.kind) not in ASSEMBLY_PAIRS:
            return invalid(
                f"A {state.kind} cannot be assembled into a {parent.kind} "
                "(allowed: cell→module, module→pack, cell→pack).",
                field_error("data.parent_id", "assembly-pairing", "kind pairing not allowed"),
            )
        if parent.state in {State.recycled, State.disposed}:
            return _illegal(parent, event.type, " (the parent is in a final state)")
        return _Moved(poster.org, parent_id, None)
    if state.parent_id != parent_id:
        return refuse(
            "not-a-component",
            f"{event.battery_id} is not a current component of {parent_id}.",
            field_error("data.parent_id", "current-parent", "not the battery's current parent"),
        )
    return _Moved(poster.org, None, None)


def _check_receiver(state: BatteryState, receiver: Receiver) -> Refusal | None:
    """TRANSFERRED's receiver is an active participant whose role may hold the battery in its state (MAY_HOLD)."""
    name = "data.to"
    if receiver.role is None:
        return invalid(
            f"'{receiver.org}' is not a registered participant; custody cannot move to it.",
            field_error(name, "registered-participant", "not a registered participant"),
        )
    if not receiver.active:
        return invalid(
            f"Participant '{receiver.org}' is suspended; custody cannot move to it.",
            field_error(name, "active-participant", "the participant is suspended"),
        )
    if not may_hold(receiver.role, state.state):
        return invalid(
            f"A {receiver.role.value} may not hold a battery in state '{state.state.value}'.",
            field_error(name, "may-hold", f"role '{receiver.role.value}' may not hold a '{state.state.value}' battery"),
        )
    return None


def _unknown_event(detail: str) -> Refusal:
    """An ERROR_DECLARED naming no event of the battery's ledger."""
    return refuse("unknown-event", detail, field_error("data.declared_event_id", "known-event", "not in the ledger"))


def _check_declaration(event: Event, declared: DeclaredEvent | None, poster: Poster) -> Refusal | None:
    """The declared event exists, belongs to this battery, is not itself a declaration, and the poster is its
    actor or an authority."""
    declared_id = event.data["declared_event_id"]
    name = "data.declared_event_id"
    if declared is None:
        return _unknown_event(f"No event {declared_id} is in the ledger.")
    if declared.battery_id != event.battery_id:
        return invalid(
            f"Event {declared_id} belongs to battery {declared.battery_id}, not {event.battery_id}.",
            field_error(name, "same-battery", "belongs to another battery"),
        )
    if declared.type is EventType.ERROR_DECLARED:
        return invalid(
            "An error declaration cannot itself be declared in error; declare the original event again.",
            field_error(name, "not-a-declaration", "is an error declaration"),
        )
    if declared.actor != poster.org and not poster.is_authority:
        return refuse(
            "forbidden",
            f"Only the event's actor ({declared.actor}) or an authority may declare it in error.",
        )
    return None


def resolve_declared(
    event: Event, poster: Poster, candidates: Sequence[DeclaredEvent]
) -> DeclaredEvent | Refusal | None:
    """Which event an ERROR_DECLARED names. Event IDs are unique per poster only, so `declared_event_id` is
    looked for on the event's battery (narrowed to `data.declared_actor` when given); where several posters used
    it there, the poster's own is meant, else the declaration must name `declared_actor`. An ID found only among
    the poster's own events on another battery is answered (`apply` then refuses it as another battery's); None:
    no such event."""
    declared_id = event.data["declared_event_id"]
    named = event.data.get("declared_actor")
    fitting = [c for c in candidates if c.event_id == declared_id and (named is None or c.actor == named)]
    here = [c for c in fitting if c.battery_id == event.battery_id]
    if len(here) > 1:
        here = [c for c in here if c.actor == poster.org]
        if len(here) != 1:
            return invalid(
                f"Several participants' events on {event.battery_id} carry the ID {declared_id}; "
                "name the one meant in data.declared_actor.",
                field_error("data.declared_actor", "names-one-event", "required: the event ID is ambiguous"),
            )
    if here:
        return here[0]
    own = [c for c in fitting if c.actor == poster.org]
    return own[0] if own else None


def _not_custodian(event: Event, custodian: str, consignee: str | None = None, also: str = "") -> Refusal:
    named = "" if consignee is None else f" (consigned to {consignee})"
    return refuse(
        "not-custodian",
        f"{event.type.value} needs custody of {event.battery_id}{also}; its custodian is {custodian}{named}.",
        custodian=custodian,
    )


def _transition(
    state: BatteryState,
    poster: Poster,
    event: Event,
    rule: Rule,
    moved: _Moved,
    recorded_at: datetime,
    unchecked: Sequence[str] = (),
    corrected: BatteryState | None = None,
) -> Transition:
    """The event's ledger row and the state after it. `unchecked`: the plausibility rules that lacked a fact;
    `corrected`: for an ERROR_DECLARED, the state its correction folded (`correct`): the row records it as the
    state after, and the battery takes it."""
    if corrected is not None:
        return _declaration(state, poster, event, recorded_at, corrected)
    grade, si, pre = state.grade, state.safety_inspection, state.pre_removal_grade
    if event.type is EventType.GRADED:
        grade = Grade(event.data["grade"])
        pre = grade if is_pre_removal(event.type, event.data) else None  # a grading after removal replaces it
    if event.type in (EventType.REMANUFACTURED, EventType.REPURPOSED, EventType.RECYCLED, EventType.DISPOSED):
        pre = None  # the grade given before removal has decided
    if event.type in (EventType.REMANUFACTURED, EventType.REPURPOSED):
        si = None  # a new passport: its safety inspection starts afresh
    if event.type is EventType.SAFETY_INSPECTED:
        si = SafetyInspection.from_json({**event.data, "at": ts(event.occurred_at), "event_id": event.event_id})
    readings = observe(state.readings, event.type, event.event_id, event.data)
    # The rules that lacked a fact the battery lacks: accepted, and flagged in the ledger (the portal shows it).
    data = {**event.data, "unchecked": list(unchecked)} if unchecked else dict(event.data)
    after = rule.target if rule.target is not None else state.state
    custodian = moved.custodian
    # The ordering clock (what the next event may not precede) moves only with the custodian's events and with
    # events that move custody: a bystander's event (an INCIDENT, an INSPECTED, a SAFETY_INSPECTED, an error
    # declaration by someone else) is checked against it but cannot push it ahead of the custodian.
    clock_moves = poster.org == state.custodian or custodian != state.custodian
    last_event_at = event.occurred_at if clock_moves else state.last_event_at
    row = _row(state.sequence, state.last_hash, poster, event, recorded_at, after, custodian, data)
    new = replace(
        state,
        state=after,
        custodian=custodian,
        sequence=row.sequence,
        last_hash=row.hash,
        last_event_at=last_event_at,
        grade=grade,
        safety_inspection=si,
        parent_id=moved.parent_id,
        consignee=moved.consignee,
        pre_removal_grade=pre,
        readings=readings,
    )
    return Transition(new, row)


def _row(
    prev_sequence: int,
    prev_hash: str,
    poster: Poster,
    event: Event,
    recorded_at: datetime,
    after: State,
    custodian: str,
    data: Mapping[str, Any] | None = None,
) -> LedgerRow:
    """The event's ledger row, next in the battery's chain after `prev_sequence` and `prev_hash` (`data`: as stored,
    when it differs from the event's)."""
    row = LedgerRow(
        event_id=event.event_id,
        battery_id=event.battery_id,
        sequence=prev_sequence + 1,
        type=event.type,
        occurred_at=event.occurred_at,
        recorded_at=recorded_at,
        actor=poster.org,
        actor_role=poster.role.value,
        location=dict(event.location),
        data=dict(event.data if data is None else data),
        state_after=after,
        custodian_after=custodian,
        prev_hash=prev_hash,
        hash="",
        request_digest=event.request_digest,
    )
    return replace(row, hash=event_hash(prev_hash, row.as_row()))


# ---- corrections (DOMAIN.md, Corrections) ----
#: How long the poster of a final-state event (RECYCLED, DISPOSED) may declare it in error itself; an authority may
#: at any time (the events setting `correction_window_days` overrides it).
CORRECTION_WINDOW = timedelta(days=30)
#: A replayed event passed the clock check when it was accepted: the fold does not make it again.
_REPLAY_AHEAD = timedelta(days=36_500)


@dataclass(frozen=True, slots=True)
class Corrections:
    """What an ERROR_DECLARED is checked and applied against (the service fetches it): the battery's whole ledger so
    far (sequence 1 to its head), the current states of the assembly parents its events name, and the window."""

    ledger: Sequence[LedgerRow]
    parents: Mapping[str, BatteryState] = field(default_factory=dict)
    window: timedelta = CORRECTION_WINDOW


@dataclass(frozen=True, slots=True)
class Dependent:
    """A later event that the fold cannot apply once the declared ones are left out, and why."""

    row: LedgerRow
    refusal: Refusal


def _as_accepted(parent: BatteryState | None, actor: str) -> BatteryState | None:
    """An assembly parent as it was when a replayed ASSEMBLED/DISASSEMBLED was accepted: held by its poster and not
    final. Another battery's ledger is not what a correction of this one changes, so its checks are not made again;
    the ones on this battery's own history are."""
    if parent is None:
        return None
    state = State.manufactured if parent.state in FINAL_STATES else parent.state
    return replace(parent, custodian=actor, state=state)


def fold_state(
    ledger: Sequence[LedgerRow],
    declared: Collection[int],
    parents: Mapping[str, BatteryState] | None = None,
    *,
    facts: Facts = Facts(),
    tolerances: Tolerances = Tolerances(),
    designated_bodies: Sequence[str] = DESIGNATED_BODIES,
) -> BatteryState | Dependent:
    """A battery's state recomputed from its ledger without the events declared in error (`declared`: their
    sequences) and without the declarations themselves: genesis from its MANUFACTURED row, then every other event
    through `apply`, the one function live events go through, as its poster posted it. The chain head (sequence,
    last hash) stays the ledger's: the ledger is append-only, only the state is recomputed. Dependent: the first
    later event the corrected history no longer admits. `facts`, `tolerances`, `designated_bodies`: what the
    plausibility and certificate rules compare with, as for live events (the registry's facts are the battery's,
    not its history's)."""
    first = ledger[0]
    state = genesis(
        battery_id=first.battery_id,
        kind=first.data["kind"],
        model_id=first.data["model_id"],
        manufacturer=first.actor,
        manufactured_at=first.occurred_at,
        site=first.location.get("site"),
        recorded_at=first.recorded_at,
        facts=facts,
    ).state
    parents = parents or {}
    for row in ledger[1:]:
        if row.sequence in declared or row.type is EventType.ERROR_DECLARED:
            continue
        parent_id = row.data.get("parent_id") if row.type in (EventType.ASSEMBLED, EventType.DISASSEMBLED) else None
        step = apply(
            state,
            Poster(row.actor, Role(row.actor_role)),
            Event(row.type, row.event_id, row.battery_id, row.occurred_at, row.location, row.data),
            recorded_at=row.recorded_at,
            parent=_as_accepted(parents.get(parent_id), row.actor) if parent_id else None,
            max_ahead=_REPLAY_AHEAD,
            tolerances=tolerances,
            designated_bodies=designated_bodies,
        )
        if isinstance(step, Refusal):
            return Dependent(row, step)
        state = step.state
    last = ledger[-1]
    return replace(state, sequence=last.sequence, last_hash=last.hash)


def correct(
    state: BatteryState,
    poster: Poster,
    declared: DeclaredEvent,
    corrections: Corrections,
    *,
    recorded_at: datetime,
    tolerances: Tolerances = Tolerances(),
    designated_bodies: Sequence[str] = DESIGNATED_BODIES,
) -> BatteryState | Refusal:
    """The battery's state once `declared` is declared in error (the poster is its actor or an authority, checked
    before), or why it may not be: a registration is amended, not declared (422); an event is declared once (409
    `already-declared`); a final-state event (RECYCLED, DISPOSED) only by an authority, or by its poster within the
    window (403 `correction-window-closed`); an event that a later one depends on only after that one is declared
    (409 `later-events-depend`: without it, the later event would be refused)."""
    name = "data.declared_event_id"
    ledger = corrections.ledger
    found = [r for r in ledger if r.event_id == declared.event_id and r.actor == declared.actor]
    target = next((r for r in found if r.type is not EventType.MANUFACTURED), found[0] if found else None)
    if target is None or ledger[-1].sequence != state.sequence:
        return _unknown_event(f"No event {declared.event_id} is in the ledger of {state.battery_id}.")
    if target.type is EventType.MANUFACTURED:
        return invalid(
            "MANUFACTURED records the registration: registry facts are corrected by an amendment "
            f"(POST /v1/batteries/{state.battery_id}/amendments at the registry), not declared in error.",
            field_error(name, "not-the-registration", "the registration is amended, not declared"),
        )
    already = declared_sequences(ledger)
    if target.sequence in already:
        return refuse(
            "already-declared",
            f"{target.type.value} {target.event_id} (sequence {target.sequence}) was declared in error by the "
            f"event at sequence {already[target.sequence]}; an event is declared once.",
            field_error(name, "declared-once", "already declared in error"),
            declared_by_sequence=already[target.sequence],
        )
    final = rule_for(target.type, target.data).target in FINAL_STATES
    if final and not poster.is_authority and recorded_at - target.recorded_at > corrections.window:
        days = corrections.window.total_seconds() / 86_400
        return refuse(
            "correction-window-closed",
            f"{target.type.value} ends the battery's life: its poster may declare it in error within {days:g} days "
            f"of recording it ({ts(target.recorded_at)}); after that only an authority may.",
            field_error(name, "final-event-window", f"older than {days:g} days; ask an authority"),
        )
    folded = fold_state(
        ledger,
        {*already, target.sequence},
        corrections.parents,
        facts=state.facts,
        tolerances=tolerances,
        designated_bodies=designated_bodies,
    )
    if isinstance(folded, Dependent):
        dep = folded.row
        return refuse(
            "later-events-depend",
            f"{dep.type.value} at sequence {dep.sequence} ({dep.event_id}) depends on {target.type.value} at "
            f"sequence {target.sequence}: without it, {folded.refusal.detail} Declare the later events in error "
            "first, latest first.",
            field_error(name, "no-later-dependents", f"{dep.type.value} at sequence {dep.sequence} depends on it"),
            dependent_event={"sequence": dep.sequence, "event_id": dep.event_id, "type": dep.type.value},
        )
    return folded


def _declaration(
    state: BatteryState, poster: Poster, event: Event, recorded_at: datetime, corrected: BatteryState
) -> Transition:
    """An ERROR_DECLARED that corrects: its row records the corrected state and custodian, and the battery takes
    the corrected state (its grade, inspection, parent, consignee and ordering clock as the corrected history
    leaves them) at the head of the chain."""
    row = _row(state.sequence, state.last_hash, poster, event, recorded_at, corrected.state, corrected.custodian)
    return Transition(replace(corrected, sequence=row.sequence, last_hash=row.hash), row)
