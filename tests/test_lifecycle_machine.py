"""The lifecycle state machine, driven directly: no database, no HTTP, milliseconds.

The expectations are written here from DOMAIN.md's lifecycle table (not read from rules.py). Where the code
deliberately does less or otherwise than DOMAIN.md (left to a later issue), the current behaviour is what is
expected, and the line says so ("code:")."""

from __future__ import annotations

import ast
import copy
import itertools
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.events.lifecycle.machine import (
    BatteryState,
    DeclaredEvent,
    Event,
    Poster,
    Refusal,
    SafetyInspection,
    Transition,
    apply,
    genesis,
)
from services.events.lifecycle.plausibility import Facts, Tolerances
from services.events.lifecycle.schemas import DATA_ADAPTERS
from shared.auth import Role
from shared.contract.lifecycle import FINAL_STATES, GENESIS, EventType, Grade, State, event_hash, verify_chain
from shared.contract.streams import manufactured_event_id

E, S, R = EventType, State, Role
ROOT = Path(__file__).resolve().parents[1]

# ---- DOMAIN.md's lifecycle table, as read for these tests ----
OPERATIONAL = frozenset(
    {
        R.manufacturer,
        R.oem,
        R.inspector,
        R.dismantler,
        R.collector,
        R.assessor,
        R.remanufacturer,
        R.repurposer,
        R.certifier,
        R.recycler,
    }
)
AUTHORITIES = frozenset({R.ministry, R.certifier, R.admin})
NOT_FINAL = frozenset(s for s in S if s not in (S.recycled, S.disposed))


@dataclass(frozen=True)
class Row:
    sources: frozenset[State]
    target: State | None  # None: unchanged
    roles: frozenset[Role]
    custody: str  # parent | assembly | custodian | consignee | becomes | receiver | reporter | none
    grade: Grade | None = None  # from graded, only with this grade


def _row(
    sources: set[State] | frozenset[State],
    target: State | None,
    roles: set[Role] | frozenset[Role],
    custody: str,
    grade: Grade | None = None,
) -> Row:
    return Row(frozenset(sources), target, frozenset(roles), custody, grade)


TABLE: dict[EventType, Row] = {
    # DOMAIN: "must hold parent and child".
    E.ASSEMBLED: _row({S.manufactured, S.remanufactured}, S.assembled, {R.manufacturer, R.remanufacturer}, "assembly"),
    E.DISASSEMBLED: _row({S.assembled}, S.removed, {R.remanufacturer, R.recycler, R.manufacturer}, "parent"),
    # DOMAIN ¹: repurposed or remanufactured only with a passing, unexpired KC 10031 certificate (`expected`).
    E.INSTALLED: _row({S.manufactured, S.remanufactured, S.repurposed}, S.in_service, {R.oem}, "custodian"),
    E.INSPECTED: _row({S.in_service}, S.in_service, {R.inspector, R.oem}, "none"),
    # DOMAIN: REMOVED may name a consignee (data.consignee).
    E.REMOVED: _row({S.in_service}, S.removed, {R.dismantler, R.oem}, "becomes"),
    # DOMAIN: "must be custodian or the consignee the custodian named; becomes custodian".
    E.COLLECTED: _row({S.removed}, S.collected, {R.collector}, "consignee"),
    # DOMAIN ²: also from in_service with data.pre_removal (state stays in_service, no custody): the pre-removal
    # table below; a plain GRADED is not from in_service.
    E.GRADED: _row({S.removed, S.collected}, S.graded, {R.assessor}, "custodian"),
    E.REMANUFACTURED: _row({S.graded}, S.remanufactured, {R.remanufacturer}, "custodian", Grade.remanufacture),
    E.REPURPOSED: _row({S.graded}, S.repurposed, {R.repurposer}, "custodian", Grade.reuse),
    E.SAFETY_INSPECTED: _row({S.repurposed, S.remanufactured}, None, {R.certifier}, "none"),
    E.RECYCLED: _row({S.graded, S.collected, S.removed}, S.recycled, {R.recycler}, "custodian", Grade.recycle),
    E.DISPOSED: _row(NOT_FINAL, S.disposed, {R.collector, R.recycler}, "custodian"),
    # DOMAIN: "the custodian" posts it. code: the custodian, in an operational role (not ministry/operator/admin);
    # DOMAIN's "receiver (an active participant)" is not checked here (the machine knows no participants).
    E.TRANSFERRED: _row(NOT_FINAL, None, OPERATIONAL, "receiver"),
    E.INCIDENT: _row(NOT_FINAL, None, OPERATIONAL | {R.ministry}, "none"),
    # Not in DOMAIN.md's table (README "BMS readings"): a BMS's readings (EU 2023/1542 Art. 14), in any state but a
    # final one, by the custodian, the battery's manufacturer, or in service an inspector or assessor ("reporter").
    E.BMS_REPORTED: _row(NOT_FINAL, None, OPERATIONAL - {R.certifier}, "reporter"),
}
#: Who reports a battery's BMS readings in service without holding it.
READS_IN_SERVICE = frozenset({R.inspector, R.assessor})
#: Event types that may move custody: TRANSFERRED, REMOVED, COLLECTED (by the named consignee), DISASSEMBLED (to the
#: parent's holder). ASSEMBLED needs the poster to hold the child already, so it never moves it.
CUSTODY_MOVES = frozenset(
    t for t, row in TABLE.items() if row.custody in ("receiver", "becomes", "parent", "consignee")
)

DATA: dict[EventType, dict[str, Any]] = {
    E.MANUFACTURED: {},
    E.ASSEMBLED: {"parent_id": "KR-PARENT-1"},
    E.DISASSEMBLED: {"parent_id": "KR-PARENT-1"},
    E.INSTALLED: {"vin": "KMHEM41AP6A123456"},
    E.INSPECTED: {"soh_pct": 91.5, "cycle_count": 420},
    E.REMOVED: {"reason": "end_of_life"},
    E.COLLECTED: {"centre": "SIHEUNG-01", "region": "KR-41"},
    E.GRADED: {"soh_pct": 62.0, "grade": "recycle"},
    E.REMANUFACTURED: {},
    E.REPURPOSED: {"new_application": "ESS", "rated_capacity": 50.0},
    E.SAFETY_INSPECTED: {
        "certificate_number": "KC10031-2026-0001",
        "body": "KTL",
        "standard": "KC 10031",
        "edition": "2024",
        "result": "pass",
        "valid_until": "2027-03-01",
        "report_ref": "KTL-R-2026-0001",
    },
    E.RECYCLED: {
        "process": "hydrometallurgy",
        "input_mass_kg": 450.0,
        "black_mass_kg": 180.0,
        "recovered_kg": {"lithium": 5.1},
    },
    E.DISPOSED: {},
    E.TRANSFERRED: {"to": "RECEIVER"},
    E.INCIDENT: {"kind": "swelling", "severity": "medium"},
    E.BMS_REPORTED: {"soh_pct": 90.0, "cycle_count": 430, "soc_pct": 55.0, "energy_throughput_kwh": 31000.0},
    E.ERROR_DECLARED: {"declared_event_id": "00000000-0000-4000-8000-000000000001", "reason": "incorrect_data"},
}

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POSTER_ORG, HOLDER, PARENT_HOLDER, RECEIVER = "POSTER", "HOLDER", "PARENT-HOLDER", "RECEIVER"


def _data(etype: EventType, **changes: Any) -> dict[str, Any]:
    """The type's data as the service hands it to the machine (validated, JSON form, no None members)."""
    raw = {**DATA[etype], **changes}
    out: dict[str, Any] = DATA_ADAPTERS[etype].validate_python(raw).model_dump(mode="json", exclude_none=True)
    return out


