"""Implausible reports, tried over HTTP the way a participant who wants its figures to look better would.

| attack | before | now |
|---|---|---|
| a recycler reports more lithium recovered than the battery contained | 201, counted in the recovery rate | 422 `implausible-recovery` naming material, recovered, contained, tolerance, limit |
| ... exactly at the tolerance, or as a string of a number | 201 | 201 at the limit; the string is read as its number and refused above it |
| black mass above the input mass | 422 `validation-error` | 422 `implausible-black-mass` with both masses |
| a single battery's input mass far from its registered mass | 201 | 422 `implausible-input-mass` (band ±25 %, `BT_EVENTS_PLAUSIBILITY_INPUT_MASS_BAND_PCT`) |
| SoH rising without remanufacturing; a cycle count falling | 201 | 422 `implausible-soh-rise` / `implausible-cycle-count` with the previous reading and its event |
| a repurposed capacity above the original rating | 201 | 422 `implausible-capacity` |
| NaN, 1e300, negative kg | 422 | 422 `validation-error` naming the field (unchanged) |
| a battery with no registered content | accepted silently | accepted, the ledger event flagged `unchecked` |
| a recycling report for a battery whose registration (its content) has not reached the events service yet | accepted, flagged `unchecked` for good | 503 `registration-pending` + Retry-After, nothing stored; the same request once it has arrived is checked against the content |

Every refusal leaves the battery's state and ledger as they were."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from shared.db import asyncpg_dsn
from tests.conftest import eventually
from tests.events_helpers import DATA, ORGS, Stack, stack
from tests.factories import battery_body

CONTENT = {"lithium": 8.0, "nickel": 40.0, "cobalt": 5.0, "manganese": 4.5, "copper": 20.0, "graphite": 50.0}


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token, streams=True) as st_:
        yield st_


async def registered(
    s: Stack, db_url: str, materials: dict[str, float] | None = None, *, read_through: bool = False
) -> str:
    """A battery whose registration (its material content) the events service has received from the stream
    (with `read_through`, its ledger begun by an event before that)."""
    materials = CONTENT if materials is None else materials
    body = battery_body(materials_kg=materials)
    r = await s.registry.post("/v1/batteries", json=body, headers=s.as_role("manufacturer"))
    assert r.status_code == 201, r.text
    bid = str(body["id"])
    if read_through:
        await s.ok(bid, "INCIDENT", "inspector")
    await wait_for_facts(db_url, bid, '"lithium"' if materials else '"mass_kg": 477')
    return bid


async def wait_for_facts(db_url: str, bid: str, needle: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:

        async def arrived() -> str | None:
            facts = await conn.fetchval("SELECT facts::text FROM events.battery_state WHERE battery_id = $1", bid)
            return facts if facts is not None and needle in facts else None

        return str(await eventually(arrived, timeout_s=30))
    finally:
        await conn.close()


async def at_recycler(s: Stack, bid: str) -> None:
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["recycler"]})


async def snapshot(s: Stack, bid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))
    assert r.status_code == 200, r.text
    return await s.state(bid), list(r.json()["items"])


async def refused(s: Stack, bid: str, r: httpx.Response, code: str, before: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    body = dict(r.json())
    assert body["code"] == code and body["type"].endswith("/" + code), body
    assert body["errors"][0]["rule"] == body["rule"] == code.removeprefix("implausible-")
    assert await snapshot(s, bid) == before  # a refused report changes nothing
    return body


def recycled(inp: float = 450.0, black: float = 180.0, **recovered: Any) -> dict[str, Any]:
    return {"process": "hydrometallurgy", "input_mass_kg": inp, "black_mass_kg": black, "recovered_kg": recovered}


# ---- one HTTP test per rule ----
async def test_recovered_kg_above_the_content_is_refused_and_exactly_at_the_tolerance_accepted(
    s: Stack, db_url: str
) -> None:
    bid = await registered(s, db_url)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    limit = 8.0 * 1.05
    over = recycled(lithium=math.nextafter(limit, math.inf), copper=20.0)
    body = await refused(s, bid, await s.post(bid, "RECYCLED", "recycler", data=over), "implausible-recovery", before)
    assert (body["material"], body["contained_kg"], body["tolerance_pct"], body["limit_kg"]) == (
        "lithium",
        8.0,
        5.0,
        limit,
    )
    assert body["recovered_kg"] == math.nextafter(limit, math.inf) and body["errors"][0]["field"] == (
        "data.recovered_kg.lithium"
    )
    # Copper is in the content now, so its recovery is checked too.
    copper = recycled(copper=21.5)
    assert (
        await refused(s, bid, await s.post(bid, "RECYCLED", "recycler", data=copper), "implausible-recovery", before)
    )["material"] == "copper"
    done = await s.ok(bid, "RECYCLED", "recycler", data=recycled(lithium=limit, copper=21.0))
    assert done["state"] == "recycled"
    _, events = await snapshot(s, bid)
    assert "unchecked" not in events[-1]["data"]


async def test_black_mass_above_the_input_is_refused(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    r = await s.post(bid, "RECYCLED", "recycler", data=recycled(inp=450.0, black=450.001))
    body = await refused(s, bid, r, "implausible-black-mass", before)
    assert (body["black_mass_kg"], body["input_mass_kg"]) == (450.001, 450.0)
    await s.ok(bid, "RECYCLED", "recycler", data=recycled(inp=450.0, black=450.0))


async def test_input_mass_outside_the_band_of_the_registered_mass_is_refused(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    body = await refused(
        s,
        bid,
        await s.post(bid, "RECYCLED", "recycler", data=recycled(inp=357.7, black=0)),
        "implausible-input-mass",
        before,
    )
    assert (body["registered_mass_kg"], body["band_pct"], body["min_kg"], body["max_kg"]) == (
        477.0,
        25.0,
        357.75,
        596.25,
    )
    await s.ok(bid, "RECYCLED", "recycler", data=recycled(inp=357.75, black=0))


async def test_soh_rising_without_remanufacturing_is_refused_and_after_it_accepted(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    first = await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 80.0, "cycle_count": 900})
    before = await snapshot(s, bid)
    r = await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": 83.5, "cycle_count": 950})
    body = await refused(s, bid, r, "implausible-soh-rise", before)
    assert (body["soh_pct"], body["previous_soh_pct"], body["previous_event_id"], body["margin_pct"]) == (
        83.5,
        80.0,
        first["event_id"],
        3.0,
    )
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 83.0, "cycle_count": 950})  # within the margin
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    before = await snapshot(s, bid)
    r = await s.post(bid, "GRADED", "assessor", data={"soh_pct": 90.0, "grade": "remanufacture"})
    await refused(s, bid, r, "implausible-soh-rise", before)
    await s.ok(bid, "GRADED", "assessor", data={"soh_pct": 78.0, "grade": "remanufacture"})
    await s.ok(bid, "TRANSFERRED", "assessor", data={"to": ORGS["remanufacturer"]})
    await s.ok(bid, "REMANUFACTURED", "remanufacturer")
    await s.ok(bid, "SAFETY_INSPECTED", "certifier")
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 97.0, "cycle_count": 950})  # new cells read higher


async def test_a_falling_cycle_count_is_refused(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    first = await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 90.0, "cycle_count": 420})
    before = await snapshot(s, bid)
    r = await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": 89.0, "cycle_count": 419})
    body = await refused(s, bid, r, "implausible-cycle-count", before)
    assert (body["cycle_count"], body["previous_cycle_count"], body["previous_event_id"]) == (
        419,
        420,
        first["event_id"],
    )
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 89.0, "cycle_count": 420})


async def test_a_repurposed_capacity_above_the_original_rating_is_refused(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "REMOVED", "dismantler")
    await s.ok(bid, "COLLECTED", "collector")
    await s.ok(bid, "TRANSFERRED", "collector", data={"to": ORGS["assessor"]})
    await s.ok(bid, "GRADED", "assessor", data={"soh_pct": 70.0, "grade": "reuse"})
    await s.ok(bid, "TRANSFERRED", "assessor", data={"to": ORGS["repurposer"]})
    before = await snapshot(s, bid)
    r = await s.post(bid, "REPURPOSED", "repurposer", data={"new_application": "ESS", "rated_capacity": 77.41})
    body = await refused(s, bid, r, "implausible-capacity", before)
    assert (body["rated_capacity_kwh"], body["original_rated_energy_kwh"]) == (77.41, 77.4)
    await s.ok(bid, "REPURPOSED", "repurposer", data={"new_application": "ESS", "rated_capacity": 77.4})


async def test_soh_outside_0_to_100_is_refused(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    before = await snapshot(s, bid)
    for soh in (100.0001, -0.5):
        r = await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": soh, "cycle_count": 1})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "data.soh_pct", r.text
    assert await snapshot(s, bid) == before


# ---- attacks at the edges ----
async def raw(s: Stack, bid: str, etype: str, role: str, data_json: str) -> httpx.Response:
    body = (
        f'{{"event_id": "{uuid.uuid4()}", "battery_id": "{bid}", "type": "{etype}", '
        f'"occurred_at": "{datetime.now(UTC).isoformat()}", "data": {data_json}}}'
    )
    headers = {**s.as_role(role), "content-type": "application/json"}
    return await s.events.post("/v1/events", content=body.encode(), headers=headers)


@pytest.mark.parametrize(
    ("recovered_json", "field"),
    [
        ('{"lithium": NaN}', "data.recovered_kg.lithium"),
        ('{"lithium": Infinity}', "data.recovered_kg.lithium"),
        ('{"lithium": 1e300}', "data.recovered_kg.lithium"),
        ('{"lithium": -8.0}', "data.recovered_kg.lithium"),
        ('{"unobtainium": 1.0}', "data.recovered_kg.unobtainium"),
        ('{"lithium": "lots"}', "data.recovered_kg.lithium"),
    ],
)
async def test_non_numbers_and_negative_kg_are_refused_naming_the_field(
    s: Stack, db_url: str, recovered_json: str, field: str
) -> None:
    bid = await registered(s, db_url)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    data = f'{{"process": "hydro", "input_mass_kg": 450, "black_mass_kg": 100, "recovered_kg": {recovered_json}}}'
    r = await raw(s, bid, "RECYCLED", "recycler", data)
    assert r.status_code == 422 and r.json()["code"] == "validation-error", r.text
    assert field in {e["field"] for e in r.json()["errors"]}, r.text
    assert await snapshot(s, bid) == before


async def test_a_number_sent_as_a_string_is_checked_as_the_number(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    r = await s.post(bid, "RECYCLED", "recycler", data=recycled(inp="450", black="100", lithium="9.5"))
    body = await refused(s, bid, r, "implausible-recovery", before)
    assert (body["recovered_kg"], body["contained_kg"]) == (9.5, 8.0)
    r = await s.post(bid, "RECYCLED", "recycler", data=recycled(inp="450", black="460"))
    await refused(s, bid, r, "implausible-black-mass", before)


async def test_a_battery_without_registered_content_is_accepted_and_flagged_unchecked(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url, materials={})
    await at_recycler(s, bid)
    await s.ok(bid, "RECYCLED", "recycler", data=recycled(lithium=99.0, copper=40.0))
    _, events = await snapshot(s, bid)
    assert events[-1]["type"] == "RECYCLED" and events[-1]["data"]["unchecked"] == ["recovery"]
    assert events[-1]["data"]["recovered_kg"]["lithium"] == 99.0
    r = await s.events.get(f"/v1/batteries/{bid}/verify")
    assert r.json()["valid"], r.text


async def test_a_batch_with_one_implausible_report_stores_nothing(s: Stack, db_url: str) -> None:
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    before = await snapshot(s, bid)

    def inspected(soh: float, cycles: int) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "battery_id": bid,
            "type": "INSPECTED",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"soh_pct": soh, "cycle_count": cycles},
        }

    batch = {"events": [inspected(90.0, 100), inspected(89.0, 99)]}
    r = await s.events.post("/v1/events/batch", json=batch, headers=s.as_role("inspector"))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["index"] == 1 and r.json()["errors"][0]["code"] == "implausible-cycle-count"
    assert await snapshot(s, bid) == before


async def test_a_ledger_begun_before_the_registration_arrived_gets_the_content_then(s: Stack, db_url: str) -> None:
    """The read-through (public fields) knows no content; the stream's registration completes it."""
    bid = await registered(s, db_url, read_through=True)
    await at_recycler(s, bid)
    before = await snapshot(s, bid)
    await refused(
        s, bid, await s.post(bid, "RECYCLED", "recycler", data=recycled(nickel=43.0)), "implausible-recovery", before
    )


