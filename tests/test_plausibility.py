"""The plausibility rules, driven directly: no database, no HTTP, milliseconds (DOMAIN.md, Plausibility)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.events.lifecycle import plausibility as p
from services.events.lifecycle.plausibility import Facts, Reading, Readings, Tolerances, Verdict, check, observe
from shared.contract.lifecycle import EventType

E = EventType
TOL = Tolerances(recovery_pct=5.0, input_mass_band_pct=25.0, soh_rise_pct=3.0)
PACK = Facts({"lithium": 8.0, "nickel": 40.0, "cobalt": 5.0}, mass_kg=477.0, rated_energy_kwh=77.4)
PACK_AH = Facts(mass_kg=477.0, rated_energy_kwh=77.4, rated_capacity_ah=222.0)
THROUGHPUT = Readings(totals={"energy_throughput_kwh": Reading(500.0, "a")})


def recycled(inp: float = 450.0, black: float = 180.0, **recovered: float) -> dict[str, Any]:
    return {"process": "hydrometallurgy", "input_mass_kg": inp, "black_mass_kg": black, "recovered_kg": recovered}


def code(v: Verdict) -> str | None:
    return None if v.implausible is None else v.implausible.code


# ---- each rule, table-driven: (event type, data, facts, readings) → problem code or None, unchecked ----
CASES: list[tuple[str, EventType, dict[str, Any], Facts, Readings, str | None, tuple[str, ...]]] = [
    ("recovery within content", E.RECYCLED, recycled(lithium=8.0), PACK, Readings(), None, ()),
    ("recovery at the tolerance", E.RECYCLED, recycled(lithium=8.0 * 1.05), PACK, Readings(), None, ()),
    (
        "recovery just over the tolerance",
        E.RECYCLED,
        recycled(lithium=math.nextafter(8.0 * 1.05, math.inf)),
        PACK,
        Readings(),
        p.RECOVERY,
        (),
    ),
    ("cobalt over content", E.RECYCLED, recycled(cobalt=6.0), PACK, Readings(), p.RECOVERY, ()),
    ("copper not registered", E.RECYCLED, recycled(copper=12.0), PACK, Readings(), None, (p.NO_CONTENT,)),
    ("zero recovered needs no content", E.RECYCLED, recycled(copper=0.0), PACK, Readings(), None, ()),
    ("black mass equal to input", E.RECYCLED, recycled(inp=450.0, black=450.0), PACK, Readings(), None, ()),
    ("black mass over input", E.RECYCLED, recycled(inp=450.0, black=450.5), PACK, Readings(), p.BLACK_MASS, ()),
    ("input at the band's low edge", E.RECYCLED, recycled(inp=477 * 0.75, black=0), PACK, Readings(), None, ()),
    ("input at the band's high edge", E.RECYCLED, recycled(inp=477 * 1.25), PACK, Readings(), None, ()),
    ("input under the band", E.RECYCLED, recycled(inp=357.0, black=0), PACK, Readings(), p.INPUT_MASS, ()),
    ("input over the band", E.RECYCLED, recycled(inp=600.0), PACK, Readings(), p.INPUT_MASS, ()),
    (
        "nothing registered",
        E.RECYCLED,
        recycled(lithium=99.0),
        Facts(),
        Readings(),
        None,
        (p.NO_MASS, p.NO_CONTENT),
    ),
    ("first SoH", E.INSPECTED, {"soh_pct": 100.0, "cycle_count": 0}, PACK, Readings(), None, ()),
    (
        "SoH rising within the margin",
        E.INSPECTED,
        {"soh_pct": 83.0, "cycle_count": 10},
        PACK,
        Readings(Reading(80.0, "a"), Reading(10, "a")),
        None,
        (),
    ),
    (
        "SoH rising past the margin",
        E.INSPECTED,
        {"soh_pct": 83.5, "cycle_count": 10},
        PACK,
        Readings(Reading(80.0, "a"), Reading(10, "a")),
        p.SOH_RISE,
        (),
    ),
    (
        "graded above the last inspection",
        E.GRADED,
        {"soh_pct": 95.0, "grade": "reuse"},
        PACK,
        Readings(Reading(70.0, "a")),
        p.SOH_RISE,
        (),
    ),
    ("SoH above 100", E.GRADED, {"soh_pct": 100.5, "grade": "reuse"}, PACK, Readings(), p.SOH_RANGE, ()),
    ("SoH below 0", E.INSPECTED, {"soh_pct": -0.1, "cycle_count": 1}, PACK, Readings(), p.SOH_RANGE, ()),
    ("SoH NaN", E.INSPECTED, {"soh_pct": math.nan, "cycle_count": 1}, PACK, Readings(), p.SOH_RANGE, ()),
    (
        "cycle count equal",
        E.INSPECTED,
        {"soh_pct": 80.0, "cycle_count": 500},
        PACK,
        Readings(None, Reading(500, "a")),
        None,
        (),
    ),
    (
        "cycle count falling",
        E.INSPECTED,
        {"soh_pct": 80.0, "cycle_count": 499},
        PACK,
        Readings(None, Reading(500, "a")),
        p.CYCLE_COUNT,
        (),
    ),
    ("capacity equal to the original", E.REPURPOSED, {"rated_capacity": 77.4}, PACK, Readings(), None, ()),
    ("capacity over the original", E.REPURPOSED, {"rated_capacity": 77.5}, PACK, Readings(), p.CAPACITY, ()),
    ("capacity unknown", E.REPURPOSED, {"rated_capacity": 500.0}, Facts(), Readings(), None, (p.NO_CAPACITY,)),
    ("other events are not checked", E.INCIDENT, {"kind": "fire", "severity": "low"}, Facts(), Readings(), None, ()),
    # A BMS's report: SoH and cycles as an inspection's, its running totals never fall, what remains is not above
    # the rated capacity/energy by more than the margin (10 %).
    (
        "BMS SoH rising past the margin",
        E.BMS_REPORTED,
        {"soh_pct": 90.0},
        PACK,
        Readings(Reading(80.0, "a")),
        p.SOH_RISE,
        (),
    ),
    (
        "BMS cycles below an inspection's",
        E.BMS_REPORTED,
        {"cycle_count": 9},
        PACK,
        Readings(None, Reading(10, "a")),
        p.CYCLE_COUNT,
        (),
    ),
    ("BMS total equal", E.BMS_REPORTED, {"energy_throughput_kwh": 500.0}, PACK, THROUGHPUT, None, ()),
    ("BMS total falling", E.BMS_REPORTED, {"energy_throughput_kwh": 499.9}, PACK, THROUGHPUT, p.TOTAL, ()),
    (
        "BMS time in extreme heat falling",
        E.BMS_REPORTED,
        {"extreme_temperature_min": {"above": 59, "below": 0, "charging_above": 0, "charging_below": 0}},
        PACK,
        Readings(totals={"extreme_temperature_min.above": Reading(60, "a")}),
        p.TOTAL,
        (),
    ),
    ("BMS energy at the margin", E.BMS_REPORTED, {"remaining_energy_kwh": 77.4 * 1.1}, PACK, Readings(), None, ()),
    ("BMS energy past the margin", E.BMS_REPORTED, {"remaining_energy_kwh": 85.2}, PACK, Readings(), p.REMAINING, ()),
    (
        "BMS capacity past the margin",
        E.BMS_REPORTED,
        {"remaining_capacity_ah": 245.0},
        PACK_AH,
        Readings(),
        p.REMAINING,
        (),
    ),
    (
        "BMS capacity, no rated capacity",
        E.BMS_REPORTED,
        {"remaining_capacity_ah": 999.0},
        PACK,
        Readings(),
        None,
        (p.NO_RATING,),
    ),
    ("BMS SoC alone", E.BMS_REPORTED, {"soc_pct": 100.0}, Facts(), Readings(), None, ()),
]


@pytest.mark.parametrize(
    ("etype", "data", "facts", "readings", "want", "unchecked"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rules(
    etype: EventType,
    data: dict[str, Any],
    facts: Facts,
    readings: Readings,
    want: str | None,
    unchecked: tuple[str, ...],
) -> None:
    v = check(etype, data, facts, readings, TOL)
    assert code(v) == want, v
    assert v.unchecked == unchecked


def test_a_refusal_names_the_rule_the_field_and_the_numbers() -> None:
    v = check(E.RECYCLED, recycled(lithium=9.0), PACK, Readings(), TOL)
    assert v.implausible is not None
    found = v.implausible
    assert (found.code, found.rule, found.field) == ("implausible-recovery", "recovery", "data.recovered_kg.lithium")
    assert dict(found.numbers) == {
        "material": "lithium",
        "recovered_kg": 9.0,
        "contained_kg": 8.0,
        "tolerance_pct": 5.0,
        "limit_kg": 8.0 * 1.05,
    }
    assert "9 kg of lithium" in found.detail and "8 kg" in found.detail and "5 %" in found.detail
    mass = check(E.RECYCLED, recycled(inp=100.0, black=0), PACK, Readings(), TOL).implausible
    assert mass is not None and dict(mass.numbers) == {
        "input_mass_kg": 100.0,
        "registered_mass_kg": 477.0,
        "band_pct": 25.0,
        "min_kg": 477 * 0.75,
        "max_kg": 477 * 1.25,
    }
    rise = check(E.INSPECTED, {"soh_pct": 90.0, "cycle_count": 1}, PACK, Readings(Reading(80.0, "ev-1")), TOL)
    assert rise.implausible is not None and dict(rise.implausible.numbers) == {
        "soh_pct": 90.0,
        "previous_soh_pct": 80.0,
        "previous_event_id": "ev-1",
        "margin_pct": 3.0,
    }


def test_black_mass_is_checked_before_the_registered_facts() -> None:
    assert code(check(E.RECYCLED, recycled(inp=10.0, black=20.0), Facts(), Readings(), TOL)) == p.BLACK_MASS


def test_tolerances_are_configurable() -> None:
    strict = Tolerances(recovery_pct=0.0, input_mass_band_pct=0.0, soh_rise_pct=0.0)
    assert code(check(E.RECYCLED, recycled(inp=477.0, lithium=8.0), PACK, Readings(), strict)) is None
    assert code(check(E.RECYCLED, recycled(inp=477.0, lithium=8.01), PACK, Readings(), strict)) == p.RECOVERY
    assert code(check(E.RECYCLED, recycled(inp=477.5), PACK, Readings(), strict)) == p.INPUT_MASS
    last = Readings(Reading(80.0, "a"))
    assert code(check(E.INSPECTED, {"soh_pct": 80.0, "cycle_count": 1}, PACK, last, strict)) is None
    assert code(check(E.INSPECTED, {"soh_pct": 80.01, "cycle_count": 1}, PACK, last, strict)) == p.SOH_RISE


def test_readings_follow_inspections_remanufacturing_and_error_declarations() -> None:
    r = observe(Readings(), E.INSPECTED, "i1", {"soh_pct": 91.5, "cycle_count": 420})
    assert r == Readings(Reading(91.5, "i1"), Reading(420, "i1"))
    r = observe(r, E.GRADED, "g1", {"soh_pct": 62.0, "grade": "reuse"})
    assert r == Readings(Reading(62.0, "g1"), Reading(420, "i1"))
    # Remanufacturing lets the SoH start afresh; the cycle count stays.
    fresh = observe(r, E.REMANUFACTURED, "m1", {})
    assert fresh == Readings(None, Reading(420, "i1"))
    assert code(check(E.INSPECTED, {"soh_pct": 99.0, "cycle_count": 420}, PACK, fresh, TOL)) is None
    # An event declared in error no longer counts as a reading.
    assert observe(r, E.ERROR_DECLARED, "d1", {"declared_event_id": "g1"}) == Readings(None, Reading(420, "i1"))
    assert observe(r, E.ERROR_DECLARED, "d2", {"declared_event_id": "i1"}) == Readings(Reading(62.0, "g1"), None)
    assert observe(r, E.INCIDENT, "x", {"kind": "fire"}) == r
    assert Readings.from_json(r.as_json()) == r and Readings.from_json(None) == Readings()


def test_a_falling_total_and_an_excess_remaining_name_the_field_and_the_numbers() -> None:
    fell = check(
        E.BMS_REPORTED,
        {"deep_discharge_events": 1},
        PACK,
        Readings(totals={"deep_discharge_events": Reading(3, "b1")}),
        TOL,
    )
    assert fell.implausible is not None and fell.implausible.field == "data.deep_discharge_events"
    assert fell.implausible.numbers == {
        "total": "deep_discharge_events",
        "value": 1,
        "previous_value": 3,
        "previous_event_id": "b1",
    }
    over = check(E.BMS_REPORTED, {"remaining_capacity_ah": 250.0}, PACK_AH, Readings(), TOL).implausible
    assert over is not None and over.field == "data.remaining_capacity_ah" and over.rule == "remaining"
    assert over.numbers == {
        "reading": "remaining_capacity_ah",
        "value": 250.0,
        "rated": 222.0,
        "margin_pct": 10.0,
        "limit": 222.0 * 1.1,
    }
    strict = Tolerances(remaining_margin_pct=0.0)
    assert code(check(E.BMS_REPORTED, {"remaining_energy_kwh": 77.41}, PACK, Readings(), strict)) == p.REMAINING


def test_bms_reports_move_the_readings_and_a_declaration_drops_its_own() -> None:
    r = observe(Readings(), E.INSPECTED, "i1", {"soh_pct": 91.5, "cycle_count": 420})
    full = {"soh_pct": 90.0, "cycle_count": 430, "energy_throughput_kwh": 100.0, "soc_pct": 50.0}
    full["extreme_temperature_min"] = {"above": 5, "below": 6, "charging_above": 7, "charging_below": 8}
    r = observe(r, E.BMS_REPORTED, "b1", full)
    assert (r.soh_pct, r.cycle_count) == (Reading(90.0, "b1"), Reading(430, "b1"))
    assert r.totals == {
        "energy_throughput_kwh": Reading(100.0, "b1"),
        "extreme_temperature_min.above": Reading(5, "b1"),
        "extreme_temperature_min.below": Reading(6, "b1"),
        "extreme_temperature_min.charging_above": Reading(7, "b1"),
        "extreme_temperature_min.charging_below": Reading(8, "b1"),
    }
    r = observe(r, E.BMS_REPORTED, "b2", {"deep_discharge_events": 1})
    assert r.totals["deep_discharge_events"] == Reading(1, "b2") and r.totals["energy_throughput_kwh"].event_id == "b1"
    dropped = observe(r, E.ERROR_DECLARED, "d1", {"declared_event_id": "b1"})
    assert set(dropped.totals) == {"deep_discharge_events"} and dropped.soh_pct is None and dropped.cycle_count is None
    assert Readings.from_json(r.as_json()) == r
    # Readings stored before the totals existed read as none.
    assert Readings.from_json({"soh_pct": None, "cycle_count": {"value": 3, "event_id": "x"}}).totals == {}


def test_facts_from_the_registry_stream_and_from_the_public_read() -> None:
    streamed = {
        "materials_kg": {"lithium": 8.0, "copper": 0, "nickel": 40.0, "cobalt": True},
        "model": {"mass_kg": 477, "rated_energy_kwh": 77.4},
    }
    f = Facts.from_registry(streamed)
    # A zero (the registry's default) is not a registered content, nor a boolean.
    assert f == Facts({"lithium": 8.0, "nickel": 40.0}, 477.0, 77.4)
    assert Facts.from_registry({"model": {"rated_capacity_ah": 222}}).rated_capacity_ah == 222.0
    # The public read holds no material content: its facts are not the whole registration.
    public = Facts.from_registry({"mass_kg": 45, "rated_energy_kwh": 8.0})
    assert public == Facts({}, 45.0, 8.0, complete=False)
    assert Facts.from_registry({"mass_kg": float("nan"), "rated_energy_kwh": -1}) == Facts(complete=False)
    assert Facts.from_json(f.as_json()) == f and Facts.from_json(None) == Facts()
    assert Facts.from_json(public.as_json()) == public
    # Facts stored before `complete` existed were the registration's or the read-through's: read as before.
    assert Facts.from_json({"materials_kg": {}, "mass_kg": 45.0, "rated_energy_kwh": None}).complete


def test_a_content_rule_on_public_read_facts_waits_for_the_registration() -> None:
    """Recovered material without a known content: from public-read facts `pending` (not `unchecked`, which
    would flag the event for good); from the registration `unchecked`; without a registration stream
    (`await_registration` off) `unchecked` too. Rules that need no content are applied either way."""
    public = Facts({}, 477.0, 77.4, complete=False)
    data = {"input_mass_kg": 450.0, "black_mass_kg": 180.0, "recovered_kg": {"lithium": 5.0}}
    v = check(E.RECYCLED, data, public, Readings(), TOL)
    assert v == Verdict(pending="data.recovered_kg.lithium")
    assert check(E.RECYCLED, data, Facts({}, 477.0, 77.4), Readings(), TOL) == Verdict(unchecked=("recovery",))
    no_stream = Tolerances(await_registration=False)
    assert check(E.RECYCLED, data, public, Readings(), no_stream) == Verdict(unchecked=("recovery",))
    assert (
        code(check(E.RECYCLED, {**data, "black_mass_kg": 451.0}, public, Readings(), TOL)) == "implausible-black-mass"
    )
    assert (
        code(check(E.RECYCLED, {**data, "input_mass_kg": 200.0}, public, Readings(), TOL)) == "implausible-input-mass"
    )
    nothing = {**data, "recovered_kg": {"lithium": 0.0}}
    assert check(E.RECYCLED, nothing, public, Readings(), TOL) == Verdict()


@given(
    contained=st.floats(min_value=1e-6, max_value=1e6),
    share=st.floats(min_value=0, max_value=2),
    tolerance=st.floats(min_value=0, max_value=100),
)
def test_recovery_is_refused_exactly_above_the_limit(contained: float, share: float, tolerance: float) -> None:
    facts = Facts({"nickel": contained})
    kg = contained * share
    v = check(
        E.RECYCLED, recycled(inp=1.0, black=0.0, nickel=kg), facts, Readings(), Tolerances(recovery_pct=tolerance)
    )
    assert (code(v) == p.RECOVERY) is (kg > contained * (1 + tolerance / 100))
