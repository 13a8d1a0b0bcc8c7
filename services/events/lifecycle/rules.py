"""The lifecycle transition table of DOMAIN.md, as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.access import AUTHORITY, Role
from shared.contract.lifecycle import FINAL_STATES, EventType, Grade, State


class Custody(StrEnum):
    none = "none"  # anyone with the role may post
    custodian = "custodian"  # the poster must be the battery's custodian
    becomes = "becomes"  # the poster becomes the custodian
    parent = "parent"  # the poster must hold the parent; it becomes the child's custodian (disassembly)
    assembly = "assembly"  # the poster must hold the child and the parent (assembly)
    receiver = "receiver"  # the poster is the custodian; data.to becomes the custodian
    consignee = "consignee"  # the poster is the custodian or the consignee it named; the poster becomes custodian
    reporter = "reporter"  # the custodian, the battery's manufacturer, or (in service) an inspector or assessor


NON_FINAL = frozenset(s for s in State if s not in FINAL_STATES)
OPERATIONAL = frozenset(
    {
        Role.manufacturer,
        Role.oem,
        Role.inspector,
        Role.dismantler,
        Role.collector,
        Role.assessor,
        Role.remanufacturer,
        Role.repurposer,
        Role.certifier,
        Role.recycler,
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    sources: frozenset[State]
    target: State | None  # None: the state does not change
    roles: frozenset[Role]
    custody: Custody
    grade: Grade | None = None  # GRADED must have decided this grade


def _r(
    sources: set[State] | frozenset[State],
    target: State | None,
    roles: set[Role] | frozenset[Role],
    custody: Custody,
    grade: Grade | None = None,
) -> Rule:
    return Rule(frozenset(sources), target, frozenset(roles), custody, grade)


S = State
RULES: dict[EventType, Rule] = {
    EventType.ASSEMBLED: _r(
        {S.manufactured, S.remanufactured}, S.assembled, {Role.manufacturer, Role.remanufacturer}, Custody.assembly
    ),
    EventType.DISASSEMBLED: _r(
        {S.assembled}, S.removed, {Role.remanufacturer, Role.recycler, Role.manufacturer}, Custody.parent
    ),
    EventType.INSTALLED: _r(
        {S.manufactured, S.remanufactured, S.repurposed}, S.in_service, {Role.oem}, Custody.custodian
    ),
    EventType.INSPECTED: _r({S.in_service}, S.in_service, {Role.inspector, Role.oem}, Custody.none),
    EventType.REMOVED: _r({S.in_service}, S.removed, {Role.dismantler, Role.oem}, Custody.becomes),
    EventType.COLLECTED: _r({S.removed}, S.collected, {Role.collector}, Custody.consignee),
    EventType.GRADED: _r({S.removed, S.collected}, S.graded, {Role.assessor}, Custody.custodian),
    EventType.REMANUFACTURED: _r(
        {S.graded}, S.remanufactured, {Role.remanufacturer}, Custody.custodian, Grade.remanufacture
    ),
    EventType.REPURPOSED: _r({S.graded}, S.repurposed, {Role.repurposer}, Custody.custodian, Grade.reuse),
    EventType.SAFETY_INSPECTED: _r({S.repurposed, S.remanufactured}, None, {Role.certifier}, Custody.none),
    EventType.RECYCLED: _r(
        {S.graded, S.collected, S.removed}, S.recycled, {Role.recycler}, Custody.custodian, Grade.recycle
    ),
    EventType.DISPOSED: _r(NON_FINAL, S.disposed, {Role.collector, Role.recycler}, Custody.custodian),
    EventType.TRANSFERRED: _r(NON_FINAL, None, OPERATIONAL, Custody.receiver),
    EventType.INCIDENT: _r(NON_FINAL, None, OPERATIONAL | {Role.ministry}, Custody.none),
}

#: The events whose custodian may name a consignee (`data.consignee`): the participant it hands the battery to, who
#: may then post the event that takes custody (COLLECTED). Only REMOVED does: the dismantler hands the removed
#: battery to a collector. Every other hand-over is a TRANSFERRED.
NAMES_CONSIGNEE = frozenset({EventType.REMOVED})

#: ERROR_DECLARED is a correction, not a lifecycle step, so it stays out of RULES (and of `allowed_events`):
#: allowed in any state, final ones included, the state unchanged. Who may post it is narrower than the role
#: set says: the declared event's own actor, or an authority (checked against the declared event).
ERROR_DECLARATION = _r(frozenset(State), None, OPERATIONAL | AUTHORITY, Custody.none)


#: BMS_REPORTED (EU 2023/1542 Art. 14: the data of the battery management system, for the passport's
#: PerformanceAndDurability aspect) is a report about the battery, not a step of its life, so it stays out of RULES
#: (and of `allowed_events`, which would otherwise name it in every state): any state but a final one, the state
#: unchanged. The custodian reports what its BMS reads, the battery's manufacturer what its BMS telemetry reads
#: wherever the battery is, and in service the roles that read a battery without holding it (an inspector, as for
#: INSPECTED; an assessor, as for a pre-removal grading). Nobody else: a report about a battery one has no part in
#: is refused. Certifiers read no BMS.
BMS_REPORTING = _r(NON_FINAL, None, OPERATIONAL - {Role.certifier}, Custody.reporter)
READS_IN_SERVICE = frozenset({Role.inspector, Role.assessor})


#: Pre-removal grading (탈거 전 성능평가, MOLIT's regime from 2027): an assessor grades a battery still in service
#: (GRADED with `data.pre_removal`), without holding it; the state stays in_service. The grade then decides what may
#: follow once the battery is removed (`PRE_GRADED_SOURCES`), as a grade given after collection does.
PRE_REMOVAL_GRADING = _r({S.in_service}, None, {Role.assessor}, Custody.none)

#: Where a pre-removal grade admits the event its grade decides (REMANUFACTURED, REPURPOSED, RECYCLED) as if the
#: battery were graded: once removed, and once collected. A later GRADED after removal replaces the grade.
PRE_GRADED_SOURCES = frozenset({S.removed, S.collected})

#: The bodies designated for KC 10031 safety inspections of reused batteries, unless the events setting
#: `kc_designated_bodies` names others: Korea Testing Laboratory, Korea Testing & Research Institute, Korea Testing
#: Certification, Korea Conformity Laboratories.
DESIGNATED_BODIES = ("KTL", "KTR", "KTC", "KCL")

#: The states a battery may be INSTALLED from only with a passing, unexpired KC 10031 certificate (DOMAIN ¹).
NEEDS_CERTIFICATE = frozenset({S.repurposed, S.remanufactured})


def is_pre_removal(etype: EventType, data: Mapping[str, Any] | None) -> bool:
    return etype is EventType.GRADED and bool(data and data.get("pre_removal"))


def rule_for(etype: EventType, data: Mapping[str, Any] | None = None) -> Rule:
    """The event's rule; a GRADED with `data.pre_removal` follows PRE_REMOVAL_GRADING; ERROR_DECLARED and
    BMS_REPORTED, outside RULES, their own."""
    if etype is EventType.ERROR_DECLARED:
        return ERROR_DECLARATION
    if etype is EventType.BMS_REPORTED:
        return BMS_REPORTING
    return PRE_REMOVAL_GRADING if is_pre_removal(etype, data) else RULES[etype]


#: Which child kinds may go into which parent kinds.
ASSEMBLY_PAIRS = {("cell", "module"), ("module", "pack"), ("cell", "pack")}


def admits(rule: Rule, state: State, grade: str | None, pre_removal_grade: str | None) -> bool:
    """Whether the rule admits a battery in `state` with that grade (and grade given before removal)."""
    if rule.grade is not None and state in PRE_GRADED_SOURCES and pre_removal_grade is not None:
        return pre_removal_grade == rule.grade.value
    if state not in rule.sources:
        return False
    return rule.grade is None or state is not State.graded or grade == rule.grade.value


def allowed_events(state: State, grade: str | None = None, pre_removal_grade: str | None = None) -> list[EventType]:
    """Event types whose source states include `state` (roles and custody aside)."""
    return [etype for etype, rule in RULES.items() if admits(rule, state, grade, pre_removal_grade)]


# ---- who may receive custody (TRANSFERRED's receiver) ----
#: The states in which a participant of each role may hold a battery, so a TRANSFERRED may hand it to them.
#: From DOMAIN.md's table: each role holds batteries in the states its own events start from or leave (a
#: collector removed and collected ones, an assessor those it grades, a recycler anything bound for recycling,
#: manufacturers and remanufacturers what they build or take back). Inspectors, certifiers, ministries, operators
#: and admins never hold batteries.
MAY_HOLD: dict[Role, frozenset[State]] = {
    Role.manufacturer: frozenset(
        {State.manufactured, State.assembled, State.removed, State.collected, State.graded, State.remanufactured}
    ),
    Role.oem: frozenset({State.manufactured, State.remanufactured, State.repurposed, State.in_service, State.removed}),
    Role.dismantler: frozenset({State.in_service, State.removed}),
    Role.collector: frozenset({State.removed, State.collected}),
    Role.assessor: frozenset({State.removed, State.collected, State.graded}),
    Role.remanufacturer: frozenset(
        {State.manufactured, State.assembled, State.removed, State.collected, State.graded, State.remanufactured}
    ),
    Role.repurposer: frozenset({State.removed, State.collected, State.graded, State.repurposed}),
    Role.recycler: frozenset(
        {State.assembled, State.removed, State.collected, State.graded, State.remanufactured, State.repurposed}
    ),
}


def may_hold(role: Role, state: State) -> bool:
    return state in MAY_HOLD.get(role, frozenset())