async def test_a_report_before_the_registration_arrived_waits_for_it_instead_of_going_unchecked(
    make_settings, token, db_url: str
) -> None:
    """The registry relays the registration, but the events service's consumers are held off: its ledger begins
    from the public read (no content). A recycler racing the stream gets 503 `registration-pending` (stores
    nothing) instead of an event flagged `unchecked` for good; once a consumer has brought the registration, the
    same request is checked against the content: over it refused, within it accepted and not flagged."""
    from services.events.app import create_app as create_events
    from services.events.settings import EventsSettings
    from tests.conftest import serve

    async with stack(make_settings, token, streams=True, consumers_enabled=False) as s:
        bid = await registered_without_waiting(s)
        await at_recycler(s, bid)
        before = await snapshot(s, bid)
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=s.events.app), base_url="http://testserver")
        body = s.body(bid, "RECYCLED", data=recycled(lithium=9.0))
        async with plain:
            for path, sent in (("/v1/events", body), ("/v1/events/batch", {"events": [body]})):
                r = await plain.post(path, json=sent, headers=s.as_role("recycler"))
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1" and r.headers["content-type"] == "application/problem+json"
                problem = r.json()
                assert problem["code"] == "registration-pending", problem
                assert problem["errors"][0]["field"] == "data.recovered_kg.lithium", problem
                assert "lithium" not in str(await snapshot(s, bid)) and await snapshot(s, bid) == before
            # A consumer (another events process on the same database) brings the registration.
            settings = make_settings(EventsSettings, relay_enabled=False, log_enabled=False, verifier_enabled=False)
            async with serve(create_events(settings)):
                await wait_for_facts(db_url, bid, '"lithium"')
            r = await plain.post("/v1/events", json=body, headers=s.as_role("recycler"))
            assert r.status_code == 422 and r.json()["code"] == "implausible-recovery", r.text
            assert r.json()["contained_kg"] == 8.0
            fine = {**body, "event_id": str(uuid.uuid4()), "data": recycled(lithium=8.0)}
            r = await plain.post("/v1/events", json=fine, headers=s.as_role("recycler"))
            assert r.status_code == 201, r.text
        _, events = await snapshot(s, bid)
        assert events[-1]["type"] == "RECYCLED" and "unchecked" not in events[-1]["data"]