def event(etype: EventType, battery_id: str = "KR-CELL-1", at: datetime | None = None, **kw: Any) -> Event:
    data = kw.pop("data", None)
    return Event(
        type=etype,
        event_id=kw.pop("event_id", str(uuid.uuid4())),
        battery_id=battery_id,
        occurred_at=at or T0 + timedelta(days=1),
        location={"site": "X"},
        data=_data(etype) if data is None else data,
        **kw,
    )


def battery(
    state: State = S.manufactured,
    *,
    custodian: str = HOLDER,
    grade: Grade | None = None,
    si: str | None = None,
    parent_id: str | None = None,
    battery_id: str = "KR-CELL-1",
    kind: str = "cell",
) -> BatteryState:
    inspection = None
    if si is not None:  # "expired": passed, valid until before T0's next day
        result, until = ("pass", "2026-02-28") if si == "expired" else (si, "2027-02-01")
        inspection = SafetyInspection(
            "KC 10031", result, "KTL", "2026-02-01T00:00:00.000000Z", "e", "KC-1", "2024", until, "R-1"
        )
    if state is S.assembled and parent_id is None:
        parent_id = "KR-PARENT-1"
    return BatteryState(
        battery_id=battery_id,
        kind=kind,
        model_id="NCM-CELL-60",
        manufacturer="MAKER",
        state=state,
        custodian=custodian,
        sequence=7,
        last_hash="a" * 64,
        last_event_at=T0,
        grade=grade,
        safety_inspection=inspection,
        parent_id=parent_id,
    )


def parent_of(*, custodian: str, state: State = S.manufactured, kind: str = "module") -> BatteryState:
    return battery(state, custodian=custodian, battery_id="KR-PARENT-1", kind=kind)


def poster(role: Role, org: str = POSTER_ORG) -> Poster:
    return Poster(org, role, role in AUTHORITIES)


def go(state: BatteryState | None, who: Poster, ev: Event, **kw: Any) -> Transition | Refusal:
    kw.setdefault("recorded_at", T0 + timedelta(days=10))
    return apply(state, who, ev, **kw)


def refused(outcome: Transition | Refusal) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    return outcome


def accepted(outcome: Transition | Refusal) -> Transition:
    assert isinstance(outcome, Transition), outcome
    return outcome


# ---- the whole table: every state, event type, role and custody situation ----
#: Battery situations: every state, the graded one with each grade, the repurposed one with no, a failed and a
#: passed safety inspection.
VARIANTS: list[tuple[State, Grade | None, str | None]] = [
    (s, g, None) for s in S if s not in (S.graded, S.repurposed, S.remanufactured) for g in [None]
]
VARIANTS += [(S.graded, g, None) for g in Grade]
VARIANTS += [(s, None, si) for s in (S.repurposed, S.remanufactured) for si in (None, "fail", "expired", "pass")]
#: Custody situations: (the poster holds the battery, the poster holds the parent). For ERROR_DECLARED the first
#: says whether the poster is the declared event's actor.
CUSTODY = list(itertools.product([True, False], [True, False]))


def expected(
    variant: tuple[State, Grade | None, str | None], etype: EventType, role: Role, holds: bool, holds_parent: bool
) -> tuple[int, str] | tuple[State, str]:
    """(status, code) for a refusal, (state after, custodian after) for an accepted event."""
    state, grade, si = variant
    custodian = POSTER_ORG if holds else HOLDER
    if etype is E.MANUFACTURED:
        return 422, "validation-error"  # recorded by the registry, never posted
    if etype is E.ERROR_DECLARED:
        # Any state (final ones included); the declared event's actor or an authority; nothing changes.
        if role is R.operator or not (holds or role in AUTHORITIES):
            return 403, "forbidden"
        return state, custodian
    row = TABLE[etype]
    if role not in row.roles:
        return 403, "forbidden"
    if state not in row.sources:
        return 409, "illegal-transition"
    if row.grade is not None and state is S.graded and grade is not row.grade:
        return 409, "illegal-transition"
    if etype is E.INSTALLED and state in (S.repurposed, S.remanufactured) and si != "pass":
        return 409, "illegal-transition"  # no certificate, a failed one, or one expired by the installation
    if row.custody in ("custodian", "receiver", "consignee", "assembly") and not holds:
        return 409, "not-custodian"  # (no consignee named in these situations)
    if row.custody in ("parent", "assembly") and not holds_parent:
        return 409, "not-custodian"
    if row.custody == "reporter" and not holds and not (state is S.in_service and role in READS_IN_SERVICE):
        return 409, "not-custodian"  # (the poster is never the battery's manufacturer in these situations)
    after = row.target or state
    moved = {"receiver": RECEIVER, "becomes": POSTER_ORG, "parent": POSTER_ORG, "consignee": POSTER_ORG}.get(
        row.custody, custodian
    )
    return after, moved


MATRIX = [(v, t) for v in VARIANTS for t in EventType]


@pytest.mark.parametrize(
    ("variant", "etype"),
    MATRIX,
    ids=[f"{v[0].value}{'-' + v[1].value if v[1] else ''}{'-si-' + v[2] if v[2] else ''}-{t.value}" for v, t in MATRIX],
)
def test_transition_table(variant: tuple[State, Grade | None, str | None], etype: EventType) -> None:
    """Every (state, event type) pair, for every role and custody situation, as DOMAIN.md's table says."""
    state_, grade, si = variant
    for role, (holds, holds_parent) in itertools.product(Role, CUSTODY):
        case = f"{role.value}, holds={holds}, holds_parent={holds_parent}"
        before = battery(state_, custodian=POSTER_ORG if holds else HOLDER, grade=grade, si=si)
        parent = parent_of(custodian=POSTER_ORG if holds_parent else PARENT_HOLDER)
        declared_id = DATA[E.ERROR_DECLARED]["declared_event_id"]
        declared = DeclaredEvent(declared_id, before.battery_id, E.INSPECTED, POSTER_ORG if holds else HOLDER)
        ev = event(etype)
        outcome = go(before, poster(role), ev, recorded_at=T0 + timedelta(days=2), parent=parent, declared=declared)
        want = expected(variant, etype, role, holds, holds_parent)
        if isinstance(want[0], int):
            refusal = refused(outcome)
            assert (refusal.status, refusal.code) == want, case
            if refusal.code == "illegal-transition":
                assert refusal.extra["current_state"] == state_.value, case
                if etype is not E.INSTALLED or state_ not in (S.repurposed, S.remanufactured):  # certificate
                    assert etype.value not in refusal.extra["allowed_events"], case
                if state_ in FINAL_STATES:
                    assert refusal.extra["allowed_events"] == [], case
                    assert "none (final state)" in refusal.detail, case
            continue
        t = accepted(outcome)
        assert (t.state.state, t.state.custodian) == want, case
        assert (t.row.state_after, t.row.custodian_after) == want, case
        assert t.state.sequence == t.row.sequence == before.sequence + 1, case
        assert t.row.prev_hash == before.last_hash and t.state.last_hash == t.row.hash, case
        assert t.row.hash == event_hash(before.last_hash, t.row.as_row()), case
        assert (t.row.actor, t.row.actor_role, t.row.type) == (POSTER_ORG, role.value, etype), case
        # The ordering clock moves with the custodian's events and custody moves, never with a bystander's.
        clock_moves = holds or t.state.custodian != before.custodian
        assert t.state.last_event_at == (ev.occurred_at if clock_moves else before.last_event_at), case


