"""The EPCIS 2.0 / CBV 2.0 battery vocabulary: our URI namespaces, compact prefixes, and the table of which
EPCIS event, action, bizStep and disposition stand for each lifecycle event. The events service reads EPCIS
through it (capture), the portal writes EPCIS through it (query). CBV has no recycling, remanufacturing or
repurposing step, so those are extension URIs under `BIZSTEP`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from shared.contract.lifecycle import member

GS1_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
BT = "https://batterytrace.kr/voc/"
BIZSTEP = BT + "bizstep/"
DISP = BT + "disp/"
MEASUREMENT = BT + "measurement/"
MATERIAL = "https://batterytrace.kr/material/"
BATTERY = "https://batterytrace.kr/battery/"
PARTICIPANT = "https://batterytrace.kr/participant/"
SITE = "https://batterytrace.kr/site/"
CBV_PREFIXES = (
    "https://ref.gs1.org/cbv/BizStep-",
    "https://ref.gs1.org/cbv/Disp-",
    "urn:epcglobal:cbv:bizstep:",
    "urn:epcglobal:cbv:disp:",
    "cbv:BizStep-",
    "cbv:Disp-",
)
#: Compact IRI prefixes a document may use for our namespaces.
COMPACT = {
    "bt:": BT,
    "btbizstep:": BIZSTEP,
    "btdisp:": DISP,
    "btmeasurement:": MEASUREMENT,
    "btmaterial:": MATERIAL,
    "btbattery:": BATTERY,
    "btparticipant:": PARTICIPANT,
    "btsite:": SITE,
    "btcomponent:": BT + "component/",
}
#: Our prefixes, for the @context of documents we answer with.
CONTEXT = {"bt": BT}
CONTEXT_URL_PATH = "/epcis/context/batterytrace.jsonld"
ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})

#: lifecycle type → (EPCIS event type, action, bizStep): how the ledger is written as EPCIS.
STEPS: dict[str, tuple[str, str, str | None]] = {
    "MANUFACTURED": ("ObjectEvent", "ADD", "commissioning"),
    "ASSEMBLED": ("AggregationEvent", "ADD", "assembling"),
    "DISASSEMBLED": ("AggregationEvent", "DELETE", "disassembling"),
    "INSTALLED": ("ObjectEvent", "OBSERVE", "installing"),
    "INSPECTED": ("ObjectEvent", "OBSERVE", "inspecting"),
    "REMOVED": ("ObjectEvent", "OBSERVE", "removing"),
    "COLLECTED": ("ObjectEvent", "OBSERVE", "collecting"),
    "GRADED": ("ObjectEvent", "OBSERVE", BIZSTEP + "grading"),
    "REMANUFACTURED": ("ObjectEvent", "OBSERVE", BIZSTEP + "remanufacturing"),
    "REPURPOSED": ("ObjectEvent", "OBSERVE", BIZSTEP + "repurposing"),
    "SAFETY_INSPECTED": ("ObjectEvent", "OBSERVE", BIZSTEP + "safety_inspecting"),
    "RECYCLED": ("TransformationEvent", "", BIZSTEP + "recycling"),
    "DISPOSED": ("ObjectEvent", "DELETE", "destroying"),
    "TRANSFERRED": ("ObjectEvent", "OBSERVE", None),
    "INCIDENT": ("ObjectEvent", "OBSERVE", BIZSTEP + "incident_reporting"),
    "BMS_REPORTED": ("ObjectEvent", "OBSERVE", "sensor_reporting"),
}
#: bizStep → lifecycle type, for captured ObjectEvents about batteries (the reverse of STEPS, plus CBV's
#: `repairing` as remanufacturing).
OBJECT_STEPS: dict[str, str] = {
    "installing": "INSTALLED",
    "inspecting": "INSPECTED",
    "removing": "REMOVED",
    "collecting": "COLLECTED",
    "repairing": "REMANUFACTURED",
    "destroying": "DISPOSED",
    BIZSTEP + "grading": "GRADED",
    BIZSTEP + "repurposing": "REPURPOSED",
    BIZSTEP + "remanufacturing": "REMANUFACTURED",
    BIZSTEP + "safety_inspecting": "SAFETY_INSPECTED",
    BIZSTEP + "incident_reporting": "INCIDENT",
    "sensor_reporting": "BMS_REPORTED",  # when it carries a BMS reading (BMS_MEASUREMENTS); else an observation
}
RECYCLING = BIZSTEP + "recycling"
#: grade ↔ disposition
GRADE_DISPOSITIONS = {
    DISP + "grade_reuse": "reuse",
    DISP + "grade_remanufacture": "remanufacture",
    DISP + "grade_recycle": "recycle",
}
#: CBV disposition → removal reason, and back
REMOVAL_DISPOSITIONS = {"recalled": "recall", "damaged": "accident"}
REMOVAL_DISPOSITION = {v: k for k, v in REMOVAL_DISPOSITIONS.items()}
#: CBV disposition → safety-inspection result, and back
SAFETY_DISPOSITIONS = {"conformant": "pass", "non_conformant": "fail"}
SAFETY_DISPOSITION = {v: k for k, v in SAFETY_DISPOSITIONS.items()}
#: sensor measurement types (under MEASUREMENT) and their UN/CEFACT units
MEASUREMENTS = {"soh": ("StateOfHealth", "P1"), "cycles": ("CycleCount", "C62")}
COMPONENT = BT + "component/"
#: BMS_REPORTED's readings as EPCIS sensor reports, one report per number: `data` member (dotted: a member of an
#: object) → (measurement type under MEASUREMENT, UN/CEFACT unit). P1 percent, C62 one, AMH ampere-hour, KWH
#: kilowatt-hour, MIN minute.
BMS_MEASUREMENTS: dict[str, tuple[str, str]] = {
    "soh_pct": ("StateOfHealth", "P1"),
    "soce_pct": ("StateOfCertifiedEnergy", "P1"),
    "soc_pct": ("StateOfCharge", "P1"),
    "cycle_count": ("CycleCount", "C62"),
    "remaining_capacity_ah": ("RemainingCapacity", "AMH"),
    "remaining_energy_kwh": ("RemainingEnergy", "KWH"),
    "capacity_fade_pct": ("CapacityFade", "P1"),
    "power_fade_pct": ("PowerFade", "P1"),
    "remaining_round_trip_efficiency_pct": ("RemainingRoundTripEfficiency", "P1"),
    "round_trip_efficiency_fade_pct": ("RoundTripEfficiencyFade", "P1"),
    "self_discharge_rate_pct_per_month": ("SelfDischargeRatePerMonth", "P1"),
    "self_discharge_evolution_pct": ("SelfDischargeEvolution", "P1"),
    "energy_throughput_kwh": ("EnergyThroughput", "KWH"),
    "capacity_throughput_ah": ("CapacityThroughput", "AMH"),
    "deep_discharge_events": ("DeepDischargeEvents", "C62"),
    "overcharge_events": ("OverchargeEvents", "C62"),
    "extreme_temperature_min.above": ("TimeAboveTemperatureLimit", "MIN"),
    "extreme_temperature_min.below": ("TimeBelowTemperatureLimit", "MIN"),
    "extreme_temperature_min.charging_above": ("ChargingTimeAboveTemperatureLimit", "MIN"),
    "extreme_temperature_min.charging_below": ("ChargingTimeBelowTemperatureLimit", "MIN"),
}
#: Per component: the report's `component` is COMPONENT + pack, module or cell. OHM ohm.
BMS_PER_COMPONENT: dict[str, tuple[str, str]] = {
    "internal_resistance_ohm": ("InternalResistance", "OHM"),
    "internal_resistance_increase_pct": ("InternalResistanceIncrease", "P1"),
}
#: Per state of charge (`remaining_power_w`: [{at_soc_pct, power_w}]): the report's `bt:atSoC`. WTT watt.
BMS_POWER = ("RemainingPowerCapability", "WTT")
AT_SOC = "bt:atSoC"


def bms_reports(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A BMS_REPORTED's `data` as EPCIS sensor reports (the reverse of `bms_data`)."""
    out: list[dict[str, Any]] = []
    for name, (kind, uom) in BMS_MEASUREMENTS.items():
        value = member(data, name)
        if value is not None:
            out.append({"type": MEASUREMENT + kind, "value": value, "uom": uom})
    for name, (kind, uom) in BMS_PER_COMPONENT.items():
        for component, value in (data.get(name) or {}).items():
            out.append({"type": MEASUREMENT + kind, "value": value, "uom": uom, "component": COMPONENT + component})
    for p in data.get("remaining_power_w") or []:
        out.append(
            {"type": MEASUREMENT + BMS_POWER[0], "value": p["power_w"], "uom": BMS_POWER[1], AT_SOC: p["at_soc_pct"]}
        )
    return out


