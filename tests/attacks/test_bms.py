"""BMS readings (BMS_REPORTED) tried over HTTP the way a participant who wants a battery to look better, or worse,
would: reporting for a battery it has no part in, absurd numbers, and totals that go backwards.

| attack | now |
|---|---|
| another manufacturer, an OEM or a collector that does not hold the battery reports readings for it | 409 `not-custodian` naming the custodian; nothing stored |
| an inspector (who reads batteries in service) reports on one taken out of service | 409 `not-custodian` |
| a certifier or a ministry reports readings | 403 `forbidden` |
| the inspector that reported tries to read the battery's ledger | 403 `not-handled`: a report proves no relation |
| SoC 150 %, SoH -1, NaN, 1e300 kWh, 10^9 minutes in the heat, a 5,000 % resistance increase, an unknown field, no reading at all | 422 `validation-error` naming the field |
| 5,000 Ah remaining on a 222 Ah pack | 422 `implausible-remaining` with the rated value, margin and limit |
| SoH rising above an inspection's without remanufacturing | 422 `implausible-soh-rise` |
| a cycle count below an inspection's, or an inspection's below a BMS's | 422 `implausible-cycle-count` |
| energy throughput, deep-discharge events or time in extreme temperatures going down | 422 `implausible-total` with the previous reading and its event |

Every refusal leaves the battery's state and ledger as they were."""

from __future__ import annotations

import math
from typing import Any

import httpx
import orjson
import pytest

from tests.events_helpers import ORGS, Stack, stack


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st_:
        yield st_


async def snapshot(s: Stack, bid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    r = await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))
    assert r.status_code == 200, r.text
    return await s.state(bid), list(r.json()["items"])


def refused(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code, body
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


async def in_service(s: Stack) -> str:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    return bid


READING = {"soc_pct": 60.0, "energy_throughput_kwh": 1000.0}


@pytest.mark.parametrize(("role", "org"), [("manufacturer", "SDI"), ("oem", "KIA"), ("collector", ORGS["collector"])])
async def test_a_company_that_does_not_hold_the_battery_reports_nothing(s: Stack, role: str, org: str) -> None:
    bid = await in_service(s)
    before = await snapshot(s, bid)
    body = refused(await s.post(bid, "BMS_REPORTED", role, org=org, data=READING), 409, "not-custodian")
    assert body["custodian"] == ORGS["oem"]
    assert await snapshot(s, bid) == before
    # The holder, the battery's own manufacturer and an inspector in service do report.
    for reporter in ("oem", "manufacturer", "inspector"):
        await s.ok(bid, "BMS_REPORTED", reporter, data=READING)


async def test_an_inspector_reports_only_while_the_battery_is_in_service(s: Stack) -> None:
    bid = await in_service(s)
    await s.ok(bid, "REMOVED", "dismantler")
    before = await snapshot(s, bid)
    refused(await s.post(bid, "BMS_REPORTED", "inspector", data=READING), 409, "not-custodian")
    assert await snapshot(s, bid) == before
    await s.ok(bid, "BMS_REPORTED", "dismantler", data=READING)  # its custodian now


@pytest.mark.parametrize("role", ["certifier", "ministry"])
async def test_roles_that_read_no_bms_are_forbidden(s: Stack, role: str) -> None:
    bid = await in_service(s)
    before = await snapshot(s, bid)
    refused(await s.post(bid, "BMS_REPORTED", role, data=READING), 403, "forbidden")
    assert await snapshot(s, bid) == before


async def test_a_report_buys_no_read_access(s: Stack) -> None:
    bid = await in_service(s)
    await s.ok(bid, "BMS_REPORTED", "inspector", data=READING)
    for path in (f"/v1/batteries/{bid}/events", f"/v1/batteries/{bid}/state"):
        r = await s.events.get(path, headers=s.as_role("inspector"))
        assert r.status_code == 403 and r.json()["code"] == "not-handled", path


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"soc_pct": 150}, "data.soc_pct"),
        ({"soh_pct": -1}, "data.soh_pct"),
        ('{"soce_pct": NaN}', "data.soce_pct"),
        ('{"soc_pct": Infinity}', "data.soc_pct"),
        ({"energy_throughput_kwh": 1e300}, "data.energy_throughput_kwh"),
        ({"capacity_throughput_ah": -5}, "data.capacity_throughput_ah"),
        (
            {"extreme_temperature_min": {"above": 10**9, "below": 0, "charging_above": 0, "charging_below": 0}},
            "data.extreme_temperature_min.above",
        ),
        ({"internal_resistance_increase_pct": {"pack": 5000}}, "data.internal_resistance_increase_pct.pack"),
        ({"internal_resistance_ohm": {"pack": 0}}, "data.internal_resistance_ohm.pack"),
        ({"soc_pct": 50, "soh_pct_raw": 120}, "data.soh_pct_raw"),
        ({}, "data"),
    ],
)
async def test_absurd_numbers_are_422_naming_the_field(s: Stack, data: dict[str, Any] | str, field: str) -> None:
    bid = await in_service(s)
    before = await snapshot(s, bid)
    if isinstance(data, str):  # sent as written: NaN and Infinity are no JSON, but parsers take them
        body = orjson.dumps(Stack.body(bid, "BMS_REPORTED", data={})).replace(b'"data":{}', f'"data":{data}'.encode())
        headers = s.as_role("oem") | {"content-type": "application/json"}
        r = await s.events.post("/v1/events", content=body, headers=headers)
    else:
        r = await s.post(bid, "BMS_REPORTED", "oem", data=data)
    refused(r, 422, "validation-error", field)
    assert await snapshot(s, bid) == before