# ---- single rules, with their exact problems ----
def test_final_states_accept_nothing_but_error_declarations() -> None:
    for final in FINAL_STATES:
        before = battery(final, custodian=POSTER_ORG)
        r = refused(go(before, poster(R.inspector), event(E.INCIDENT)))
        assert r.status == 409 and r.code == "illegal-transition" and r.extra["allowed_events"] == []
        declared = DeclaredEvent(DATA[E.ERROR_DECLARED]["declared_event_id"], before.battery_id, E.RECYCLED, "REC")
        t = accepted(go(before, poster(R.ministry), event(E.ERROR_DECLARED), declared=declared))
        assert t.state.state is final and t.state.custodian == POSTER_ORG


@pytest.mark.parametrize(
    ("grade", "etype", "role", "ok"),
    [
        (Grade.reuse, E.REPURPOSED, R.repurposer, True),
        (Grade.reuse, E.REMANUFACTURED, R.remanufacturer, False),
        (Grade.reuse, E.RECYCLED, R.recycler, False),
        (Grade.remanufacture, E.REMANUFACTURED, R.remanufacturer, True),
        (Grade.remanufacture, E.REPURPOSED, R.repurposer, False),
        (Grade.recycle, E.RECYCLED, R.recycler, True),
        (Grade.recycle, E.REPURPOSED, R.repurposer, False),
    ],
)
def test_grade_decides_what_follows(grade: Grade, etype: EventType, role: Role, ok: bool) -> None:
    outcome = go(battery(S.graded, custodian=POSTER_ORG, grade=grade), poster(role), event(etype))
    assert isinstance(outcome, Transition) is ok, outcome
    if not ok:
        r = refused(outcome)
        assert r.code == "illegal-transition" and grade.value in r.detail
        want = next(g for g in Grade if TABLE[etype].grade is g)
        assert f"(graded '{grade.value}', not '{want.value}')" in r.detail


def test_repurposed_needs_passing_safety_inspection_before_install() -> None:
    oem = poster(R.oem)
    state = battery(S.repurposed, custodian=POSTER_ORG)
    r = refused(go(state, oem, event(E.INSTALLED)))
    assert r.status == 409 and "SAFETY_INSPECTED" in r.detail
    assert r.detail == (
        "INSTALLED is not allowed for battery KR-CELL-1 in state 'repurposed' (a repurposed battery needs a passing "
        "SAFETY_INSPECTED first). Allowed next events: INSTALLED, SAFETY_INSPECTED, DISPOSED, TRANSFERRED, INCIDENT."
    )
    certifier = poster(R.certifier, "KTL")
    failed = accepted(go(state, certifier, event(E.SAFETY_INSPECTED, data=_data(E.SAFETY_INSPECTED, result="fail"))))
    assert failed.state.safety_inspection is not None and failed.state.safety_inspection.result == "fail"
    assert refused(go(failed.state, oem, event(E.INSTALLED, at=T0 + timedelta(days=2)))).status == 409
    si = event(E.SAFETY_INSPECTED, at=T0 + timedelta(days=2))
    passed = accepted(go(failed.state, certifier, si))
    assert passed.state.state is S.repurposed and passed.state.custodian == POSTER_ORG
    assert passed.state.as_row()["safety_inspection"] == {
        "standard": "KC 10031",
        "result": "pass",
        "body": "KTL",
        "at": "2026-03-03T09:00:00.000000Z",
        "event_id": si.event_id,
        "certificate_number": "KC10031-2026-0001",
        "edition": "2024",
        "valid_until": "2027-03-01",
        "report_ref": "KTL-R-2026-0001",
    }
    done = accepted(go(passed.state, oem, event(E.INSTALLED, at=T0 + timedelta(days=3))))
    assert done.state.state is S.in_service and done.state.safety_inspection == passed.state.safety_inspection


def test_remanufacturing_and_repurposing_start_the_safety_inspection_afresh() -> None:
    for etype, role, grade in [(E.REPURPOSED, R.repurposer, Grade.reuse), (E.REMANUFACTURED, R.remanufacturer, None)]:
        before = battery(S.graded, custodian=POSTER_ORG, grade=grade or Grade.remanufacture, si="pass")
        t = accepted(go(before, poster(role), event(etype)))
        assert t.state.safety_inspection is None and t.state.as_row()["safety_inspection"] is None
        assert t.state.grade is before.grade  # the grade stays until the next GRADED


def test_graded_records_the_grade() -> None:
    before = battery(S.collected, custodian=POSTER_ORG)
    t = accepted(go(before, poster(R.assessor), event(E.GRADED, data=_data(E.GRADED, grade="reuse"))))
    assert t.state.grade is Grade.reuse and t.state.as_row()["grade"] == "reuse"


def test_custody_is_required_and_moves_with_transfer() -> None:
    collected = battery(S.collected, custodian="COL-1")
    r = refused(go(collected, poster(R.assessor, "ASSESS-1"), event(E.GRADED)))
    assert (r.status, r.code, r.title, dict(r.extra)) == (
        409,
        "not-custodian",
        "Not the custodian",
        {"custodian": "COL-1"},
    )
    assert r.detail == "GRADED needs custody of KR-CELL-1; its custodian is COL-1."
    stranger = refused(go(collected, poster(R.recycler, "REC-1"), event(E.TRANSFERRED)))
    assert stranger.code == "not-custodian"
    to_assessor = event(E.TRANSFERRED, data={"to": "ASSESS-1"})
    t = accepted(go(collected, poster(R.collector, "COL-1"), to_assessor))
    assert (t.state.custodian, t.state.state) == ("ASSESS-1", S.collected)
    accepted(go(t.state, poster(R.assessor, "ASSESS-1"), event(E.GRADED, at=T0 + timedelta(days=2))))


def test_transfer_to_the_custodian_itself_is_invalid() -> None:
    r = refused(
        go(battery(custodian="LGES"), poster(R.manufacturer, "LGES"), event(E.TRANSFERRED, data={"to": "LGES"}))
    )
    assert (r.status, r.code, r.detail) == (422, "validation-error", "data.to is already the custodian.")
    assert list(r.errors) == [{"field": "data.to", "rule": "other-than-custodian", "message": "already the custodian"}]


def test_removal_hands_custody_to_the_remover_and_collection_needs_its_consent() -> None:
    removed = accepted(go(battery(S.in_service, custodian="HMC"), poster(R.dismantler, "DISM-1"), event(E.REMOVED)))
    assert (removed.state.custodian, removed.state.consignee) == ("DISM-1", None)
    later = event(E.COLLECTED, at=T0 + timedelta(days=2))
    # A collector nobody handed the battery to cannot take it.
    r = refused(go(removed.state, poster(R.collector, "COL-1"), later))
    assert (r.status, r.code, dict(r.extra)) == (409, "not-custodian", {"custodian": "DISM-1"})
    # The remover names the collector it hands the battery to; that collector (and only it) may collect.
    consigned = accepted(
        go(
            battery(S.in_service, custodian="HMC"),
            poster(R.dismantler, "DISM-1"),
            event(E.REMOVED, data=_data(E.REMOVED, consignee="COL-1")),
        )
    )
    assert (consigned.state.custodian, consigned.state.consignee) == ("DISM-1", "COL-1")
    assert consigned.row.data["consignee"] == "COL-1"
    other = refused(go(consigned.state, poster(R.collector, "COL-2"), later))
    assert other.code == "not-custodian" and "consigned to COL-1" in other.detail
    taken = accepted(go(consigned.state, poster(R.collector, "COL-1"), later))
    assert (taken.state.custodian, taken.state.consignee) == ("COL-1", None)
    # The custodian itself may collect at its own centre.
    own = accepted(go(removed.state, poster(R.collector, "DISM-1"), later))
    assert own.state.custodian == "DISM-1"


