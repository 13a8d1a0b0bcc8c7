"""Attacks on custody, event IDs, time and numbers, tried over HTTP the way a hostile participant would.

| attack | before | now |
|---|---|---|
| a remanufacturer holding a module assembles another's cell into it | 201, the attacker became the cell's custodian | 409 `not-custodian` (the cell's custodian named), nothing stored |
| a collector nobody handed the battery to COLLECTs a removed battery, then DISPOSEs of it | 201, 201 (final) | 409 `not-custodian` both, battery still removed at the remover |
| a collector other than the consignee the remover named COLLECTs | 201 | 409 `not-custodian`; the named consignee collects (201) |
| GRADED / RECYCLED / DISPOSED by a participant that does not hold the battery | 409 | 409 `not-custodian` (unchanged, now with consignment) |
| an INCIDENT or INSPECTED by a stranger | no custody, but counted as a relation | no custody, state and custodian unchanged |
| a participant reuses another participant's event ID | 409 `event-id-conflict` for the second poster | 201: IDs are per poster; each retry answers its own poster's event |
| a participant claims the registration event ID of a battery not yet registered | the battery's ledger could never start: 500 on every later event | 201; the battery registers and its events are 201 |
| two concurrent posts of one ID by one poster on two batteries | 500 (unique violation) for the second | one 201, the other 409 `event-id-conflict`, never 500 |
| ERROR_DECLARED of an ID two posters used on one battery | answered for whichever row came first | the declarer's own; an authority must name `declared_actor` (422 otherwise) |
| a future-dated INCIDENT (inside the skew) by a bystander blocks the custodian's next event | 422 for the custodian | the custodian's event is 201: bystanders do not move the clock |
| `occurred_at` minutes ahead of the server | accepted (up to 2 min) | 422 `occurred_at` `not-in-future` (5 s, `BT_EVENTS_OCCURRED_AT_MAX_AHEAD_S`) |
| `cycle_count` 2^64 | 500 | 422 naming `data.cycle_count` |
| `soh_pct` Infinity / NaN | stored as null | 422 naming `data.soh_pct` |
| a float of 1e20 kg (legal then) | stored; `/verify` reported tampering | 422 naming the field (range ≤ 1e15) |
| generated legal events (hypothesis) | `/verify` could break | `/verify` stays valid |
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contract.streams import manufactured_event_id
from shared.validation import FLOAT_MAX, INT_MAX
from tests.events_helpers import DATA, ORGS, Stack, stack
from tests.factories import battery_body


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st_:
        yield st_


async def ledger(s: Stack, battery_id: str) -> list[dict[str, Any]]:
    r = await s.events.get(f"/v1/batteries/{battery_id}/events", headers=s.as_role("ministry"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def verified(s: Stack, battery_id: str) -> dict[str, Any]:
    r = await s.events.get(f"/v1/batteries/{battery_id}/verify")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def removed(s: Stack, model_id: str = "NCM-PACK-77", **data: Any) -> str:
    bid = await s.battery(model_id=model_id)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "REMOVED", "dismantler", data={"reason": "end_of_life", **data})
    return bid


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code, body
    return body


def named(body: dict[str, Any], field: str) -> None:
    assert field in [e["field"] for e in body.get("errors", [])], body


# ---- 1. custody moves only with the custodian's consent ----
async def test_assembling_another_participants_cell_into_ones_module_is_refused(s: Stack) -> None:
    module = await s.battery(model_id="NCM-MOD-8")
    cell = await s.battery(model_id="NCM-CELL-60")
    await s.ok(module, "TRANSFERRED", "manufacturer", data={"to": ORGS["remanufacturer"]})
    before = await s.state(cell)
    r = await s.post(cell, "ASSEMBLED", "remanufacturer", data={"parent_id": module})
    body = refused(r, 409, "not-custodian")
    assert body["custodian"] == ORGS["manufacturer"]
    assert await s.state(cell) == before and before["custodian"] == "LGES" and before["parent_id"] is None
    assert len(await ledger(s, cell)) == 1


async def test_a_collector_nobody_consigned_cannot_collect_or_dispose(s: Stack) -> None:
    bid = await removed(s)  # no consignee
    before = await s.state(bid)
    body = refused(await s.post(bid, "COLLECTED", "collector"), 409, "not-custodian")
    assert body["custodian"] == ORGS["dismantler"]
    refused(await s.post(bid, "DISPOSED", "collector"), 409, "not-custodian")
    after = await s.state(bid)
    assert after == before and (after["state"], after["custodian"]) == ("removed", ORGS["dismantler"])
    assert len(await ledger(s, bid)) == before["sequence"]


async def test_only_the_named_consignee_may_collect(s: Stack) -> None:
    bid = await removed(s, consignee=ORGS["collector"])
    before = await s.state(bid)
    body = refused(await s.post(bid, "COLLECTED", "collector", org="COL-2"), 409, "not-custodian")
    assert "consigned to COL-1" in body["detail"]
    assert await s.state(bid) == before
    taken = await s.ok(bid, "COLLECTED", "collector")
    assert (taken["state"], taken["custodian"]) == ("collected", "COL-1")
    assert (await s.state(bid))["sequence"] == before["sequence"] + 1


async def test_grading_recycling_disposing_need_custody(s: Stack) -> None:
    bid = await removed(s, consignee=ORGS["collector"])
    await s.ok(bid, "COLLECTED", "collector")
    before = await s.state(bid)
    refused(await s.post(bid, "GRADED", "assessor"), 409, "not-custodian")
    refused(await s.post(bid, "RECYCLED", "recycler"), 409, "not-custodian")
    refused(await s.post(bid, "DISPOSED", "recycler"), 409, "not-custodian")
    assert await s.state(bid) == before


async def test_posting_about_a_battery_grants_no_custody(s: Stack) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INCIDENT", "inspector")
    await s.ok(bid, "INSPECTED", "inspector")
    after = await s.state(bid)
    assert (after["state"], after["custodian"]) == ("in_service", ORGS["oem"])
    refused(await s.post(bid, "TRANSFERRED", "inspector", data={"to": "KOTSA-2"}), 409, "not-custodian")


# ---- 3. event IDs belong to their poster ----
async def test_another_participants_event_id_blocks_nobody(s: Stack) -> None:
    a, b = await s.battery(), await s.battery()
    shared_id, at = str(uuid.uuid4()), datetime.now(UTC).isoformat()
    first = await s.ok(a, "INCIDENT", "inspector", event_id=shared_id, occurred_at=at)
    second = await s.ok(b, "INCIDENT", "manufacturer", event_id=shared_id, occurred_at=at)
    assert (first["battery_id"], second["battery_id"]) == (a, b)
    # Each poster's retry answers its own event.
    assert await s.ok(b, "INCIDENT", "manufacturer", event_id=shared_id, occurred_at=at) == second
    assert await s.ok(a, "INCIDENT", "inspector", event_id=shared_id, occurred_at=at) == first
    # The same poster with other content is still a conflict.
    refused(await s.post(b, "INCIDENT", "inspector", event_id=shared_id, occurred_at=at), 409, "event-id-conflict")
    assert len(await ledger(s, a)) == 2 and len(await ledger(s, b)) == 2


@pytest.mark.parametrize("claimer", ["inspector", "manufacturer"])
async def test_claiming_a_future_batterys_registration_event_id_does_not_break_it(s: Stack, claimer: str) -> None:
    other = await s.battery()
    future = f"KR-T-FUT-{claimer[:3].upper()}"
    await s.ok(other, "INCIDENT", claimer, event_id=manufactured_event_id(future))
    assert await s.battery(future) == future
    st_ = await s.state(future)
    assert (st_["state"], st_["sequence"]) == ("manufactured", 1)
    rows = await ledger(s, future)
    assert rows[0]["event_id"] == manufactured_event_id(future) and rows[0]["type"] == "MANUFACTURED"
    await s.ok(future, "INCIDENT", "inspector")
    await s.ok(future, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    assert (await verified(s, future))["valid"]


async def test_concurrent_posts_of_one_id_never_answer_500(s: Stack) -> None:
    for _ in range(3):
        a, b = await s.battery(), await s.battery()
        eid = str(uuid.uuid4())
        results = await asyncio.gather(
            s.post(a, "INCIDENT", "inspector", event_id=eid),
            s.post(b, "INCIDENT", "inspector", event_id=eid),
            s.post(a, "INCIDENT", "inspector", event_id=eid, occurred_at=None),
        )
        codes = sorted(r.status_code for r in results)
        assert 500 not in codes and codes.count(201) >= 1, [r.text for r in results]
        assert set(codes) <= {201, 409}, [r.text for r in results]
        for r in results:
            if r.status_code == 409:
                assert r.json()["code"] == "event-id-conflict"
        total = len(await ledger(s, a)) + len(await ledger(s, b))
        assert total == 3  # two geneses and the one event the ID stands for


async def test_declaring_an_id_two_posters_used_on_one_battery(s: Stack) -> None:
    bid = await s.battery()
    eid = str(uuid.uuid4())
    await s.ok(bid, "INCIDENT", "inspector", event_id=eid)
    await s.ok(bid, "INCIDENT", "manufacturer", event_id=eid)
    declare = {"declared_event_id": eid, "reason": "incorrect_data"}
    # Each poster declares its own.
    mine = await s.ok(bid, "ERROR_DECLARED", "inspector", data=declare)
    assert mine["sequence"] == 4
    rows = await ledger(s, bid)
    assert rows[-1]["data"]["declared_event_id"] == eid
    # An authority must say whose.
    body = refused(await s.post(bid, "ERROR_DECLARED", "ministry", data=declare), 422, "validation-error")
    named(body, "data.declared_actor")
    assert len(await ledger(s, bid)) == 4
    await s.ok(bid, "ERROR_DECLARED", "ministry", data={**declare, "declared_actor": "LGES"})
    # Someone else's ID on another battery is unknown to a non-authority.
    other = await s.battery()
    refused(await s.post(other, "ERROR_DECLARED", "oem", data=declare), 404, "unknown-event")


# ---- 8. time and numbers ----
async def test_a_bystanders_future_dated_incident_does_not_block_the_custodian(s: Stack) -> None:
    bid = await s.battery()
    ahead = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    await s.ok(bid, "INCIDENT", "inspector", occurred_at=ahead)
    moved = await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]})
    assert moved["custodian"] == ORGS["oem"]


async def test_occurred_at_beyond_the_skew_is_refused(s: Stack) -> None:
    bid = await s.battery()
    ahead = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    body = refused(await s.post(bid, "INCIDENT", "manufacturer", occurred_at=ahead), 422, "validation-error")
    assert {"field": "occurred_at", "rule": "not-in-future"}.items() <= body["errors"][0].items()
    assert len(await ledger(s, bid)) == 1


async def test_the_skew_is_a_setting(make_settings, token) -> None:
    async with stack(make_settings, token, occurred_at_max_ahead_s=90.0) as wide:
        bid = await wide.battery()
        await wide.ok(
            bid, "INCIDENT", "manufacturer", occurred_at=(datetime.now(UTC) + timedelta(seconds=60)).isoformat()
        )


async def _post_raw(s: Stack, battery_id: str, etype: str, role: str, data_json: str) -> httpx.Response:
    head = orjson.dumps(
        {"event_id": str(uuid.uuid4()), "battery_id": battery_id, "type": etype, "occurred_at": datetime.now(UTC)}
    )
    body = head[:-1] + b', "data": ' + data_json.encode() + b"}"  # the data as sent, Infinity and all
    headers = {**s.as_role(role), "content-type": "application/json"}
    return await s.events.post("/v1/events", content=body, headers=headers)


@pytest.mark.parametrize(
    ("data_json", "field"),
    [
        ('{"soh_pct": 90.0, "cycle_count": 18446744073709551616}', "data.cycle_count"),
        ('{"soh_pct": 90.0, "cycle_count": 9007199254740993}', "data.cycle_count"),
        ('{"soh_pct": 90.0, "cycle_count": -1}', "data.cycle_count"),
        ('{"soh_pct": Infinity, "cycle_count": 1}', "data.soh_pct"),
        ('{"soh_pct": NaN, "cycle_count": 1}', "data.soh_pct"),
        ('{"soh_pct": -Infinity, "cycle_count": 1}', "data.soh_pct"),
        ('{"soh_pct": 100.5, "cycle_count": 1}', "data.soh_pct"),
    ],
)
async def test_out_of_range_and_non_finite_numbers_are_422_naming_the_field(
    s: Stack, data_json: str, field: str
) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    before = await s.state(bid)
    body = refused(await _post_raw(s, bid, "INSPECTED", "inspector", data_json), 422, "validation-error")
    named(body, field)
    assert await s.state(bid) == before


async def collected_at_recycler(s: Stack, model_id: str = "NCM-PACK-77") -> str:
    bid = await removed(s, model_id, consignee=ORGS["collector"])
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["recycler"]})
    return bid


async def test_huge_floats_are_refused_and_the_largest_legal_one_verifies(s: Stack) -> None:
    # A battery registered as heavy as the largest legal number, so that input mass is plausible for it.
    heavy = {"id": "HEAVY-PACK", "kind": "pack", "chemistry": "NCM", "rated_capacity_ah": 1, "nominal_voltage_v": 1}
    heavy |= {"rated_energy_kwh": 1, "mass_kg": FLOAT_MAX}
    r = await s.registry.post("/v1/models", json=heavy, headers=s.as_role("manufacturer"))
    assert r.status_code == 201, r.text
    bid = await collected_at_recycler(s, "HEAVY-PACK")
    huge = {**DATA["RECYCLED"], "input_mass_kg": 1e20, "black_mass_kg": 1e19}
    body = refused(await s.post(bid, "RECYCLED", "recycler", data=huge), 422, "validation-error")
    named(body, "data.input_mass_kg")
    edge = {
        "process": "hydrometallurgy",
        "input_mass_kg": FLOAT_MAX,
        "black_mass_kg": 123456789012345.6,
        "recovered_kg": {"lithium": 5e-324, "nickel": 1e-7, "cobalt": -0.0},
    }
    await s.ok(bid, "RECYCLED", "recycler", data=edge)
    assert (await verified(s, bid))["valid"]


# ---- the hash chain round-trips every value it accepts ----
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_kg = st.floats(min_value=0, max_value=FLOAT_MAX, allow_nan=False, allow_infinity=False)
_events = st.fixed_dictionaries(
    {
        "soh": st.floats(min_value=0, max_value=100, allow_nan=False),
        "cycles": st.integers(min_value=0, max_value=INT_MAX),
        "description": _text,
        "site": st.text(max_size=20, alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
        # Within the plausible band (25 %) of the test battery's registered 477 kg.
        "input": st.floats(min_value=477 * 0.75, max_value=477 * 1.25, allow_nan=False),
        "share": st.floats(min_value=0, max_value=1),
        "recovered": st.dictionaries(st.sampled_from(["lithium", "nickel", "cobalt", "manganese", "lead"]), _kg),
    }
)


async def _one_life(s: Stack, g: dict[str, Any]) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": g["soh"], "cycle_count": g["cycles"]})
    incident = {"kind": "other", "severity": "low", "description": g["description"]}
    r = await s.post(bid, "INCIDENT", "inspector", data=incident, location={"site": g["site"], "region": "KR-11"})
    assert r.status_code == 201, r.text
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["recycler"]})
    recycled = {
        "process": "hydrometallurgy",
        "input_mass_kg": g["input"],
        "black_mass_kg": g["input"] * g["share"],
        "recovered_kg": g["recovered"],
    }
    await s.ok(bid, "RECYCLED", "recycler", data=recycled)
    check = await verified(s, bid)
    assert check["valid"] and check["events"] == 9, (check, repr(g))


async def test_generated_legal_events_keep_verify_valid(s: Stack) -> None:
    """Hypothesis drives the posts from a worker thread; the requests run on the test's loop."""
    loop = asyncio.get_running_loop()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_events)
    def prop(g: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(_one_life(s, g), loop).result(timeout=60)

    await asyncio.to_thread(prop)


async def test_registration_body_too_keeps_numbers_in_range(s: Stack) -> None:
    body = battery_body(materials_kg={"lithium": 1e20})
    r = await s.registry.post("/v1/batteries", json=body, headers=s.as_role("manufacturer"))
    assert r.status_code == 422, r.text
