"""The portal's pure projection: a battery's timeline folded into its head, its cell in the counts, and
the contained-materials flow (no database, no broker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.portal.ingest.projection import (
    Battery,
    Facts,
    Flows,
    Head,
    TimelineEvent,
    advance,
    contained_flows,
    continues,
    count_key,
    extend,
    fold,
    posted,
)
from services.portal.ingest.schemas import BatteryRegisteredIn


def ev(seq: int, kind: str, state: str, when: str, data: dict[str, Any] | None = None, **kw: Any) -> TimelineEvent:
    at = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return TimelineEvent(
        sequence=seq,
        event_id=f"e{seq}",
        type=kind,
        occurred_at=at,
        recorded_at=at,
        state_after=state,
        custodian_after=kw.pop("custodian", "LGES"),
        location=kw.pop("location", {}),
        data=data or {},
    )


TIMELINE = [
    ev(1, "MANUFACTURED", "manufactured", "2026-01-10T00:00:00"),
    ev(2, "INSTALLED", "in_service", "2026-02-01T00:00:00", {"vin": "KMHEM41AP6A000009"}, location={"region": "KR-11"}),
    ev(3, "INSPECTED", "in_service", "2026-03-01T00:00:00", {"soh_pct": 91.5, "cycle_count": 300}),
    ev(4, "REPURPOSED", "repurposed", "2026-04-01T00:00:00", {"new_application": "ESS", "rated_capacity": 40}),
    ev(5, "SAFETY_INSPECTED", "repurposed", "2026-04-15T00:00:00", {"result": "pass", "body": "KTL"}),
]


def test_fold_of_no_events_is_the_empty_head() -> None:
    assert fold([]) == Head()


def test_the_highest_sequence_decides_whatever_the_delivery_order() -> None:
    assert fold(list(reversed(TIMELINE))) == fold(TIMELINE)
    head = fold(TIMELINE)
    assert (head.sequence, head.state, head.last_event_id) == (5, "repurposed", "e5")
    assert head.state_since == TIMELINE[3].occurred_at  # unchanged by the same-state event after it


def test_a_reuse_starts_a_new_life_out_of_service() -> None:
    head = fold(TIMELINE[:4])
    assert (head.life, head.status, head.installed_at, head.safety) == (1, "repurposed", None, None)
    assert (head.vin, head.soh_pct, head.cycle_count, head.region) == ("KMHEM41AP6A000009", 91.5, 300, "KR-11")
    assert fold(TIMELINE).safety == "pass"


def test_a_bms_report_moves_what_it_reads_and_leaves_the_rest() -> None:
    reports = [
        *TIMELINE[:3],
        ev(4, "BMS_REPORTED", "in_service", "2026-03-10T00:00:00", {"soh_pct": 90.0, "soc_pct": 55.0}),
        ev(5, "BMS_REPORTED", "in_service", "2026-03-20T00:00:00", {"cycle_count": 340, "soc_pct": 61.0}),
    ]
    assert (fold(reports[:4]).soh_pct, fold(reports[:4]).cycle_count) == (90.0, 300)
    assert (fold(reports).soh_pct, fold(reports).cycle_count) == (90.0, 340)
    later = ev(6, "INSPECTED", "in_service", "2026-04-01T00:00:00", {"soh_pct": 89.5, "cycle_count": 350})
    assert (fold([*reports, later]).soh_pct, fold([*reports, later]).cycle_count) == (89.5, 350)


def test_recycling_makes_waste_in_the_local_month() -> None:
    recycled = ev(6, "RECYCLED", "recycled", "2026-04-30T16:00:00", location={"region": "KR-41"})
    head = fold([*TIMELINE, recycled])
    assert (head.status, head.recycled_month, head.recycled_region) == ("waste", date(2026, 5, 1), "KR-41")


def test_count_key_waits_for_the_first_lifecycle_event() -> None:
    registered = Battery("B1", facts=Facts(registered=True, manufacturer="LGES", chemistry="NCM", kind="pack"))
    assert count_key(registered) is None
    reused = Battery("B1", facts=registered.facts, head=fold(TIMELINE[:4]))
    assert count_key(reused) == ("repurposed", "KR-11", "LGES", "NCM", "pack", "repurposed", "pending", "")


def test_contained_materials_count_once_registered_and_recycled() -> None:
    recycled = fold([*TIMELINE, ev(6, "RECYCLED", "recycled", "2026-05-02T00:00:00")])
    facts = Facts(registered=True, materials_kg={"lithium": 2.0, "nickel": 5.0})
    flows = Flows()
    assert not contained_flows(flows, Battery("B1", head=recycled))  # not registered yet
    assert not contained_flows(flows, Battery("B1", facts=facts, head=fold(TIMELINE)))  # not recycled yet
    assert contained_flows(flows, Battery("B1", facts=facts, head=recycled))
    assert not contained_flows(flows, Battery("B1", facts=facts, head=recycled, contained_counted=True))
    [(key, (n, amounts))] = flows.rows.items()
    assert key[0] == "recycled_contained" and n == 1
    assert amounts == {"lithium": 2.0, "nickel": 5.0, "cobalt": 0.0, "manganese": 0.0}


# ---- folding on from the stored head (`continues`, `extend`) is the fold of the whole timeline ----

FACTS = Facts(
    registered=True,
    manufacturer="LGES",
    chemistry="NCM",
    kind="pack",
    manufactured_at=datetime(2026, 1, 10, tzinfo=UTC),
    materials_kg={"lithium": 8.0, "nickel": 20.0, "graphite": 30.0},
    model={"rated_energy_kwh": 77.5, "mass_kg": 450.0},
)
REGISTRATION = BatteryRegisteredIn(
    id="B1",
    model_id="NCM-PACK-77",
    kind="pack",
    chemistry="NCM",
    manufacturer="LGES",
    serial_number="S-1",
    manufactured_at=datetime(2026, 1, 10, tzinfo=UTC),
    manufacturing_site="Ochang",
    materials_kg={"lithium": 8.0, "nickel": 20.0},
    model={"rated_energy_kwh": 77.5, "mass_kg": 450.0},
)
#: Amounts on a quarter grid: their sums are exact, whatever the order they are added in.
amounts = st.integers(0, 400).map(lambda n: n / 4)
regions = st.sampled_from(["KR-11", "KR-31", "KR-41", None])
DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "INSTALLED": st.fixed_dictionaries({"vin": st.sampled_from(["KMHEM41AP6A000009", "P" * 64])})
    | st.fixed_dictionaries({"ess_site_id": st.just("ESS-1")}),
    "INSPECTED": st.fixed_dictionaries({"soh_pct": amounts.map(lambda a: a / 4), "cycle_count": st.integers(0, 3000)}),
    "BMS_REPORTED": st.fixed_dictionaries(
        {}, optional={"soh_pct": amounts.map(lambda a: a / 4), "cycle_count": st.integers(0, 3000), "soc_pct": amounts}
    ),
    "REMOVED": st.fixed_dictionaries({"reason": st.sampled_from(["end_of_life", "accident", "recall"])}),
    "COLLECTED": st.fixed_dictionaries({"centre": st.sampled_from(["C-1", "C-2"]), "region": st.just("KR-41")}),
    "GRADED": st.fixed_dictionaries(
        {"soh_pct": amounts.map(lambda a: a / 4), "grade": st.sampled_from(["reuse", "remanufacture", "recycle"])},
        optional={"pre_removal": st.booleans()},
    ),
    "REPURPOSED": st.fixed_dictionaries({"new_application": st.just("ESS"), "rated_capacity": amounts}),
    "REMANUFACTURED": st.just({}),
    "SAFETY_INSPECTED": st.fixed_dictionaries(
        {"result": st.sampled_from(["pass", "fail"]), "body": st.sampled_from(["KTL", "KTC"])},
        optional={"certificate_number": st.just("KC-1"), "valid_until": st.just("2028-01-01")},
    ),
    "RECYCLED": st.fixed_dictionaries(
        {
            "process": st.sampled_from(["hydro", "pyro"]),
            "input_mass_kg": amounts,
            "black_mass_kg": amounts,
            "recovered_kg": st.dictionaries(st.sampled_from(["lithium", "nickel", "cobalt"]), amounts),
        }
    ),
    "DISPOSED": st.fixed_dictionaries({}, optional={"method": st.just("landfill")}),
    "TRANSFERRED": st.fixed_dictionaries({"to": st.sampled_from(["HMC", "REC-1"])}),
    "INCIDENT": st.fixed_dictionaries({"kind": st.just("fire"), "severity": st.sampled_from(["low", "high"])}),
    "ASSEMBLED": st.fixed_dictionaries({"parent_id": st.sampled_from(["M1", "M2"])}),
    "DISASSEMBLED": st.fixed_dictionaries({"parent_id": st.sampled_from(["M1", "M2"])}),
}


@st.composite
def timelines(draw: st.DrawFn) -> list[TimelineEvent]:
    """A battery's timeline: MANUFACTURED, then events of any kind, some of them declarations of an earlier one."""
    out = [ev(1, "MANUFACTURED", "manufactured", "2026-01-10T00:00:00")]
    for seq in range(2, draw(st.integers(2, 14)) + 1):
        declarable = [e for e in out if e.type not in ("MANUFACTURED", "ERROR_DECLARED")]
        kinds = [*DATA, *(["ERROR_DECLARED"] * 2 if declarable else [])]
        kind = draw(st.sampled_from(kinds))
        if kind == "ERROR_DECLARED":
            data: dict[str, Any] = {"declared_event_id": draw(st.sampled_from(declarable)).event_id, "reason": "x"}
        else:
            data = draw(DATA[kind])
        day = draw(st.integers(0, 400))
        region = draw(regions)
        out.append(
            replace(
                ev(seq, kind, draw(st.sampled_from(["in_service", "removed", "graded", "recycled"])), "2026-01-11"),
                occurred_at=datetime(2026, 1, 11, tzinfo=UTC) + timedelta(days=day, hours=draw(st.integers(0, 23))),
                custodian_after=draw(st.sampled_from(["LGES", "HMC", "REC-1"])),
                location={"region": region} if region else {},
                data=data,
                applied_at=datetime(2026, 6, 1, tzinfo=UTC) + timedelta(seconds=seq),
            )
        )
    return out


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[TimelineEvent]], int | None]:
    """A timeline cut into batches, delivered in order or not, and the batch its registration comes with (None:
    registered before the first)."""
    timeline = draw(timelines())
    cuts = sorted(draw(st.sets(st.integers(1, len(timeline) - 1), max_size=len(timeline) - 1)))
    batches = [timeline[a:b] for a, b in zip([0, *cuts], [*cuts, len(timeline)], strict=True)]
    if draw(st.booleans()):
        batches = draw(st.permutations(batches))
    batches = [draw(st.permutations(b)) for b in batches]  # as the records came, in any order
    return batches, draw(st.none() | st.integers(0, len(batches) - 1))