def test_a_consignment_lapses_when_custody_moves_and_never_names_the_remover() -> None:
    consigned = accepted(
        go(
            battery(S.in_service, custodian="HMC"),
            poster(R.dismantler, "DISM-1"),
            event(E.REMOVED, data=_data(E.REMOVED, consignee="COL-1")),
        )
    )
    moved = accepted(go(consigned.state, poster(R.dismantler, "DISM-1"), event(E.TRANSFERRED, data={"to": "COL-2"})))
    assert (moved.state.custodian, moved.state.consignee) == ("COL-2", None)
    later = event(E.COLLECTED, at=T0 + timedelta(days=2))
    assert refused(go(moved.state, poster(R.collector, "COL-1"), later)).code == "not-custodian"
    itself = refused(
        go(
            battery(S.in_service, custodian="HMC"),
            poster(R.dismantler, "DISM-1"),
            event(E.REMOVED, data=_data(E.REMOVED, consignee="DISM-1")),
        )
    )
    assert (itself.status, itself.errors[0]["field"], itself.errors[0]["rule"]) == (
        422,
        "data.consignee",
        "other-than-custodian",
    )


def test_bystanders_events_do_not_move_the_ordering_clock() -> None:
    """A future-dated INCIDENT by someone who does not hold the battery cannot block the custodian."""
    held = battery(S.collected, custodian="COL-1")
    incident = event(E.INCIDENT, at=T0 + timedelta(days=1, seconds=4))
    t = accepted(go(held, poster(R.inspector, "KOTSA"), incident, recorded_at=T0 + timedelta(days=1)))
    assert t.state.last_event_at == T0 and t.row.occurred_at == incident.occurred_at
    nxt = event(E.TRANSFERRED, at=T0 + timedelta(days=1), data={"to": "ASSESS-1"})
    assert accepted(go(t.state, poster(R.collector, "COL-1"), nxt)).state.last_event_at == nxt.occurred_at
    # The custodian's own events do move it.
    own = accepted(go(held, poster(R.collector, "COL-1"), incident, recorded_at=T0 + timedelta(days=1)))
    assert own.state.last_event_at == incident.occurred_at


def test_occurred_at_may_be_at_most_the_skew_ahead_of_the_server() -> None:
    now = T0 + timedelta(days=1)
    held = battery(S.collected, custodian="COL-1")
    ahead = event(E.INCIDENT, at=now + timedelta(seconds=6))
    r = refused(go(held, poster(R.collector, "COL-1"), ahead, recorded_at=now))
    assert (r.status, list(r.errors)) == (
        422,
        [{"field": "occurred_at", "rule": "not-in-future", "message": "more than 5 s in the future"}],
    )
    accepted(go(held, poster(R.collector, "COL-1"), event(E.INCIDENT, at=now + timedelta(seconds=5)), recorded_at=now))
    wider = go(held, poster(R.collector, "COL-1"), ahead, recorded_at=now, max_ahead=timedelta(seconds=10))
    accepted(wider)


def test_assembly_pairs_and_disassembly_of_current_component() -> None:
    maker = poster(R.manufacturer, "LGES")
    pack = battery(custodian="LGES", battery_id="KR-PACK-1", kind="pack")
    cell = battery(custodian="LGES", battery_id="KR-CELL-1", kind="cell")
    module = battery(custodian="LGES", battery_id="KR-MOD-1", kind="module")
    bad = refused(go(pack, maker, event(E.ASSEMBLED, "KR-PACK-1", data={"parent_id": "KR-CELL-1"}), parent=cell))
    assert (bad.status, bad.errors[0]["rule"]) == (422, "assembly-pairing")
    assert bad.detail == "A pack cannot be assembled into a cell (allowed: cell→module, module→pack, cell→pack)."
    itself = refused(go(module, maker, event(E.ASSEMBLED, "KR-MOD-1", data={"parent_id": "KR-MOD-1"}), parent=module))
    assert itself.errors[0]["rule"] == "assembly-pairing"
    into = accepted(go(cell, maker, event(E.ASSEMBLED, data={"parent_id": "KR-MOD-1"}), parent=module))
    assert (into.state.state, into.state.parent_id, into.state.custodian) == (S.assembled, "KR-MOD-1", "LGES")
    other = battery(custodian="LGES", battery_id="KR-MOD-2", kind="module")
    later = T0 + timedelta(days=2)
    wrong = refused(
        go(into.state, maker, event(E.DISASSEMBLED, at=later, data={"parent_id": "KR-MOD-2"}), parent=other)
    )
    assert (wrong.status, wrong.code, wrong.errors[0]["rule"]) == (409, "not-a-component", "current-parent")
    assert wrong.detail == "KR-CELL-1 is not a current component of KR-MOD-2."
    out = accepted(
        go(into.state, maker, event(E.DISASSEMBLED, at=later, data={"parent_id": "KR-MOD-1"}), parent=module)
    )
    assert (out.state.state, out.state.parent_id) == (S.removed, None)
    missing = refused(go(module, maker, event(E.ASSEMBLED, "KR-MOD-1", data={"parent_id": "KR-NO-SUCH"})))
    assert (missing.status, missing.code, missing.detail) == (
        404,
        "unknown-battery",
        "No parent battery 'KR-NO-SUCH' is registered.",
    )
    assert list(missing.errors) == [{"field": "data.parent_id", "rule": "known-battery", "message": "not registered"}]


def test_assembly_needs_custody_of_parent_and_child_and_a_parent_not_final() -> None:
    module = battery(custodian="LGES", battery_id="KR-PARENT-1", kind="module")
    cell = battery(custodian="REMAN-1")
    r = refused(go(cell, poster(R.remanufacturer, "REMAN-1"), event(E.ASSEMBLED), parent=module))
    assert (r.status, r.code, dict(r.extra)) == (409, "not-custodian", {"custodian": "LGES"})
    assert r.detail == "ASSEMBLED needs custody of the parent KR-PARENT-1; its custodian is LGES."
    # Holding the parent is not enough: another maker's cell stays its own.
    theirs = refused(go(cell, poster(R.manufacturer, "LGES"), event(E.ASSEMBLED), parent=module))
    assert (theirs.status, theirs.code, dict(theirs.extra)) == (409, "not-custodian", {"custodian": "REMAN-1"})
    assert theirs.detail == "ASSEMBLED needs custody of KR-CELL-1; its custodian is REMAN-1."
    recycled = replace(module, state=S.recycled)
    final = refused(
        go(replace(cell, custodian="LGES"), poster(R.manufacturer, "LGES"), event(E.ASSEMBLED), parent=recycled)
    )
    assert (final.code, final.extra["current_state"]) == ("illegal-transition", "recycled")
    assert "KR-PARENT-1" in final.detail and "(the parent is in a final state)" in final.detail


def test_expected_sequence_mismatch() -> None:
    r = refused(go(battery(), poster(R.inspector), event(E.INCIDENT, expected_sequence=5)))
    assert (r.status, r.code, dict(r.extra)) == (409, "sequence-conflict", {"current_sequence": 7})
    assert r.detail == "expected_sequence 5 but battery KR-CELL-1 is at 7."
    accepted(go(battery(), poster(R.inspector), event(E.INCIDENT, expected_sequence=7)))


def test_event_before_the_last_one_is_invalid() -> None:
    r = refused(go(battery(), poster(R.inspector), event(E.INCIDENT, at=T0 - timedelta(seconds=1))))
    assert (r.status, r.code, r.errors[0]["field"], r.errors[0]["rule"]) == (
        422,
        "validation-error",
        "occurred_at",
        "not-before-last-event",
    )
    accepted(go(battery(), poster(R.inspector), event(E.INCIDENT, at=T0)))  # the same instant is fine


