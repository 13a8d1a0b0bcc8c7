"""Events service: the transition table, roles, custody, ordering, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.events.lifecycle.rules import RULES
from shared.contract.lifecycle import EventType
from tests.conftest import eventually
from tests.events_helpers import DATA, ORGS, Stack, stack


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def reach(s: Stack, state: str, *, grade: str = "recycle") -> str:
    """A fresh battery walked into `state` by legal events."""
    if state == "assembled":
        parent = await s.battery(model_id="NCM-MOD-8")
        child = await s.battery(model_id="NCM-CELL-60")
        await s.ok(child, "ASSEMBLED", "manufacturer", data={"parent_id": parent})
        return child
    bid = await s.battery()
    if state == "manufactured":
        return bid
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    if state == "in_service":
        return bid
    await s.ok(bid, "REMOVED", "dismantler")
    if state == "removed":
        return bid
    await s.ok(bid, "COLLECTED", "collector")
    if state == "collected":
        return bid
    if state == "disposed":
        await s.ok(bid, "DISPOSED", "collector")
        return bid
    await s.transfer_to(bid, "assessor")
    target_grade = {"remanufactured": "remanufacture", "repurposed": "reuse", "recycled": "recycle"}.get(state, grade)
    await s.ok(bid, "GRADED", "assessor", data={"soh_pct": 70.0, "grade": target_grade})
    if state == "graded":
        return bid
    if state == "remanufactured":
        await s.transfer_to(bid, "remanufacturer")
        await s.ok(bid, "REMANUFACTURED", "remanufacturer")
    elif state == "repurposed":
        await s.transfer_to(bid, "repurposer")
        await s.ok(bid, "REPURPOSED", "repurposer")
        await s.ok(bid, "SAFETY_INSPECTED", "certifier")
    elif state == "recycled":
        await s.transfer_to(bid, "recycler")
        await s.ok(bid, "RECYCLED", "recycler")
    return bid


#: One end-to-end case per posted event type: (the state it is posted in, the grade that state was graded with,
#: the poster's role, the data, the state after). Every state, role and custody combination is covered at unit
#: level (tests/test_lifecycle_machine.py); this proves each type through HTTP, the database and the ledger.
ONE_PER_TYPE: dict[EventType, tuple[str, str, str, dict[str, Any] | None, str]] = {
    EventType.ASSEMBLED: ("manufactured", "recycle", "manufacturer", None, "assembled"),  # a cell into a module
    EventType.DISASSEMBLED: ("assembled", "recycle", "manufacturer", None, "removed"),  # from its parent
    EventType.INSTALLED: ("manufactured", "recycle", "oem", None, "in_service"),
    EventType.INSPECTED: ("in_service", "recycle", "inspector", None, "in_service"),
    EventType.REMOVED: ("in_service", "recycle", "dismantler", None, "removed"),
    EventType.COLLECTED: ("removed", "recycle", "collector", None, "collected"),
    EventType.GRADED: ("collected", "recycle", "assessor", None, "graded"),
    EventType.REMANUFACTURED: ("graded", "remanufacture", "remanufacturer", None, "remanufactured"),
    EventType.REPURPOSED: ("graded", "reuse", "repurposer", None, "repurposed"),
    EventType.SAFETY_INSPECTED: ("repurposed", "reuse", "certifier", None, "repurposed"),
    EventType.RECYCLED: ("graded", "recycle", "recycler", None, "recycled"),
    EventType.DISPOSED: ("collected", "recycle", "collector", None, "disposed"),
    EventType.TRANSFERRED: ("manufactured", "recycle", "manufacturer", {"to": "SOMEONE-ELSE"}, "manufactured"),
    EventType.INCIDENT: ("in_service", "recycle", "inspector", None, "in_service"),
    # A BMS's readings, reported by an inspector in service (no custody), the state unchanged.
    EventType.BMS_REPORTED: ("in_service", "recycle", "inspector", {"soc_pct": 55.0, "cycle_count": 12}, "in_service"),
    # The oem's INSTALLED declared in error: the correction takes it out, the battery is back where it was.
    EventType.ERROR_DECLARED: ("in_service", "recycle", "oem", None, "manufactured"),
}


@pytest.mark.parametrize("etype", list(ONE_PER_TYPE), ids=[e.value for e in ONE_PER_TYPE])
async def test_each_event_type_end_to_end(s: Stack, etype: EventType) -> None:
    """Each postable type, posted legally, moves state and custody as the table says and extends a valid chain."""
    source, grade, role, data, target = ONE_PER_TYPE[etype]
    if etype is EventType.ASSEMBLED:
        data = {"parent_id": await s.battery(model_id="NCM-MOD-8")}
        bid = await s.battery(model_id="NCM-CELL-60")
    else:
        bid = await reach(s, source, grade=grade)
    custody = RULES[etype].custody.value if etype in RULES else "none"
    if custody == "custodian":
        await s.transfer_to(bid, role)
    before = await s.state(bid)
    assert before["state"] == source
    if etype is EventType.DISASSEMBLED:
        data = {"parent_id": before["parent_id"]}
    elif etype is EventType.ERROR_DECLARED:
        timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()
        data = {"declared_event_id": timeline["items"][-1]["event_id"], "reason": "incorrect_data"}
    out = await s.ok(bid, etype.value, role, data=data)
    custodian = {"none": before["custodian"], "receiver": "SOMEONE-ELSE"}.get(custody, ORGS[role])
    sequence = before["sequence"]
    assert (out["state"], out["custodian"], out["sequence"]) == (target, custodian, sequence + 1)
    st = await s.state(bid)
    assert (st["state"], st["custodian"], st["sequence"]) == (target, custodian, sequence + 1)
    v = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()
    assert v["valid"] and v["events"] == sequence + 1 and v["head_hash"] == out["hash"]


async def test_full_life_to_recycling(s: Stack) -> None:
    bid = await s.battery()
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INSPECTED", "inspector")
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    await s.ok(bid, "GRADED", "assessor")
    await s.ok(bid, "TRANSFERRED", "assessor", data={"to": ORGS["recycler"]})
    last = await s.ok(bid, "RECYCLED", "recycler")
    assert last["sequence"] == 10 and last["state"] == "recycled" and last["custodian"] == ORGS["recycler"]
    st = await s.state(bid)
    assert st["grade"] == "recycle" and st["allowed_events"] == []
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()
    assert [e["type"] for e in timeline["items"]] == [
        "MANUFACTURED",
        "TRANSFERRED",
        "INSTALLED",
        "INSPECTED",
        "REMOVED",
        "COLLECTED",
        "TRANSFERRED",
        "GRADED",
        "TRANSFERRED",
        "RECYCLED",
    ]
    assert [e["actor"] for e in timeline["items"]][:5] == ["LGES", "LGES", "HMC", "KOTSA", "DISM-1"]
    v = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()
    assert v == {
        "battery_id": bid,
        "valid": True,
        "events": 10,
        "head_hash": last["hash"],
        "broken_at_sequence": None,
        "reason": None,
        "from_sequence": 1,
        "next_from_sequence": None,  # one page is the whole chain
    }


async def test_final_states_accept_nothing(s: Stack) -> None:
    bid = await reach(s, "recycled")
    r = await s.post(bid, "INCIDENT", "inspector")
    assert r.status_code == 409 and r.json()["allowed_events"] == []
    body = r.json()
    assert body["code"] == "illegal-transition" and body["current_state"] == "recycled"


async def test_repurposed_needs_passing_safety_inspection_before_install(s: Stack) -> None:
    bid = await reach(s, "graded", grade="reuse")
    await s.transfer_to(bid, "repurposer")
    await s.ok(bid, "REPURPOSED", "repurposer")
    await s.transfer_to(bid, "oem")
    r = await s.post(bid, "INSTALLED", "oem")
    assert r.status_code == 409 and "SAFETY_INSPECTED" in r.json()["detail"]
    failed = {"body": "KTL", "edition": "2024", "result": "fail", "report_ref": "KTL-R-1"}
    await s.ok(bid, "SAFETY_INSPECTED", "certifier", data=failed)
    assert (await s.post(bid, "INSTALLED", "oem")).status_code == 409
    await s.ok(bid, "SAFETY_INSPECTED", "certifier", data=DATA["SAFETY_INSPECTED"])
    assert (await s.state(bid))["safety_inspection"]["result"] == "pass"
    await s.ok(bid, "INSTALLED", "oem", data={"ess_site_id": "ESS-JEJU-7"})


@pytest.mark.parametrize(
    ("etype", "role"),
    [
        ("INSTALLED", "recycler"),
        ("REMOVED", "collector"),
        ("COLLECTED", "dismantler"),
        ("GRADED", "recycler"),
        ("RECYCLED", "collector"),
        ("SAFETY_INSPECTED", "assessor"),
        ("INSPECTED", "recycler"),
        ("INCIDENT", "operator"),
        ("DISPOSED", "oem"),
        ("ASSEMBLED", "oem"),
    ],
)
async def test_wrong_role_is_403(s: Stack, etype: str, role: str) -> None:
    bid = await s.battery()
    data = {"parent_id": bid} if etype == "ASSEMBLED" else None
    r = await s.post(bid, etype, role, data=data)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await s.state(bid))["sequence"] == 1


async def test_ministry_may_report_incident(s: Stack) -> None:
    bid = await s.battery()
    assert (await s.post(bid, "INCIDENT", "ministry", org="MOLIT")).status_code == 201


async def test_custody_is_required_and_moves_with_transfer(s: Stack) -> None:
    bid = await reach(s, "collected")
    r = await s.post(bid, "GRADED", "assessor")
    assert r.status_code == 409 and r.json()["code"] == "not-custodian" and r.json()["custodian"] == "COL-1"
    stranger = await s.post(bid, "TRANSFERRED", "recycler", data={"to": "REC-1"})
    assert stranger.status_code == 409 and stranger.json()["code"] == "not-custodian"
    t = await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    assert t["custodian"] == "ASSESS-1" and t["state"] == "collected"
    await s.ok(bid, "GRADED", "assessor")


async def test_removal_and_collection_hand_custody_to_poster(s: Stack) -> None:
    bid = await reach(s, "in_service")
    assert (await s.ok(bid, "REMOVED", "dismantler"))["custodian"] == "DISM-1"
    assert (await s.ok(bid, "COLLECTED", "collector"))["custodian"] == "COL-1"


async def test_assembly_pairs_and_disassembly_of_current_component(s: Stack) -> None:
    pack = await s.battery(model_id="NCM-PACK-77")
    module = await s.battery(model_id="NCM-MOD-8")
    cell = await s.battery(model_id="NCM-CELL-60")
    other_module = await s.battery(model_id="NCM-MOD-8")
    bad = await s.post(pack, "ASSEMBLED", "manufacturer", data={"parent_id": cell})
    assert bad.status_code == 422 and bad.json()["errors"][0]["rule"] == "assembly-pairing"
    await s.ok(cell, "ASSEMBLED", "manufacturer", data={"parent_id": module})
    await s.ok(module, "ASSEMBLED", "manufacturer", data={"parent_id": pack})
    assert (await s.state(cell))["parent_id"] == module
    wrong = await s.post(cell, "DISASSEMBLED", "manufacturer", data={"parent_id": other_module})
    assert wrong.status_code == 409 and wrong.json()["code"] == "not-a-component"
    out = await s.ok(cell, "DISASSEMBLED", "manufacturer", data={"parent_id": module})
    assert out["state"] == "removed"
    assert (await s.state(cell))["parent_id"] is None
    missing = await s.post(other_module, "ASSEMBLED", "manufacturer", data={"parent_id": "KR-NO-SUCH"})
    assert missing.status_code == 404


async def test_assembly_needs_custody_of_parent(s: Stack) -> None:
    module = await s.battery(model_id="NCM-MOD-8")
    cell = await s.battery(model_id="NCM-CELL-60")
    r = await s.post(cell, "ASSEMBLED", "remanufacturer", data={"parent_id": module})
    assert r.status_code == 409 and r.json()["code"] == "not-custodian"


async def test_same_event_id_same_content_answers_the_original(s: Stack) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    eid = str(uuid.uuid4())
    at = datetime.now(UTC).isoformat()
    first = await s.post(bid, "INSTALLED", "oem", event_id=eid, occurred_at=at)
    again = await s.post(bid, "INSTALLED", "oem", event_id=eid, occurred_at=at)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    timeline = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("oem"))).json()["items"]
    assert [e["type"] for e in timeline] == ["MANUFACTURED", "TRANSFERRED", "INSTALLED"]


async def test_same_event_id_other_content_is_conflict(s: Stack) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    eid = str(uuid.uuid4())
    at = datetime.now(UTC).isoformat()
    await s.ok(bid, "INSTALLED", "oem", event_id=eid, occurred_at=at)
    r = await s.post(bid, "INSTALLED", "oem", event_id=eid, occurred_at=at, data={"vin": "KMHEM41AP6A999999"})
    assert r.status_code == 409 and r.json()["code"] == "event-id-conflict"


async def test_expected_sequence_mismatch(s: Stack) -> None:
    bid = await s.battery()
    r = await s.post(bid, "INCIDENT", "inspector", expected_sequence=5)
    assert r.status_code == 409 and r.json()["code"] == "sequence-conflict" and r.json()["current_sequence"] == 1
    assert (await s.post(bid, "INCIDENT", "inspector", expected_sequence=1)).status_code == 201


async def test_concurrent_conflicting_transitions_one_wins(s: Stack) -> None:
    for _ in range(5):
        bid = await reach(s, "in_service")
        results = await asyncio.gather(
            s.post(bid, "REMOVED", "dismantler"),
            s.post(bid, "REMOVED", "oem"),
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [201, 409], [r.text for r in results]
        v = (await s.events.get(f"/v1/batteries/{bid}/verify")).json()
        assert v["valid"] and v["events"] == 4


async def test_concurrent_posts_with_expected_sequence_never_fork(s: Stack) -> None:
    bid = await reach(s, "in_service")
    seq = (await s.state(bid))["sequence"]
    results = await asyncio.gather(*[s.post(bid, "INSPECTED", "inspector", expected_sequence=seq) for _ in range(6)])
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    assert (await s.state(bid))["sequence"] == seq + 1


async def test_time_rules(s: Stack) -> None:
    bid = await s.battery()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await s.post(bid, "INSTALLED", "oem", occurred_at=future)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "occurred_at"
    before = "2025-01-01T00:00:00+00:00"  # before the battery's manufacture
    r = await s.post(bid, "INSTALLED", "oem", occurred_at=before)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "not-before-last-event"


async def test_unknown_battery_404_and_malformed_data_422(s: Stack) -> None:
    r = await s.post("KR-UNKNOWN-9", "INSTALLED", "oem")
    assert r.status_code == 404 and r.json()["code"] == "unknown-battery"
    bid = await reach(s, "in_service")
    before = (await s.state(bid))["sequence"]
    r = await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": 130, "cycle_count": 1})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "data.soh_pct"
    r = await s.post(bid, "INSPECTED", "inspector", data={"cycle_count": 1})
    assert r.json()["errors"][0] == {"field": "data.soh_pct", "rule": "missing", "message": "Field required"}
    r = await s.post(bid, "REMOVED", "dismantler", data={"reason": "boredom"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "data.reason"
    r = await s.events.post(
        "/v1/events",
        json={
            "event_id": "not-a-uuid",
            "battery_id": bid,
            "type": "INCIDENT",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
        headers=s.as_role("inspector"),
    )
    assert r.status_code == 422
    assert (await s.state(bid))["sequence"] == before


async def test_manufactured_cannot_be_posted(s: Stack) -> None:
    bid = await s.battery()
    r = await s.post(bid, "MANUFACTURED", "manufacturer")
    assert r.status_code == 422


@pytest.fixture
async def streaming(make_settings, token):
    async with stack(make_settings, token, streams=True) as st:
        yield st


async def test_registered_battery_is_usable_at_once_and_ledger_starts_from_stream(streaming: Stack) -> None:
    s = streaming
    bid = await s.battery()
    # Immediately usable (read-through), whether or not the registry stream has arrived yet.
    assert (await s.post(bid, "INCIDENT", "inspector")).status_code == 201
    # A battery nobody posts for still gets its MANUFACTURED from battery.registry.v1.
    quiet = await s.battery()

    async def has_ledger() -> bool:
        r = await s.events.get(f"/v1/batteries/{quiet}/state", headers=s.as_role("manufacturer"))
        return r.status_code == 200

    await eventually(has_ledger)
    timeline = (await s.events.get(f"/v1/batteries/{quiet}/events", headers=s.as_role("manufacturer"))).json()["items"]
    assert len(timeline) == 1
    first = timeline[0]
    assert first["type"] == "MANUFACTURED" and first["sequence"] == 1 and first["actor"] == "LGES"
    assert first["custodian_after"] == "LGES"


async def test_pre_removal_grading_of_an_installed_battery_decides_what_follows_its_removal(s: Stack) -> None:
    bid = await reach(s, "in_service")
    # The assessor does not hold the installed battery: pre-removal grading needs no custody.
    r = await s.post(bid, "GRADED", "assessor", data={"soh_pct": 74.0, "grade": "recycle"})
    assert r.status_code == 409 and "pre_removal" in r.json()["detail"], r.text
    await s.ok(bid, "GRADED", "assessor", data={"soh_pct": 74.0, "grade": "reuse", "pre_removal": True})
    st = await s.state(bid)
    assert (st["state"], st["custodian"], st["grade"], st["pre_removal_grade"]) == (
        "in_service",
        "HMC",
        "reuse",
        "reuse",
    )
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    st = await s.state(bid)
    assert "REPURPOSED" in st["allowed_events"] and "RECYCLED" not in st["allowed_events"]
    await s.transfer_to(bid, "recycler")
    r = await s.post(bid, "RECYCLED", "recycler")
    assert r.status_code == 409 and "(graded 'reuse' before removal, not 'recycle')" in r.json()["detail"], r.text
    await s.ok(bid, "TRANSFERRED", "recycler", data={"to": ORGS["repurposer"]})
    await s.ok(bid, "REPURPOSED", "repurposer")
    assert (await s.state(bid))["pre_removal_grade"] is None


async def test_a_remanufactured_battery_is_installed_only_on_an_unexpired_kc_10031_certificate(s: Stack) -> None:
    bid = await s.battery()

    async def at(day: str, etype: str, role: str, data: dict[str, Any] | None = None) -> Any:
        return await s.post(bid, etype, role, data=data, occurred_at=f"2026-{day}T10:00:00+09:00")

    steps = [
        ("02-01", "TRANSFERRED", "manufacturer", {"to": ORGS["oem"]}),
        ("02-02", "INSTALLED", "oem", None),
        ("03-01", "REMOVED", "dismantler", None),
        ("03-02", "COLLECTED", "collector", None),
        ("03-03", "TRANSFERRED", "collector", {"to": ORGS["assessor"]}),
        ("03-04", "GRADED", "assessor", {"soh_pct": 70.0, "grade": "remanufacture"}),
        ("03-05", "TRANSFERRED", "assessor", {"to": ORGS["remanufacturer"]}),
        ("03-06", "REMANUFACTURED", "remanufacturer", None),
    ]
    for day, etype, role, data in steps:
        assert (await at(day, etype, role, data)).status_code == 201
    cert = {**DATA["SAFETY_INSPECTED"], "certificate_number": "KC-2026-77", "valid_until": "2026-03-31"}
    undesignated = await at("03-07", "SAFETY_INSPECTED", "certifier", {**cert, "body": "NOT-DESIGNATED"})
    assert undesignated.status_code == 422 and undesignated.json()["errors"][0]["rule"] == "designated-body"
    assert (await at("03-07", "SAFETY_INSPECTED", "certifier", cert)).status_code == 201
    assert (await at("04-01", "TRANSFERRED", "remanufacturer", {"to": ORGS["oem"]})).status_code == 201
    expired = await at("04-02", "INSTALLED", "oem")
    assert expired.status_code == 409, expired.text
    assert "certificate KC-2026-77 expired on 2026-03-31" in expired.json()["detail"]
    si = (await s.state(bid))["safety_inspection"]
    assert (si["certificate_number"], si["valid_until"], si["edition"], si["report_ref"]) == (
        "KC-2026-77",
        "2026-03-31",
        "2024",
        "KTL-R-T-0001",
    )
    renewed = {**cert, "certificate_number": "KC-2026-78", "valid_until": "2027-04-02"}
    assert (await at("04-03", "SAFETY_INSPECTED", "certifier", renewed)).status_code == 201
    assert (await at("04-04", "INSTALLED", "oem")).status_code == 201