def ingest(batches: list[list[TimelineEvent]], registered_in: int | None, onward: bool) -> list[tuple[Battery, Flows]]:
    """The battery after each batch, and what the batch added to the figures, as `service.apply` decides: folded on
    from the head where the batch continues it (`onward`), else (and always without `onward`) the whole timeline."""
    battery = Battery("B1", facts=FACTS if registered_in is None else Facts())
    held: list[TimelineEvent] = []
    out = []
    for i, batch in enumerate(batches):
        held += batch
        flows, posted = Flows(), sorted(batch, key=lambda e: e.sequence)
        registration = REGISTRATION if i == registered_in else None
        if onward and registration is None and continues(battery.head, posted):
            battery = extend(battery, posted, flows)
        else:
            inserted = {("B1", e.sequence) for e in batch}
            battery = advance(battery, registration, held, None, inserted, flows)
        out.append((battery, flows))
    return out


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_folding_on_from_the_head_is_the_fold_of_the_whole_timeline(delivery: Any) -> None:
    batches, registered_in = delivery
    onward, whole = ingest(batches, registered_in, True), ingest(batches, registered_in, False)
    for (b1, f1), (b2, f2) in zip(onward, whole, strict=True):
        assert b1 == b2
        assert f1.changes() == f2.changes()
    assert onward[-1][0].head == fold([e for b in batches for e in b])