def test_unknown_battery() -> None:
    r = refused(go(None, poster(R.oem), event(E.INSTALLED, "KR-UNKNOWN-9")))
    assert (r.status, r.code, r.title, r.detail) == (
        404,
        "unknown-battery",
        "Not found",
        "No battery 'KR-UNKNOWN-9' is registered.",
    )


def test_role_is_checked_first() -> None:
    r = refused(go(None, poster(R.recycler), event(E.INSTALLED)))
    assert (r.status, r.code) == (403, "forbidden")
    assert r.detail == "Role 'recycler' may not post INSTALLED; allowed roles: oem."
    m = refused(go(battery(), poster(R.manufacturer), event(E.MANUFACTURED)))
    assert list(m.errors) == [{"field": "type", "rule": "postable", "message": "MANUFACTURED cannot be posted"}]


def test_error_declarations() -> None:
    target = DATA[E.ERROR_DECLARED]["declared_event_id"]
    state = battery(S.in_service, custodian="HMC")
    decl = event(E.ERROR_DECLARED)
    unknown = refused(go(state, poster(R.oem, "HMC"), decl))
    assert (unknown.status, unknown.code, unknown.detail) == (
        404,
        "unknown-event",
        f"No event {target} is in the ledger.",
    )
    elsewhere = DeclaredEvent(target, "KR-OTHER-1", E.INSPECTED, "HMC")
    r = refused(go(state, poster(R.oem, "HMC"), decl, declared=elsewhere))
    assert (r.status, r.errors[0]["rule"]) == (422, "same-battery")
    assert r.detail == f"Event {target} belongs to battery KR-OTHER-1, not KR-CELL-1."
    itself = DeclaredEvent(target, "KR-CELL-1", E.ERROR_DECLARED, "HMC")
    assert refused(go(state, poster(R.oem, "HMC"), decl, declared=itself)).errors[0]["rule"] == "not-a-declaration"
    theirs = DeclaredEvent(target, "KR-CELL-1", E.INSPECTED, "KOTSA")
    r = refused(go(state, poster(R.collector, "COL-1"), decl, declared=theirs))
    assert (r.status, r.code, r.detail) == (
        403,
        "forbidden",
        "Only the event's actor (KOTSA) or an authority may declare it in error.",
    )
    own = accepted(go(state, poster(R.inspector, "KOTSA"), decl, declared=theirs))
    by_authority = accepted(go(state, Poster("MOLIT", R.ministry, True), decl, declared=theirs))
    for t in (own, by_authority):
        assert (t.state.state, t.state.custodian, t.state.sequence) == (S.in_service, "HMC", 8)


def test_genesis() -> None:
    made = genesis(
        battery_id="KR-LGES-P1",
        kind="pack",
        model_id="NCM-PACK-77",
        manufacturer="LGES",
        manufactured_at=T0,
        site="Ochang",
        recorded_at=T0 + timedelta(hours=1),
    )
    row = made.row.as_row()
    assert row["event_id"] == manufactured_event_id("KR-LGES-P1") and row["prev_hash"] == GENESIS
    assert (row["type"], row["actor_role"], row["location"], row["data"]) == (
        "MANUFACTURED",
        "manufacturer",
        {"site": "Ochang"},
        {"model_id": "NCM-PACK-77", "kind": "pack"},
    )
    assert row["request_digest"] == row["hash"] == made.state.last_hash
    assert verify_chain([row]).valid
    assert made.state == BatteryState.from_row(made.state.as_row())
    assert (made.state.state, made.state.custodian, made.state.sequence) == (S.manufactured, "LGES", 1)


# ---- properties over random histories ----
ORGS: list[tuple[str, Role]] = [(f"ORG-{r.value.upper()}", r) for r in Role]
ROLE_OF = dict(ORGS)
ORG_OF = {r: o for o, r in ORGS}
FLEET = [("KR-C1", "cell"), ("KR-C2", "cell"), ("KR-M1", "module"), ("KR-P1", "pack")]

#: One step: which battery; guided (a type the table allows in the battery's state, posted by a role it allows,
#: the custody handed over first where it needs it) or not (any type, any poster); the type; who posts (an index
#: into ORGS, or len(ORGS): the battery's custodian); a free choice for the type's data; the minutes since the
#: previous step (negative: back in time); expected_sequence off by this much (None: not given).
Step = tuple[int, bool, EventType, int, int, int, int | None]
steps = st.lists(
    st.tuples(
        st.integers(0, len(FLEET) - 1),
        st.sampled_from([True, True, True, False]),
        st.sampled_from(list(EventType)),
        st.integers(0, len(ORGS)),
        st.integers(0, 60),
        st.integers(-2, 30),
        st.sampled_from([None, None, None, None, None, 0, -1, 1]),
    ),
    max_size=80,
)


def _step_data(etype: EventType, choice: int, declarable: list[str]) -> dict[str, Any]:
    if etype in (E.ASSEMBLED, E.DISASSEMBLED):
        ids = [b for b, _ in FLEET] + ["KR-NOWHERE"]
        return {"parent_id": ids[choice % len(ids)]}
    if etype is E.TRANSFERRED:
        return {"to": ORGS[choice % len(ORGS)][0]}
    if etype is E.GRADED:
        return _data(E.GRADED, grade=list(Grade)[choice % 3].value)
    if etype is E.SAFETY_INSPECTED:
        return _data(E.SAFETY_INSPECTED, result="pass" if choice % 3 else "fail")
    if etype is E.ERROR_DECLARED:
        target = declarable[choice % len(declarable)] if declarable and choice % 5 else str(uuid.uuid4())
        return _data(E.ERROR_DECLARED, declared_event_id=target)
    return _data(etype)