async def test_more_remaining_than_the_battery_was_rated_for_is_implausible(s: Stack) -> None:
    bid = await in_service(s)  # NCM-PACK-77: 222 Ah, 77.4 kWh
    before = await snapshot(s, bid)
    body = refused(
        await s.post(bid, "BMS_REPORTED", "oem", data={"remaining_capacity_ah": 5000.0}),
        422,
        "implausible-remaining",
        "data.remaining_capacity_ah",
    )
    assert (body["rated"], body["margin_pct"], body["value"]) == (222.0, 10.0, 5000.0)
    assert math.isclose(body["limit"], 244.2)
    refused(
        await s.post(bid, "BMS_REPORTED", "oem", data={"remaining_energy_kwh": 90.0}),
        422,
        "implausible-remaining",
        "data.remaining_energy_kwh",
    )
    assert await snapshot(s, bid) == before
    await s.ok(bid, "BMS_REPORTED", "oem", data={"remaining_capacity_ah": 230.0, "remaining_energy_kwh": 80.0})


async def test_soh_and_cycles_are_checked_against_inspections_and_reports_alike(s: Stack) -> None:
    bid = await in_service(s)
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 82.0, "cycle_count": 700})
    before = await snapshot(s, bid)
    body = refused(
        await s.post(bid, "BMS_REPORTED", "oem", data={"soh_pct": 95.0}), 422, "implausible-soh-rise", "data.soh_pct"
    )
    assert body["previous_soh_pct"] == 82.0
    refused(
        await s.post(bid, "BMS_REPORTED", "manufacturer", data={"cycle_count": 650}),
        422,
        "implausible-cycle-count",
        "data.cycle_count",
    )
    assert await snapshot(s, bid) == before
    await s.ok(bid, "BMS_REPORTED", "oem", data={"soh_pct": 81.0, "cycle_count": 760})
    # ... and an inspection after the report is checked against the report.
    refused(
        await s.post(bid, "INSPECTED", "inspector", data={"soh_pct": 80.0, "cycle_count": 740}),
        422,
        "implausible-cycle-count",
        "data.cycle_count",
    )


@pytest.mark.parametrize(
    ("first", "then", "field"),
    [
        ({"energy_throughput_kwh": 41250.0}, {"energy_throughput_kwh": 100.0}, "data.energy_throughput_kwh"),
        ({"deep_discharge_events": 4}, {"deep_discharge_events": 0}, "data.deep_discharge_events"),
        (
            {"extreme_temperature_min": {"above": 340, "below": 1260, "charging_above": 45, "charging_below": 120}},
            {"extreme_temperature_min": {"above": 340, "below": 1260, "charging_above": 45, "charging_below": 0}},
            "data.extreme_temperature_min.charging_below",
        ),
    ],
)
async def test_a_running_total_going_down_is_implausible(
    s: Stack, first: dict[str, Any], then: dict[str, Any], field: str
) -> None:
    bid = await in_service(s)
    earlier = await s.ok(bid, "BMS_REPORTED", "manufacturer", data=first)
    before = await snapshot(s, bid)
    body = refused(await s.post(bid, "BMS_REPORTED", "oem", data=then), 422, "implausible-total", field)
    assert body["total"] == field.removeprefix("data.")
    assert body["previous_event_id"] == earlier["event_id"]
    assert await snapshot(s, bid) == before
    # In Korean, the same code and numbers.
    r = await s.events.post(
        "/v1/events",
        json=Stack.body(bid, "BMS_REPORTED", data=then),
        headers=s.as_role("oem") | {"accept-language": "ko"},
    )
    assert r.status_code == 422 and r.json()["code"] == "implausible-total"
    assert r.json()["title"] == "타당하지 않은 누적값" and earlier["event_id"] in r.json()["detail"]