def test_continues_only_the_next_sequences_without_a_declaration() -> None:
    head = fold(TIMELINE[:2])
    assert continues(head, TIMELINE[2:]) and continues(head, [])
    assert not continues(head, TIMELINE[3:])  # a gap: sequence 3 has not arrived
    assert not continues(head, [TIMELINE[3], TIMELINE[2]])  # out of order
    assert not continues(head, TIMELINE[1:])  # a repeat of the head's own sequence
    declaration = ev(3, "ERROR_DECLARED", "manufactured", "2026-03-02T00:00:00", {"declared_event_id": "e2"})
    assert not continues(head, [declaration])
    assert continues(Head(), TIMELINE[:1])


def test_extend_adds_only_the_new_events_flows() -> None:
    before = Battery("B1", facts=FACTS, head=fold(TIMELINE[:3]))
    flows = Flows()
    incident = ev(6, "INCIDENT", "repurposed", "2026-05-01T00:00:00", {"kind": "fire", "severity": "high"})
    after = extend(before, [*TIMELINE[3:], incident], flows)
    assert after.head == fold([*TIMELINE, incident])
    assert {k[0] for k in flows.changes()} == {"outcome", "safety_inspected", "incident"}
    [after_reuse] = [k for k in flows.changes() if k[0] == "incident"]
    assert after_reuse[2:] == ("KR-11", "fire", "high", "after_reuse")  # at the head's region, after the REPURPOSED