class History:
    """A fleet's ledgers, grown through the machine, each step checked against the invariants."""

    def __init__(self) -> None:
        self.world: dict[str, BatteryState] = {}
        self.chains: dict[str, list[dict[str, Any]]] = {}
        self.declared: dict[str, DeclaredEvent] = {}
        self.clock = T0
        for bid, kind in FLEET:
            first = genesis(
                battery_id=bid,
                kind=kind,
                model_id=f"MODEL-{kind}",
                manufacturer=ORG_OF[R.manufacturer],
                manufactured_at=T0,
                site=None,
                recorded_at=T0,
            )
            self.world[bid], self.chains[bid] = first.state, [first.row.as_row()]

    def post(
        self, bid: str, etype: EventType, org: str, data: dict[str, Any], expected_sequence: int | None = None
    ) -> Transition | Refusal:
        before, role = self.world[bid], ROLE_OF[org]
        ev = Event(
            type=etype,
            event_id=str(uuid.uuid4()),
            battery_id=bid,
            occurred_at=self.clock,
            data=data,
            expected_sequence=expected_sequence,
        )
        snapshot = copy.deepcopy(self.world)
        outcome = apply(
            before,
            Poster(org, role, role in AUTHORITIES),
            ev,
            recorded_at=self.clock + timedelta(seconds=1),
            parent=self.world.get(data["parent_id"]) if "parent_id" in data else None,
            declared=self.declared.get(data.get("declared_event_id", "")),
        )
        assert self.world == snapshot  # apply changes nothing it is given; a refusal leaves every state as it was
        if isinstance(outcome, Refusal):
            return outcome
        new, row = outcome.state, outcome.row
        if before.state in FINAL_STATES:
            assert etype is E.ERROR_DECLARED
        if new.custodian != before.custodian:
            assert etype in CUSTODY_MOVES
        if etype not in TABLE or TABLE[etype].target is None:
            assert new.state is before.state
        else:
            assert new.state is TABLE[etype].target
        assert new.sequence == row.sequence == before.sequence + 1
        assert row.prev_hash == before.last_hash and new.last_hash == row.hash
        assert (row.state_after, row.custodian_after) == (new.state, new.custodian)
        assert new.custodian in ROLE_OF  # custody only ever goes to a participant
        self.world[bid] = new
        self.chains[bid].append(row.as_row())
        self.declared[row.event_id] = DeclaredEvent(row.event_id, bid, etype, org)
        return outcome

    def step(self, step: Step) -> None:
        which, guided, etype, who, choice, minutes, seq_offset = step
        bid = FLEET[which][0]
        state = self.world[bid]
        self.clock += timedelta(minutes=minutes)
        if not guided:
            org = state.custodian if who == len(ORGS) else ORGS[who][0]
        else:
            fitting = [t for t, row in TABLE.items() if state.state in row.sources] + [E.ERROR_DECLARED]
            if (choice // 7) % 5:  # mostly keep the battery alive, so that histories get long
                fitting = [t for t in fitting if TABLE.get(t, TABLE[E.INCIDENT]).target not in FINAL_STATES]
            etype = fitting[choice % len(fitting)]
            roles = sorted(TABLE[etype].roles if etype in TABLE else AUTHORITIES)
            org = ORG_OF[roles[who % len(roles)]]
        ours = [eid for eid, d in self.declared.items() if d.battery_id == bid]
        data = _step_data(etype, choice, ours if guided else list(self.declared))
        if guided and etype in (E.ASSEMBLED, E.DISASSEMBLED):
            parent = self.world.get(data["parent_id"])
            org = parent.custodian if parent is not None and choice % 4 else org
        if guided:
            custody = TABLE[etype].custody if etype in TABLE else "none"
            if custody in ("custodian", "receiver", "consignee", "assembly") and state.custodian != org:
                self.post(bid, E.TRANSFERRED, state.custodian, {"to": org})  # hand it over first
        sequence = None if seq_offset is None else self.world[bid].sequence + seq_offset
        self.post(bid, etype, org, data, sequence)

    def check_chains(self) -> None:
        for bid, _ in FLEET:
            check = verify_chain(self.chains[bid])
            assert check.valid, check
            assert (check.events, check.head_hash) == (self.world[bid].sequence, self.world[bid].last_hash)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_histories_keep_the_invariants(history: list[Step]) -> None:
    """Random events from random posters: a final state accepts nothing but ERROR_DECLARED; custody moves only on
    the types the table says; each accepted event adds exactly one to the sequence and links to the last hash (the
    chains verify); a refusal leaves every state as it was."""
    fleet = History()
    for step in history:
        fleet.step(step)
    fleet.check_chains()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FINAL_STATES)), steps)
def test_a_final_state_accepts_only_error_declarations(final: State, history: list[Step]) -> None:
    state = replace(battery(final, custodian=ORGS[0][0]), last_event_at=T0)
    ids = ["00000000-0000-4000-8000-00000000000a"]
    known = {ids[0]: DeclaredEvent(ids[0], state.battery_id, E.RECYCLED, ORGS[0][0])}
    clock = T0
    for _, _, etype, who, choice, minutes, _ in history:
        org, role = ORGS[who % len(ORGS)]
        clock += timedelta(minutes=max(minutes, 0))
        data = _step_data(etype, choice, ids)
        parent = battery(custodian=org, battery_id="KR-C1", kind="module") if "parent_id" in data else None
        ev = Event(type=etype, event_id=str(uuid.uuid4()), battery_id=state.battery_id, occurred_at=clock, data=data)
        poster_ = Poster(org, role, role in AUTHORITIES)
        outcome = go(
            state, poster_, ev, recorded_at=clock, parent=parent, declared=known.get(data.get("declared_event_id", ""))
        )
        if isinstance(outcome, Transition):
            assert etype is E.ERROR_DECLARED
            assert (outcome.state.state, outcome.state.custodian) == (final, state.custodian)
            state = outcome.state


# ---- the module's boundaries ----
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_the_machine_is_pure() -> None:
    """No I/O, SQL, web framework or broker in the machine's own imports, nor in anything they load."""
    allowed = {"__future__", "collections.abc", "dataclasses", "datetime", "typing"}
    allowed |= {
        "services.events.lifecycle.rules",
        "services.events.lifecycle.plausibility",
        "shared.access",
        "shared.contract.corrections",
        "shared.contract.lifecycle",
        "shared.contract.streams",
        "shared.problem_catalogue",
    }
    assert _imports(ROOT / "services/events/lifecycle/machine.py") <= allowed
    assert _imports(ROOT / "shared/problem_catalogue.py") <= {"__future__", "dataclasses"}
    assert _imports(ROOT / "services/events/lifecycle/plausibility.py") <= allowed | {"math"}
    import subprocess
    import sys

    probe = (
        "import sys, services.events.lifecycle.machine; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', 'asyncpg', 'aiokafka') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_lifecycle_does_not_import_the_ledger() -> None:
    """The dependency is one-way: ledger reads through lifecycle's public functions; lifecycle knows no ledger."""
    for path in (ROOT / "services/events/lifecycle").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("services.events.ledger")}, path


def test_a_declared_event_id_is_resolved_on_the_battery_and_the_poster_first() -> None:
    from services.events.lifecycle.machine import resolve_declared

    eid = "00000000-0000-4000-8000-0000000000aa"
    mine = DeclaredEvent(eid, "KR-CELL-1", E.INSPECTED, "KOTSA")
    theirs = DeclaredEvent(eid, "KR-CELL-1", E.INCIDENT, "LGES")
    elsewhere = DeclaredEvent(eid, "KR-CELL-2", E.INCIDENT, "KOTSA")
    declare = event(E.ERROR_DECLARED, data=_data(E.ERROR_DECLARED, declared_event_id=eid))
    assert resolve_declared(declare, poster(R.inspector, "KOTSA"), [theirs, mine]) == mine
    assert resolve_declared(declare, poster(R.inspector, "KOTSA"), [theirs]) == theirs  # apply: 403 (not its own)
    ambiguous = resolve_declared(declare, poster(R.ministry, "MOLIT"), [theirs, mine])
    assert isinstance(ambiguous, Refusal) and ambiguous.status == 422
    assert ambiguous.errors[0]["field"] == "data.declared_actor"
    named = event(E.ERROR_DECLARED, data=_data(E.ERROR_DECLARED, declared_event_id=eid, declared_actor="LGES"))
    assert resolve_declared(named, poster(R.ministry, "MOLIT"), [theirs, mine]) == theirs
    # The poster's own event on another battery is answered (apply refuses it as another battery's); another
    # participant's there is not.
    assert resolve_declared(declare, poster(R.inspector, "KOTSA"), [elsewhere]) == elsewhere
    assert resolve_declared(declare, poster(R.oem, "HMC"), [elsewhere]) is None
    r = refused(go(battery(), poster(R.inspector, "KOTSA"), declare, declared=elsewhere))
    assert r.errors[0]["rule"] == "same-battery"


# ---- pre-removal grading (탈거 전 성능평가) ----
def _pre(grade: Grade) -> dict[str, Any]:
    return _data(E.GRADED, grade=grade.value, pre_removal=True)