def bms_data(reports: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The BMS_REPORTED `data` EPCIS sensor reports carry (reports of other types are not BMS readings), and what
    cannot be read: a report in another unit than ours, or per component / per state of charge without one."""
    scalars = {MEASUREMENT + kind: (name, uom) for name, (kind, uom) in BMS_MEASUREMENTS.items()}
    components = {MEASUREMENT + kind: (name, uom) for name, (kind, uom) in BMS_PER_COMPONENT.items()}
    data: dict[str, Any] = {}
    wrong: list[str] = []
    for report in reports:
        kind = expand(str(report.get("type", "")))
        if kind not in scalars and kind not in components and kind != MEASUREMENT + BMS_POWER[0]:
            continue
        uom = scalars.get(kind, components.get(kind, (None, BMS_POWER[1])))[1]
        if report.get("uom", uom) != uom or "value" not in report:
            wrong.append(f"{kind}: a value in {uom}")
            continue
        value = report["value"]
        if kind in scalars:
            outer, _, inner = scalars[kind][0].partition(".")
            if inner:
                data.setdefault(outer, {})[inner] = value
            else:
                data[outer] = value
        elif kind in components:
            component = expand(str(report.get("component", "")))
            if not component.startswith(COMPONENT):
                wrong.append(f"{kind}: a component {COMPONENT}{{pack, module, cell}}")
                continue
            data.setdefault(components[kind][0], {})[component[len(COMPONENT) :]] = value
        elif AT_SOC in report or BT + "atSoC" in report:
            at = report.get(AT_SOC, report.get(BT + "atSoC"))
            data.setdefault("remaining_power_w", []).append({"at_soc_pct": at, "power_w": value})
        else:
            wrong.append(f"{kind}: the state of charge it is measured at ({AT_SOC})")
    return data, wrong


CUSTODY_TYPES = frozenset({"owning_party", "possessing_party"})
MASS_UOM = {"KGM": 1.0, "GRM": 0.001, "TNE": 1000.0}


def expand(value: str) -> str:
    """A compact IRI with one of our prefixes → the full URI; CBV URIs → the bare CBV term (how bizStep and
    disposition are stored and compared)."""
    for prefix, full in COMPACT.items():
        if value.startswith(prefix):
            return full + value[len(prefix) :]
    for prefix in CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def battery_uri(battery_id: str) -> str:
    return BATTERY + battery_id


@lru_cache(maxsize=4096)
def site_uri(site: str) -> str:
    """A site as an EPCIS location ID: URIs stay as they are, free text is wrapped in our namespace. Cached: a
    deployment has few sites, and `quote` was most of the cost of making a ledger event's EPCIS form (4 µs a
    call, called for every event on the portal's EPCIS view)."""
    return site if ":" in site else SITE + quote(site, safe="")


def site_of(location_id: str) -> str:
    return unquote(location_id[len(SITE) :]) if location_id.startswith(SITE) else location_id


@lru_cache(maxsize=4096)
def participant_uri(org: str) -> str:
    return PARTICIPANT + quote(org)


def event_uri(event_id: str) -> str:
    """A ledger event's EPCIS eventID (client-chosen UUIDs are URIs this way)."""
    return f"urn:uuid:{event_id}"
