"""A life's condition from its newest readings, pure: the Battery Pass 1.2 PerformanceAndDurability
`batteryCondition` and the Catena-X BatteryPass 6.1 `performance/dynamic`.

The readings are the life's events in effect (none declared in error) that carry them: a battery management
system's BMS_REPORTED (EU 2023/1542 Art. 14, Annex VII), and an INSPECTED's or a GRADED's SoH and cycle count.
Each reading is the newest value given for it (by when it was measured, then by ledger order), with that time as
the standard's `lastUpdate`/`time`; a value per component is the newest for that component; the four times in
extreme temperatures and the remaining power capabilities come as one reading each, as they were reported. Units
are the standards': kWh, Ah, W, Ω, %, % per month, minutes. What no reading gave is left out, so the passport names
it `unavailable` (neither standard has a value for "unknown")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contract.lifecycle import BMS_COMPONENTS, BMS_NUMBERS

READING_TYPES = frozenset({"INSPECTED", "GRADED", "BMS_REPORTED"})
#: Readings given as one whole (all their members together).
WHOLE = ("extreme_temperature_min", "remaining_power_w")
#: Readings given per component (`internal_resistance_ohm.pack`, ...).
PER_COMPONENT = ("internal_resistance_ohm", "internal_resistance_increase_pct")


@dataclass(frozen=True, slots=True)
class Reading:
    value: Any
    at: datetime

    @property
    def time(self) -> str:
        return self.at.isoformat()


def newest(events: Sequence[Mapping[str, Any]]) -> dict[str, Reading]:
    """Each reading's newest value among `events` (a life's, in effect), by name (`internal_resistance_ohm.pack`
    for a component's)."""
    found: dict[str, Reading] = {}
    carrying = sorted(
        (e for e in events if e["type"] in READING_TYPES), key=lambda e: (e["occurred_at"], e["sequence"])
    )
    for e in carrying:
        data, at = e["data"], e["occurred_at"]
        for name in (*BMS_NUMBERS, *WHOLE):
            if data.get(name) is not None:
                found[name] = Reading(data[name], at)
        for name in PER_COMPONENT:
            for component, value in (data.get(name) or {}).items():
                found[f"{name}.{component}"] = Reading(value, at)
    return found


def negative_events(
    events: Sequence[Mapping[str, Any]], readings: Mapping[str, Reading]
) -> list[dict[str, Any]] | None:
    """The life's negative events (Annex XIII (4)(d)): its INCIDENTs, and the deep-discharge and overcharge events
    its BMS counted. None: nothing says what they were (no incident in the ledger and no BMS count); an empty list
    when a BMS counted none and the ledger holds no incident."""
    found = [
        {
            "negativeEvent": f"{e['data'].get('kind', 'incident')} ({e['data'].get('severity', '')})".strip(),
            "lastUpdate": e["occurred_at"].isoformat(),
        }
        for e in events
        if e["type"] == "INCIDENT"
    ]
    counted = False
    for name, label in (("deep_discharge_events", "deep discharge events"), ("overcharge_events", "overcharge events")):
        if (r := readings.get(name)) is not None:
            counted = True
            if r.value:
                found.append({"negativeEvent": f"{label}: {r.value}", "lastUpdate": r.time})
    return found if found or counted else None


def battery_condition(
    readings: Mapping[str, Reading], negative: list[dict[str, Any]] | None, rte_at_half_life: float | None
) -> dict[str, Any]:
    """Battery Pass 1.2 `batteryCondition` (its own spellings, `remainingEnergyalue` and
    `currentSelfDischargingRateEntity` included). `rte_at_half_life`: the round-trip efficiency at 50 % of cycle
    life, a rated value of the model (from the manufacturer's declaration), not a reading."""
    r = readings
    out: dict[str, Any] = {}

    def timed(key: str, name: str, member: str) -> None:
        if name in r:
            out[key] = {member: r[name].value, "lastUpdate": r[name].time}

    def plain(key: str, name: str) -> None:
        if name in r:
            out[key] = r[name].value

    plain("energyThroughput", "energy_throughput_kwh")
    timed("capacityThroughput", "capacity_throughput_ah", "capacityThroughputValue")
    timed("numberOfFullCycles", "cycle_count", "numberOfFullCyclesValue")
    timed("stateOfCertifiedEnergy", "soce_pct", "stateOfCertifiedEnergyValue")
    timed("capacityFade", "capacity_fade_pct", "capacityFadeValue")
    timed("remainingEnergy", "remaining_energy_kwh", "remainingEnergyalue")
    timed("remainingCapacity", "remaining_capacity_ah", "remainingCapacityValue")
    if negative is not None:
        out["negativeEvents"] = negative
    if "extreme_temperature_min" in r:
        t = r["extreme_temperature_min"]
        out["temperatureInformation"] = {
            "timeExtremeHighTemp": t.value["above"],
            "timeExtremeLowTemp": t.value["below"],
            "timeExtremeHighTempCharging": t.value["charging_above"],
            "timeExtremeLowTempCharging": t.value["charging_below"],
            "lastUpdate": t.time,
        }
    if "remaining_power_w" in r:
        p = r["remaining_power_w"]
        out["remainingPowerCapability"] = [
            {
                "remainingPowerCapabilityValue": {
                    "rPCLastUpdated": p.time,
                    "atSoC": at["at_soc_pct"],
                    "powerCapabilityAt": at["power_w"],
                },
                "lastUpdate": p.time,
            }
            for at in p.value
        ]
    plain("powerFade", "power_fade_pct")
    plain("roundTripEfficiencyFade", "round_trip_efficiency_fade_pct")
    if "self_discharge_evolution_pct" in r:
        out["evolutionOfSelfDischarge"] = {
            "evolutionOfSelfDischargeEntityValue": r["self_discharge_evolution_pct"].value
        }
    timed("currentSelfDischargingRate", "self_discharge_rate_pct_per_month", "currentSelfDischargingRateEntity")
    increases = [
        {"internalResistanceIncreaseValue": x.value, "lastUpdate": x.time, "batteryComponent": c}
        for c in BMS_COMPONENTS
        if (x := r.get(f"internal_resistance_increase_pct.{c}")) is not None
    ]
    if increases:
        out["internalResistanceIncrease"] = increases
    if rte_at_half_life is not None:
        out["roundTripEfficiencyat50PerCentCycleLife"] = rte_at_half_life
    timed(
        "remainingRoundTripEnergyEfficiency",
        "remaining_round_trip_efficiency_pct",
        "remainingRoundTripEnergyEfficiencyValue",
    )
    timed("stateOfCharge", "soc_pct", "stateOfChargeValue")
    return out


def catenax_dynamic(readings: Mapping[str, Reading], negative: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Catena-X 6.1 `performance/dynamic`. Its remaining power is one value: the power capability reported at the
    highest state of charge."""
    r = readings

    def record(name: str) -> dict[str, Any] | None:
        return {"value": r[name].value, "time": r[name].time} if name in r else None

    def group(**members: dict[str, Any] | None) -> dict[str, Any] | None:
        held = {k: v for k, v in members.items() if v is not None}
        return held or None

    remaining_power = None
    if "remaining_power_w" in r:
        p = r["remaining_power_w"]
        top = max(p.value, key=lambda at: at["at_soc_pct"])
        remaining_power = {"value": top["power_w"], "time": p.time}
    per = {
        kind: group(**{c: record(f"{name}.{c}") for c in BMS_COMPONENTS})
        for kind, name in (("increase", "internal_resistance_increase_pct"), ("remaining", "internal_resistance_ohm"))
    }
    dynamic = {
        "stateOfCharge": record("soc_pct"),
        "fullCycles": record("cycle_count"),
        "power": group(fade=record("power_fade_pct"), remaining=remaining_power),
        "capacity": group(
            fade=record("capacity_fade_pct"),
            throughput=record("capacity_throughput_ah"),
            capacity=record("remaining_capacity_ah"),
        ),
        "roundTripEfficiency": group(
            fade=record("round_trip_efficiency_fade_pct"), remaining=record("remaining_round_trip_efficiency_pct")
        ),
        "resistance": group(**per),
        "energy": group(
            soce=record("soce_pct"),
            remaining=record("remaining_energy_kwh"),
            throughput=record("energy_throughput_kwh"),
        ),
    }
    out: dict[str, Any] = {k: v for k, v in dynamic.items() if v is not None}
    if "self_discharge_rate_pct_per_month" in r:
        out["selfDischargingRate"] = r["self_discharge_rate_pct_per_month"].value
    if negative:
        out["negativeEvents"] = [
            {
                "header": n["negativeEvent"][:100],
                "contentType": "text/plain",
                "content": f"{n['negativeEvent']}, {n['lastUpdate']}",
            }
            for n in negative
        ]
    return out