def test_pre_removal_grading_of_an_installed_battery_needs_no_custody_and_keeps_it_in_service() -> None:
    installed = battery(S.in_service, custodian="HMC")
    t = accepted(go(installed, poster(R.assessor, "ASSESS-1"), event(E.GRADED, data=_pre(Grade.reuse))))
    assert (t.state.state, t.state.custodian, t.state.grade, t.state.pre_removal_grade) == (
        S.in_service,
        "HMC",
        Grade.reuse,
        Grade.reuse,
    )
    assert t.row.state_after is S.in_service and t.row.data["pre_removal"] is True
    assert t.state.last_event_at == installed.last_event_at  # a bystander's event: the clock stays
    assert BatteryState.from_row(t.state.as_row()) == t.state
    # Only an assessor grades.
    assert refused(go(installed, poster(R.inspector), event(E.GRADED, data=_pre(Grade.reuse)))).code == "forbidden"


@pytest.mark.parametrize(
    ("state", "data", "hint"),
    [
        (S.in_service, DATA[E.GRADED], "(in service, only a pre-removal grading: data.pre_removal = true)"),
        (S.removed, {**DATA[E.GRADED], "pre_removal": True}, "(pre-removal grading is for a battery in service)"),
        (S.collected, {**DATA[E.GRADED], "pre_removal": True}, "(pre-removal grading is for a battery in service)"),
        (S.repurposed, {**DATA[E.GRADED], "pre_removal": True}, "(pre-removal grading is for a battery in service)"),
    ],
)
def test_grading_in_service_is_only_pre_removal_and_pre_removal_only_in_service(
    state: State, data: dict[str, Any], hint: str
) -> None:
    r = refused(
        go(battery(state, custodian=POSTER_ORG), poster(R.assessor), event(E.GRADED, data=_data(E.GRADED, **data)))
    )
    assert (r.status, r.code) == (409, "illegal-transition") and hint in r.detail


PRE_GRADED = [
    (grade, where, etype, role, ok)
    for grade in Grade
    for where in (S.removed, S.collected)
    for etype, role in ((E.REMANUFACTURED, R.remanufacturer), (E.REPURPOSED, R.repurposer), (E.RECYCLED, R.recycler))
    for ok in [TABLE[etype].grade is grade]
]


@pytest.mark.parametrize(("grade", "where", "etype", "role", "ok"), PRE_GRADED)
def test_a_pre_removal_grade_decides_what_follows_the_removal(
    grade: Grade, where: State, etype: EventType, role: Role, ok: bool
) -> None:
    """As a grade given after collection does: once removed (or collected), only what the grade decides."""
    graded = accepted(go(battery(S.in_service, custodian="HMC"), poster(R.assessor), event(E.GRADED, data=_pre(grade))))
    out = accepted(go(graded.state, poster(R.dismantler, POSTER_ORG), event(E.REMOVED, at=T0 + timedelta(days=2))))
    assert out.state.pre_removal_grade is grade
    state = out.state if where is S.removed else replace(out.state, state=S.collected)
    allowed = [e for e in state_allowed(state) if e in (E.REMANUFACTURED, E.REPURPOSED, E.RECYCLED)]
    assert allowed == [etype for etype in TABLE if TABLE[etype].grade is grade]
    outcome = go(state, poster(role), event(etype, at=T0 + timedelta(days=3)))
    if ok:
        t = accepted(outcome)
        assert t.state.state is TABLE[etype].target and t.state.pre_removal_grade is None
    else:
        r = refused(outcome)
        assert r.code == "illegal-transition"
        assert f"(graded '{grade.value}' before removal, not '{TABLE[etype].grade.value}')" in r.detail  # type: ignore[union-attr]


def state_allowed(state: BatteryState) -> list[EventType]:
    from services.events.lifecycle.rules import allowed_events

    return allowed_events(state.state, state.grade, state.pre_removal_grade)


def test_a_grading_after_removal_replaces_the_pre_removal_grade() -> None:
    pre = replace(battery(S.collected, custodian=POSTER_ORG), grade=Grade.reuse, pre_removal_grade=Grade.reuse)
    t = accepted(go(pre, poster(R.assessor), event(E.GRADED, data=_data(E.GRADED, grade="recycle"))))
    assert (t.state.state, t.state.grade, t.state.pre_removal_grade) == (S.graded, Grade.recycle, None)
    assert refused(go(t.state, poster(R.repurposer), event(E.REPURPOSED, at=T0 + timedelta(days=2)))).status == 409
    # Without a pre-removal grade a removed battery goes to recycling as before, and nowhere else.
    plain = battery(S.removed, custodian=POSTER_ORG)
    accepted(go(plain, poster(R.recycler), event(E.RECYCLED)))
    assert refused(go(plain, poster(R.repurposer), event(E.REPURPOSED))).code == "illegal-transition"


# ---- KC 10031 certificates ----
def _cert(**changes: Any) -> dict[str, Any]:
    return _data(E.SAFETY_INSPECTED, **changes)


@pytest.mark.parametrize("reused", [S.repurposed, S.remanufactured])
def test_installation_needs_a_passing_certificate_valid_on_the_day(reused: State) -> None:
    certifier, oem = poster(R.certifier, "KTL"), poster(R.oem)
    state = battery(reused, custodian=POSTER_ORG)
    cert = accepted(go(state, certifier, event(E.SAFETY_INSPECTED, data=_cert(valid_until="2026-03-10"))))
    si = cert.state.safety_inspection
    assert si is not None and (si.certificate_number, si.edition, si.valid_until, si.report_ref) == (
        "KC10031-2026-0001",
        "2024",
        "2026-03-10",
        "KTL-R-2026-0001",
    )
    on_the_last_day = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)
    accepted(go(cert.state, oem, event(E.INSTALLED, at=on_the_last_day), recorded_at=on_the_last_day))
    day_after = datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC)
    r = refused(go(cert.state, oem, event(E.INSTALLED, at=day_after), recorded_at=day_after))
    assert r.code == "illegal-transition"
    assert "its KC 10031 certificate KC10031-2026-0001 expired on 2026-03-10" in r.detail
    renewed = accepted(
        go(cert.state, certifier, event(E.SAFETY_INSPECTED, at=day_after, data=_cert(valid_until="2027-03-11")))
    )
    accepted(go(renewed.state, oem, event(E.INSTALLED, at=day_after), recorded_at=day_after))


def test_a_certificate_comes_from_a_designated_body_and_is_not_expired_when_issued() -> None:
    state, certifier = battery(S.repurposed, custodian="REPUR-1"), poster(R.certifier, "ACME")
    r = refused(go(state, certifier, event(E.SAFETY_INSPECTED, data=_cert(body="ACME"))))
    assert (r.status, r.code, r.errors[0]["field"], r.errors[0]["rule"]) == (
        422,
        "validation-error",
        "data.body",
        "designated-body",
    )
    assert "KTL, KTR, KTC, KCL" in r.detail
    ok = go(state, certifier, event(E.SAFETY_INSPECTED, data=_cert(body="ACME")), designated_bodies=("ACME",))
    accepted(ok)
    stale = refused(go(state, certifier, event(E.SAFETY_INSPECTED, data=_cert(valid_until="2026-03-01"))))
    assert (stale.errors[0]["field"], stale.errors[0]["rule"]) == ("data.valid_until", "not-before-inspection")


def test_a_passing_inspection_names_its_certificate() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="certificate_number and valid_until"):
        _cert(valid_until=None)
    with pytest.raises(ValidationError, match="certificate_number and valid_until"):
        _cert(certificate_number=None)
    failed = _data(E.SAFETY_INSPECTED, result="fail", certificate_number=None, valid_until=None)
    assert failed == {
        "body": "KTL",
        "standard": "KC 10031",
        "edition": "2024",
        "result": "fail",
        "report_ref": "KTL-R-2026-0001",
    }