def test_extend_moves_the_contained_materials_once_recycled() -> None:
    recycled = ev(6, "RECYCLED", "recycled", "2026-05-02T00:00:00", DATA_RECYCLED, location={"region": "KR-41"})
    flows = Flows()
    after = extend(Battery("B1", facts=FACTS, head=fold(TIMELINE)), [recycled], flows)
    assert after.contained_counted
    contained = {k: v for k, v in flows.changes().items() if k[0] == "recycled_contained"}
    assert [(k[2], v[0]) for k, v in contained.items()] == [("KR-41", 1)]


DATA_RECYCLED = {"process": "hydro", "input_mass_kg": 450.0, "black_mass_kg": 180.0, "recovered_kg": {"lithium": 4.0}}


def test_posted_events_read_as_the_stored_timeline() -> None:
    """What the batch stored, as `TimelineEvent`s without reading them back: in sequence order, times in UTC."""
    kst = timezone(timedelta(hours=9))
    at = datetime(2026, 3, 1, 9, 0, tzinfo=kst)
    row = {
        "battery_id": "B1",
        "event_id": "e3",
        "type": "INSPECTED",
        "occurred_at": at,
        "recorded_at": at,
        "actor": "INSP",
        "state_after": "in_service",
        "custodian_after": "HMC",
        "location": {"region": "KR-11"},
        "data": {"soh_pct": 91.5, "cycle_count": 300},
    }
    applied = datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
    found = posted(
        [{**row, "sequence": 3}, {**row, "sequence": 2}, {**row, "battery_id": "B2", "sequence": 9}],
        {("B1", 2): applied, ("B1", 3): applied},  # B2's was stored before (not inserted)
    )
    assert list(found) == ["B1"] and [e.sequence for e in found["B1"]] == [2, 3]
    e = found["B1"][0]
    assert e.occurred_at.tzinfo is UTC and e.occurred_at == at and e.applied_at == applied
    assert (e.actor, e.declared_by, e.data, e.location) == ("INSP", None, row["data"], row["location"])
