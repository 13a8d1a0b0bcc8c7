"""A battery management system's readings (BMS_REPORTED, EU 2023/1542 Art. 14 and Annex VII) in the passports:
the pure mapping of the newest readings onto the Battery Pass 1.2 `batteryCondition` and the Catena-X 6.1
`performance/dynamic` (checked against the schemas as published), the EPCIS form of a report both ways, and over
HTTP through the real services and Kafka: readings posted at the events service, the passport fetched from the
portal, a reading declared in error not counting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.events.lifecycle.schemas import DATA_ADAPTERS, BmsReportedData, ExtremeTemperatureMinutes
from services.portal.passports import condition
from shared.contract import epcis as voc
from shared.contract.lifecycle import BMS_NUMBERS, EXTREME_TEMPERATURE, EventType
from tests.events_helpers import ORGS, Stack, stack
from tests.factories import battery_body
from tests.passport_helpers import (
    BATTERY_PASS_DECLARATION,
    DECLARED_MODEL,
    assert_valid_aspects,
    catenax_declaration,
    verdict,
)

#: Everything a BMS reports, in the standards' units.
FULL: dict[str, Any] = {
    "soh_pct": 88.0,
    "soce_pct": 90.5,
    "soc_pct": 64.0,
    "cycle_count": 610,
    "remaining_capacity_ah": 196.4,
    "remaining_energy_kwh": 69.9,
    "capacity_fade_pct": 11.5,
    "power_fade_pct": 7.2,
    "remaining_power_w": [{"at_soc_pct": 20.0, "power_w": 121000.0}, {"at_soc_pct": 80.0, "power_w": 168000.0}],
    "remaining_round_trip_efficiency_pct": 93.1,
    "round_trip_efficiency_fade_pct": 2.0,
    "self_discharge_rate_pct_per_month": 2.4,
    "self_discharge_evolution_pct": 20.0,
    "internal_resistance_ohm": {"pack": 0.094, "cell": 0.0011},
    "internal_resistance_increase_pct": {"pack": 17.5, "module": 15.0, "cell": 16.0},
    "energy_throughput_kwh": 41250.0,
    "capacity_throughput_ah": 118000.0,
    "deep_discharge_events": 2,
    "overcharge_events": 0,
    "extreme_temperature_min": {"above": 340, "below": 1260, "charging_above": 45, "charging_below": 120},
}
T = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def ev(seq: int, etype: str, data: dict[str, Any], hours: float) -> dict[str, Any]:
    return {"sequence": seq, "type": etype, "data": data, "occurred_at": T + timedelta(hours=hours)}


# ---- the schema and the contract ----
def test_the_contracts_readings_are_the_schemas() -> None:
    assert set(BMS_NUMBERS) <= set(BmsReportedData.model_fields)
    assert set(ExtremeTemperatureMinutes.model_fields) == set(EXTREME_TEMPERATURE)
    names = {n.partition(".")[0] for n in voc.BMS_MEASUREMENTS} | set(voc.BMS_PER_COMPONENT) | {"remaining_power_w"}
    assert names == set(BmsReportedData.model_fields)  # every reading has its EPCIS form


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "at least one reading"),
        ({"soc_pct": 150}, "soc_pct"),
        ({"soh_pct": float("nan")}, "soh_pct"),
        ({"energy_throughput_kwh": -1}, "energy_throughput_kwh"),
        ({"energy_throughput_kwh": 1e300}, "energy_throughput_kwh"),
        ({"cycle_count": 2**64}, "cycle_count"),
        ({"internal_resistance_ohm": {}}, "internal_resistance_ohm"),
        ({"internal_resistance_increase_pct": {"pack": 5000}}, "internal_resistance_increase_pct.pack"),
        ({"extreme_temperature_min": {"above": 1}}, "extreme_temperature_min.below"),
        ({"extreme_temperature_min": {**FULL["extreme_temperature_min"], "above": 10**9}}, "extreme_temperature_min"),
        ({"remaining_power_w": [{"at_soc_pct": 80, "power_w": 1}] * 2}, "remaining_power_w"),
        ({"soc_pct": 50, "temperature_c": 31}, "temperature_c"),
    ],
)
def test_a_report_the_schema_refuses(data: dict[str, Any], field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc:
        DATA_ADAPTERS[EventType.BMS_REPORTED].validate_python(data)
    errors = exc.value.errors()
    assert any(field in ".".join(map(str, e["loc"])) or field in e["msg"] for e in errors), errors


def test_the_largest_report_fits_a_batch_item() -> None:
    """A report with every number at its longest still fits the per-event share of a batch body."""
    from services.events.lifecycle.router import BATCH_EVENT_BYTES

    longest = 999999999999999.9
    data: dict[str, Any] = {name: longest for name in BMS_NUMBERS}
    data |= {"cycle_count": 2**53, "deep_discharge_events": 2**53, "overcharge_events": 2**53, "soh_pct": 99.99999999}
    data |= {"remaining_power_w": [{"at_soc_pct": 99.999999999, "power_w": longest}] * 4}
    data |= {k: {c: longest for c in ("pack", "module", "cell")} for k in voc.BMS_PER_COMPONENT}
    data |= {"extreme_temperature_min": dict.fromkeys(EXTREME_TEMPERATURE, 26_000_000)}
    body = {
        "event_id": str(uuid.uuid4()),
        "battery_id": "X" * 24,
        "type": "BMS_REPORTED",
        "occurred_at": datetime.now(UTC).isoformat(),
        "location": {"site": "s" * 128, "region": "r" * 64},
        "data": data,
        "expected_sequence": 2**63 - 1,
    }
    assert len(orjson.dumps(body)) <= BATCH_EVENT_BYTES


# ---- the EPCIS form ----
def test_a_report_as_epcis_sensor_reports_and_back() -> None:
    from services.events.epcis.service import validate_document
    from services.portal.epcis.service import from_ledger

    row = {
        "event_id": str(uuid.uuid4()),
        "battery_id": "KR-B1",
        "sequence": 5,
        "type": "BMS_REPORTED",
        "occurred_at": T,
        "recorded_at": T,
        "actor": "HMC",
        "location": {"site": "Ulsan"},
        "data": FULL,
        "hash": "h" * 64,
    }
    body = from_ledger(row)["body"]
    assert (body["type"], body["action"], body["bizStep"]) == ("ObjectEvent", "OBSERVE", "sensor_reporting")
    (element,) = body["sensorElementList"]
    data, unreadable = voc.bms_data(element["sensorReport"])
    assert unreadable == [] and data == FULL
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"bt": voc.BT}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-05-01T09:00:00Z",
        "epcisBody": {"eventList": [{k: v for k, v in body.items() if not k.startswith("bt:")}]},
    }
    validate_document(document)  # the ratified EPCIS 2.0 JSON Schema takes it
    units = {r["type"].rsplit("/", 1)[1]: r["uom"] for r in element["sensorReport"]}
    assert units["RemainingEnergy"] == "KWH" and units["RemainingCapacity"] == "AMH" and units["StateOfCharge"] == "P1"
    assert units["RemainingPowerCapability"] == "WTT" and units["TimeAboveTemperatureLimit"] == "MIN"
    assert units["InternalResistance"] == "OHM"


def test_epcis_reports_we_cannot_read_are_named() -> None:
    m = voc.MEASUREMENT
    data, unreadable = voc.bms_data(
        [
            {"type": "Temperature", "value": 31.0, "uom": "CEL"},  # a logger's: not a BMS reading
            {"type": m + "RemainingEnergy", "value": 69900, "uom": "WHR"},
            {"type": m + "InternalResistance", "value": 0.09},
            {"type": m + "RemainingPowerCapability", "value": 1000.0},
            {"type": "btmeasurement:StateOfCharge", "value": 64.0},  # compact, no uom: ours
        ]
    )
    assert data == {"soc_pct": 64.0}
    assert (
        len(unreadable) == 3 and "KWH" in unreadable[0] and "component" in unreadable[1] and "bt:atSoC" in unreadable[2]
    )


# ---- the passport's condition, pure ----
def test_each_reading_is_its_newest_and_a_component_its_own() -> None:
    events = [
        ev(2, "BMS_REPORTED", {"soc_pct": 40.0, "internal_resistance_ohm": {"module": 0.03}}, 1),
        ev(3, "INSPECTED", {"soh_pct": 91.0, "cycle_count": 520}, 2),
        ev(4, "BMS_REPORTED", FULL, 3),
        ev(5, "INCIDENT", {"kind": "swelling", "severity": "low"}, 4),
        ev(6, "BMS_REPORTED", {"soc_pct": 70.0}, 2.5),  # measured before the full report, ledgered after
    ]
    r = condition.newest(events)
    assert (r["soc_pct"].value, r["soc_pct"].at) == (64.0, T + timedelta(hours=3))
    assert r["cycle_count"].value == 610 and r["internal_resistance_ohm.module"].value == 0.03
    negative = condition.negative_events(events, r)
    assert [n["negativeEvent"] for n in negative or []] == ["swelling (low)", "deep discharge events: 2"]
    assert (
        condition.negative_events([], condition.newest([ev(2, "BMS_REPORTED", {"deep_discharge_events": 0}, 1)])) == []
    )
    assert condition.negative_events([], {}) is None  # nothing says what they were


def test_all_readings_make_both_condition_aspects_valid_as_published() -> None:
    readings = condition.newest([ev(2, "BMS_REPORTED", FULL, 0)])
    negative = condition.negative_events([], readings)
    bp = condition.battery_condition(readings, negative, 89.0)
    missing, other = verdict("performanceAndDurability", {"batteryCondition": bp})
    assert other == [] and missing == {"batteryTechicalProperties"}
    time = T.isoformat()
    assert bp["remainingEnergy"] == {"remainingEnergyalue": 69.9, "lastUpdate": time}  # the standard's spelling
    assert bp["temperatureInformation"] == {
        "timeExtremeHighTemp": 340,
        "timeExtremeLowTemp": 1260,
        "timeExtremeHighTempCharging": 45,
        "timeExtremeLowTempCharging": 120,
        "lastUpdate": time,
    }
    assert [
        (x["batteryComponent"], x["internalResistanceIncreaseValue"]) for x in bp["internalResistanceIncrease"]
    ] == [
        ("pack", 17.5),
        ("module", 15.0),
        ("cell", 16.0),
    ]
    dynamic = condition.catenax_dynamic(readings, negative)
    doc = {"performance": {"dynamic": dynamic}}
    missing, other = verdict("catenax", doc)
    assert other == [] and not any(p.startswith("performance/dynamic") for p in missing), missing
    assert dynamic["power"]["remaining"] == {"value": 168000.0, "time": time}  # at the highest state of charge
    assert dynamic["resistance"]["remaining"] == {
        "pack": {"value": 0.094, "time": time},
        "cell": {"value": 0.0011, "time": time},
    }
    assert dynamic["energy"]["throughput"]["value"] == 41250.0 and dynamic["selfDischargingRate"] == 2.4


def test_partial_readings_leave_out_what_no_reading_gave() -> None:
    readings = condition.newest([ev(2, "BMS_REPORTED", {"internal_resistance_increase_pct": {"pack": 3.0}}, 0)])
    dynamic = condition.catenax_dynamic(readings, None)
    missing, other = verdict("catenax", {"performance": {"dynamic": dynamic}})
    assert other == []
    assert {"performance/dynamic/resistance/increase/cell", "performance/dynamic/resistance/remaining"} <= missing
    assert "performance/dynamic/stateOfCharge" in missing
    assert condition.battery_condition({}, None, None) == {}


# ---- over HTTP: posted at the events service, read in the portal's passport ----
@pytest.fixture
async def world(make_settings, token):
    from tests.portal_helpers import portal_app, portal_settings

    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        model = {
            **DECLARED_MODEL,
            "passport": {"batterypass": BATTERY_PASS_DECLARATION, "catenax": catenax_declaration()},
        }
        r = await s.registry.post("/v1/models", json=model, headers=s.as_role("manufacturer"))
        assert r.status_code == 201, r.text
        yield s, portal


def ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


async def in_portal(s: Stack, portal: Any, bid: str) -> None:
    from tests.portal_helpers import wait_registered, wait_sequence

    admin = s.token("ops", "admin")
    await wait_registered(portal, admin, bid)
    await wait_sequence(portal, admin, bid, (await s.state(bid))["sequence"])


async def test_posted_readings_fill_the_passport_as_published_and_a_declared_one_does_not_count(world) -> None:
    s, portal = world
    body = battery_body(model_id=DECLARED_MODEL["id"])
    assert (await s.registry.post("/v1/batteries", json=body, headers=s.as_role("manufacturer"))).status_code == 201
    bid = str(body["id"])
    await s.ok(bid, "TRANSFERRED", "manufacturer", data={"to": ORGS["oem"]}, occurred_at=ago(10))
    await s.ok(bid, "INSTALLED", "oem", occurred_at=ago(9))
    # The manufacturer's BMS telemetry (it does not hold the battery), an inspection, the custodian's full report.
    early = {
        "soc_pct": 40.0,
        "cycle_count": 500,
        "internal_resistance_ohm": {"module": 0.03},
        "deep_discharge_events": 1,
    }
    await s.ok(bid, "BMS_REPORTED", "manufacturer", data=early, occurred_at=ago(8))
    await s.ok(bid, "INSPECTED", "inspector", data={"soh_pct": 91.0, "cycle_count": 520}, occurred_at=ago(7))
    full = await s.ok(bid, "BMS_REPORTED", "oem", data=FULL, occurred_at=ago(6))
    # An inspector's report, declared in error by it: it must not count.
    wrong_id = str(uuid.uuid4())
    await s.ok(bid, "BMS_REPORTED", "inspector", data={"soc_pct": 12.0}, event_id=wrong_id, occurred_at=ago(5))
    declaration = {"declared_event_id": wrong_id, "reason": "incorrect_data"}
    await s.ok(bid, "ERROR_DECLARED", "inspector", data=declaration, occurred_at=ago(4))
    st = await s.state(bid)
    assert (st["state"], st["custodian"], st["sequence"]) == ("in_service", ORGS["oem"], full["sequence"] + 2)
    await in_portal(s, portal, bid)

    p = (await portal.get(f"/v1/passports/{bid}", headers=s.as_role("manufacturer"))).json()
    assert p["access_level"] == "manufacturer" and p["restricted"] == {}
    assert_valid_aspects(p)
    # With the model's declaration and the BMS's readings, every aspect is complete and valid as published.
    assert p["unavailable"] == {}
    cond = p["aspects"]["performanceAndDurability"]["batteryCondition"]
    assert cond["stateOfCharge"]["stateOfChargeValue"] == 64.0  # the custodian's, not the declared 12
    assert cond["numberOfFullCycles"]["numberOfFullCyclesValue"] == 610
    assert cond["remainingCapacity"]["remainingCapacityValue"] == 196.4  # Ah
    assert cond["energyThroughput"] == 41250.0 and cond["capacityThroughput"]["capacityThroughputValue"] == 118000.0
    assert cond["negativeEvents"] == [
        {"negativeEvent": "deep discharge events: 2", "lastUpdate": cond["stateOfCharge"]["lastUpdate"]}
    ]
    assert cond["roundTripEfficiencyat50PerCentCycleLife"] == 89.0  # the model's rated value
    dynamic = p["catenax"]["performance"]["dynamic"]
    assert dynamic["stateOfCharge"]["value"] == 64.0 and dynamic["fullCycles"]["value"] == 610
    # A component's resistance is its newest reading: the module's came from the manufacturer's earlier report.
    assert {c: v["value"] for c, v in dynamic["resistance"]["remaining"].items()} == {
        "pack": 0.094,
        "module": 0.03,
        "cell": 0.0011,
    }
    assert dynamic["energy"] == {
        "soce": {"value": 90.5, "time": dynamic["energy"]["soce"]["time"]},
        "remaining": {"value": 69.9, "time": dynamic["energy"]["soce"]["time"]},
        "throughput": {"value": 41250.0, "time": dynamic["energy"]["soce"]["time"]},
    }
    # The history's head reads the newest SoH and cycle count, the BMS's after the inspection's.
    history = (await portal.get(f"/v1/batteries/{bid}/history", headers=s.as_role("manufacturer"))).json()
    assert (history["current"]["soh_pct"], history["current"]["cycle_count"]) == (88.0, 610)
    # The public passport withholds the condition (legitimate interest and up).
    public = (await portal.get(f"/v1/passports/{bid}")).json()
    assert "batteryCondition" not in public["aspects"]["performanceAndDurability"]
    assert "dynamic" not in public["catenax"]["performance"]
    assert public["restricted"]["performanceAndDurability"] == ["batteryCondition"]


@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st:
        yield st


async def test_a_sensor_report_captured_in_epcis_is_a_bms_report(s: Stack) -> None:
    bid = await s.battery()
    await s.transfer_to(bid, "oem")
    await s.ok(bid, "INSTALLED", "oem")
    m = voc.MEASUREMENT
    reports = [
        {"type": m + "StateOfCharge", "value": 55.5, "uom": "P1"},
        {"type": "btmeasurement:EnergyThroughput", "value": 1200.0, "uom": "KWH"},
        {"type": m + "InternalResistance", "value": 0.08, "uom": "OHM", "component": "btcomponent:pack"},
        {"type": m + "RemainingPowerCapability", "value": 150000.0, "uom": "WTT", "bt:atSoC": 80},
    ]

    def sensor_event(reports: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "ObjectEvent",
            "eventID": f"urn:uuid:{uuid.uuid4()}",
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "epcList": [f"https://batterytrace.kr/battery/{bid}"],
            "eventTime": datetime.now(UTC).isoformat(),
            "eventTimeZoneOffset": "+00:00",
            "sensorElementList": [{"sensorReport": reports}],
        }

    def document(*events: dict[str, Any]) -> dict[str, Any]:
        return {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", {"bt": voc.BT}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": datetime.now(UTC).isoformat(),
            "epcisBody": {"eventList": list(events)},
        }

    async def capture(doc: dict[str, Any]) -> dict[str, Any]:
        r = await s.events.post("/epcis/capture", json=doc, headers=s.as_role("oem"))
        assert r.status_code == 202, r.text
        return dict((await s.events.get(r.headers["location"], headers=s.as_role("oem"))).json())

    before = (await s.state(bid))["sequence"]
    logger = sensor_event([{"type": "Temperature", "value": 31.0, "uom": "CEL"}])  # not a BMS reading
    job = await capture(document(sensor_event(reports), logger))
    assert job["success"], job
    items = (await s.events.get(f"/v1/batteries/{bid}/events", headers=s.as_role("ministry"))).json()["items"]
    assert len(items) == before + 1  # the logger's report is an observation, stored but no lifecycle event
    last = items[-1]
    assert (last["type"], last["actor"], last["state_after"]) == ("BMS_REPORTED", ORGS["oem"], "in_service")
    assert last["data"] == {
        "soc_pct": 55.5,
        "energy_throughput_kwh": 1200.0,
        "internal_resistance_ohm": {"pack": 0.08},
        "remaining_power_w": [{"at_soc_pct": 80.0, "power_w": 150000.0}],
    }
    # A reading in another unit is refused, naming what it needs, and nothing is stored.
    job = await capture(document(sensor_event([{"type": m + "RemainingEnergy", "value": 69900, "uom": "WHR"}])))
    assert not job["success"] and job["errors"][0]["code"] == "epcis-mapping", job
    assert "KWH" in job["errors"][0]["detail"]
    # A running total that fell is the lifecycle's refusal, as over the native API.
    fell = [{"type": m + "EnergyThroughput", "value": 1000.0, "uom": "KWH"}]
    job = await capture(document(sensor_event(fell)))
    assert not job["success"] and job["errors"][0]["code"] == "implausible-total", job
    assert (await s.state(bid))["sequence"] == before + 1