# ---- plausibility through the machine ----
def test_an_implausible_report_is_a_422_naming_the_rule_and_its_numbers() -> None:
    held = replace(battery(S.collected, custodian=POSTER_ORG), facts=Facts({"lithium": 8.0}, 477.0, 77.4))
    data = _data(E.RECYCLED, recovered_kg={"lithium": 9.0})
    r = refused(go(held, poster(R.recycler), event(E.RECYCLED, data=data)))
    assert (r.status, r.code, r.title) == (422, "implausible-recovery", "Implausible report")
    assert r.errors[0]["field"] == "data.recovered_kg.lithium" and r.errors[0]["rule"] == "recovery"
    assert {k: r.extra[k] for k in ("rule", "material", "recovered_kg", "contained_kg")} == {
        "rule": "recovery",
        "material": "lithium",
        "recovered_kg": 9.0,
        "contained_kg": 8.0,
    }
    # Someone who does not hold the battery learns nothing of its content: custody is checked first.
    stranger = refused(go(replace(held, custodian="OTHER"), poster(R.recycler), event(E.RECYCLED, data=data)))
    assert stranger.code == "not-custodian" and "contained_kg" not in stranger.extra


def test_a_report_the_facts_cannot_check_is_accepted_and_flagged() -> None:
    held = battery(S.collected, custodian=POSTER_ORG)  # no registered facts
    t = accepted(go(held, poster(R.recycler), event(E.RECYCLED)))
    assert t.row.data["unchecked"] == ["input-mass", "recovery"]
    assert t.row.hash == event_hash(held.last_hash, t.row.as_row())  # the flag is in the hashed record
    checked = accepted(go(battery(S.in_service, custodian=POSTER_ORG), poster(R.inspector), event(E.INSPECTED)))
    assert "unchecked" not in checked.row.data


def test_soh_and_cycle_count_are_compared_with_the_last_reading() -> None:
    inspector = poster(R.inspector)
    first = accepted(go(battery(S.in_service, custodian="HMC"), inspector, event(E.INSPECTED)))
    later = T0 + timedelta(days=2)
    fell = refused(go(first.state, inspector, event(E.INSPECTED, at=later, data=_data(E.INSPECTED, cycle_count=419))))
    assert (fell.code, fell.extra["previous_cycle_count"], fell.extra["cycle_count"]) == (
        "implausible-cycle-count",
        420,
        419,
    )
    rose = refused(go(first.state, inspector, event(E.INSPECTED, at=later, data=_data(E.INSPECTED, soh_pct=95.0))))
    assert (rose.code, rose.extra["previous_soh_pct"], rose.extra["previous_event_id"]) == (
        "implausible-soh-rise",
        91.5,
        first.row.event_id,
    )
    wider = go(
        first.state,
        inspector,
        event(E.INSPECTED, at=later, data=_data(E.INSPECTED, soh_pct=95.0)),
        tolerances=Tolerances(soh_rise_pct=5),
    )
    accepted(wider)


# ---- BMS readings (BMS_REPORTED): who reports ----
BMS = {"soc_pct": 55.0, "energy_throughput_kwh": 1000.0}


@pytest.mark.parametrize(
    ("state", "org", "role", "ok"),
    [
        (S.in_service, "HOLDER", R.oem, True),  # the custodian's BMS
        (S.collected, "HOLDER", R.collector, True),
        (S.in_service, "MAKER", R.manufacturer, True),  # the manufacturer's telemetry, wherever the battery is
        (S.repurposed, "MAKER", R.manufacturer, True),
        (S.in_service, "KOTSA", R.inspector, True),  # reads it in service, as for INSPECTED
        (S.in_service, "ASSESS-1", R.assessor, True),  # as for a pre-removal grading
        (S.removed, "KOTSA", R.inspector, False),  # out of service: only who holds it
        (S.collected, "ASSESS-1", R.assessor, False),
        (S.in_service, "SDI", R.manufacturer, False),  # another manufacturer
        (S.in_service, "OTHER-OEM", R.oem, False),
        (S.removed, "COL-2", R.collector, False),
    ],
)
def test_who_reports_a_batterys_bms_readings(state: State, org: str, role: Role, ok: bool) -> None:
    before = battery(state, custodian="HOLDER")
    outcome = go(before, poster(role, org), event(E.BMS_REPORTED, data=BMS))
    if not ok:
        r = refused(outcome)
        assert (r.status, r.code, r.extra) == (409, "not-custodian", {"custodian": "HOLDER"})
        assert "or to be its manufacturer, or an inspector or assessor while in service" in r.detail
        return
    t = accepted(outcome)
    assert (t.state.state, t.state.custodian, t.row.data) == (state, "HOLDER", BMS)
    assert t.state.readings.totals["energy_throughput_kwh"].value == 1000.0
    # A report by someone who does not hold the battery does not move the ordering clock.
    assert t.state.last_event_at == (t.row.occurred_at if org == "HOLDER" else before.last_event_at)


def test_a_bms_report_is_no_lifecycle_step() -> None:
    """Allowed in every state but a final one, it is not named among the next events (it would be in every list),
    and a certifier or a ministry reads no BMS."""
    for final in FINAL_STATES:
        r = refused(go(battery(final, custodian=POSTER_ORG), poster(R.oem), event(E.BMS_REPORTED, data=BMS)))
        assert r.code == "illegal-transition" and r.extra["allowed_events"] == []
    assert all(E.BMS_REPORTED not in state_allowed(battery(s_)) for s_ in S)
    for role in (R.certifier, R.ministry, R.operator):
        assert refused(go(battery(S.in_service), poster(role), event(E.BMS_REPORTED, data=BMS))).code == "forbidden"


def test_a_bms_reports_readings_are_checked_and_a_correction_refolds_them() -> None:
    """Its running totals never fall; declaring the report that gave the last one lets the earlier one count."""
    from services.events.lifecycle.machine import Corrections, LedgerRow

    made = genesis(
        battery_id="KR-P1",
        kind="pack",
        model_id="M",
        manufacturer="MAKER",
        manufactured_at=T0,
        site=None,
        recorded_at=T0,
    )
    rows: list[LedgerRow] = [made.row]
    state = made.state
    for i, total in enumerate((100.0, 200.0), start=1):
        t = accepted(
            go(
                state,
                poster(R.manufacturer, "MAKER"),
                event(E.BMS_REPORTED, "KR-P1", T0 + timedelta(hours=i), data={"energy_throughput_kwh": total}),
            )
        )
        state, rows = t.state, [*rows, t.row]
    fell = refused(
        go(
            state,
            poster(R.manufacturer, "MAKER"),
            event(E.BMS_REPORTED, "KR-P1", T0 + timedelta(hours=3), data={"energy_throughput_kwh": 150.0}),
        )
    )
    assert (fell.status, fell.code, fell.errors[0]["field"]) == (422, "implausible-total", "data.energy_throughput_kwh")
    assert fell.extra["previous_value"] == 200.0
    declared = DeclaredEvent(rows[-1].event_id, "KR-P1", E.BMS_REPORTED, "MAKER")
    declaration = event(
        E.ERROR_DECLARED,
        "KR-P1",
        T0 + timedelta(hours=4),
        data=_data(E.ERROR_DECLARED, declared_event_id=rows[-1].event_id),
    )
    corrected = accepted(
        go(state, poster(R.manufacturer, "MAKER"), declaration, declared=declared, corrections=Corrections(rows))
    )
    assert corrected.state.readings.totals["energy_throughput_kwh"].value == 100.0
    accepted(
        go(
            corrected.state,
            poster(R.manufacturer, "MAKER"),
            event(E.BMS_REPORTED, "KR-P1", T0 + timedelta(hours=5), data={"energy_throughput_kwh": 150.0}),
        )
    )