async def registered_without_waiting(s: Stack) -> str:
    body = battery_body(materials_kg=CONTENT)
    r = await s.registry.post("/v1/batteries", json=body, headers=s.as_role("manufacturer"))
    assert r.status_code == 201, r.text
    return str(body["id"])


def test_the_edge_data_is_the_helpers_default() -> None:
    """The default RECYCLED of the helpers stays plausible for the test battery (so other tests are unaffected)."""
    d = DATA["RECYCLED"]
    assert 477 * 0.75 <= d["input_mass_kg"] <= 477 * 1.25 and d["black_mass_kg"] <= d["input_mass_kg"]
    assert all(kg <= CONTENT[m] for m, kg in d["recovered_kg"].items())


async def test_declaring_the_last_reading_in_error_does_not_clear_the_way_for_a_lower_count(
    s: Stack, db_url: str
) -> None:
    """An inspector who wants a lower cycle count declares its last reading in error: the reading before counts."""
    bid = await registered(s, db_url)
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 90.0, "cycle_count": 500})
    last = await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 89.0, "cycle_count": 600})
    declaration = {"declared_event_id": last["event_id"], "reason": "incorrect_data"}
    await s.ok(bid, "ERROR_DECLARED", "inspector", data=declaration)
    before = await snapshot(s, bid)
    r = await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": 88.0, "cycle_count": 100})
    body = await refused(s, bid, r, "implausible-cycle-count", before)
    assert body["previous_cycle_count"] == 500
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 88.0, "cycle_count": 550})  # a true correction
