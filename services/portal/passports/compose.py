"""One life's passport, pure: the seven Battery Pass 1.2 aspects and the Catena-X BatteryPass 6.1 aspect, cut
to the caller's EU access level.

Each aspect is the manufacturer's declaration for the model (registry `passport`, in the standard's own
vocabulary) overlaid with what the network derives: the registry's facts of the battery and its model, and the
ledger of this life. A required field nobody holds is left out and named in `unavailable`; a field held but not
for this level is left out and named in `restricted`. Neither standard has a null or an "unknown" value
(`shared.standards`), so an aspect is valid against its schema as published exactly when both lists are empty
for it; the only convention used is Catena-X's dummy `predecessor` of a first passport."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.portal.passports import condition
from shared import standards
from shared.access import COMMERCIAL_FACTS, Level

CHEMISTRY_NAMES = {
    "NCM": "Lithium nickel cobalt manganese oxide",
    "NCA": "Lithium nickel cobalt aluminium oxide",
    "LFP": "Lithium iron phosphate",
    "LMFP": "Lithium manganese iron phosphate",
    "LMR": "Lithium-manganese-rich layered oxide",
    "LCO": "Lithium cobalt oxide",
    "LMO": "Lithium manganese oxide",
    "sodium-ion": "Sodium-ion",
    "solid-state": "Solid-state lithium",
}
#: MATERIALS HOOK: material -> (CAS number, where it is, critical raw material in the EU list (Regulation (EU)
#: 2024/1252, Annex II)). A material the registry's `materials_kg` holds appears in `batteryMaterials` once it
#: is named here; copper, aluminium and lead are the ones the regime adds.
MATERIALS = {
    "lithium": ("7439-93-2", "cathode", True),
    "nickel": ("7440-02-0", "cathode", True),
    "cobalt": ("7440-48-4", "cathode", True),
    "manganese": ("7439-96-5", "cathode", True),
    "graphite": ("7782-42-5", "anode", True),
    "copper": ("7440-50-8", "current collector", True),
    "aluminium": ("7429-90-5", "current collector", True),
    "lead": ("7439-92-1", "battery", False),
}
RECYCLED_MATERIALS = {"lithium": "Lithium", "nickel": "Nickel", "cobalt": "Cobalt", "lead": "Lead"}
RANK = [Level.public, Level.legitimate_interest, Level.authority, Level.manufacturer]
CATENAX_ASPECT = "catenax"
CATENAX_CATEGORY = {"ev": "EV", "stationary": "industrial", "industrial": "industrial", "lmt": "LMT"}
CATENAX_STATUS = {
    "Original": "original",
    "Repurposed": "repurposed",
    "Reused": "re-used",
    "Remanufactured": "remanufactured",
    "Waste": "waste",
}
#: Field groups by the lowest level that reads them (shared.access: condition for those with a legitimate
#: interest, commercial and conformity-assessment facts for authorities), per aspect.
LEVEL_OF: dict[str, dict[str, Level]] = {
    "materialComposition": {"batteryMaterials": Level.authority},
    "performanceAndDurability": {"batteryCondition": Level.legitimate_interest},
    "circularity": {
        "dismantlingAndRemovalInformation": Level.legitimate_interest,
        "sparePartSources": Level.legitimate_interest,
    },
    "labeling": {"resultOfTestReport": Level.authority},
    CATENAX_ASPECT: {
        "performance/dynamic": Level.legitimate_interest,
        "safety/dismantling": Level.legitimate_interest,
        "safety/removalFromAppliance": Level.legitimate_interest,
        "handling/content": Level.legitimate_interest,
        "identification/identification/serial": Level.authority,
        "materials/composition": Level.authority,
        "conformity/resultOfTestReport": Level.authority,
    },
}


def uuid_of(passport_id: str) -> str:
    """`urn:batterytrace:<hex>` as the `urn:uuid:` form Catena-X asks for (the same UUID)."""
    return f"urn:uuid:{uuid.UUID(hex=passport_id.rsplit(':', 1)[1])}"


def life_events(events: Sequence[dict[str, Any]], life: Mapping[str, Any]) -> list[dict[str, Any]]:
    end = life["to_sequence"]
    return [e for e in events if e["sequence"] >= life["from_sequence"] and (end is None or e["sequence"] <= end)]


@dataclass(frozen=True, slots=True)
class _Life:
    """What `build` reads of the battery and one of its lives, once, for both aspects it derives."""

    battery: Mapping[str, Any]
    events: Sequence[dict[str, Any]]  # the life's events in effect
    life: Mapping[str, Any]
    category: str
    installed: datetime | None  # its first INSTALLED
    readings: Mapping[str, condition.Reading]  # its newest readings (BMS_REPORTED, INSPECTED, GRADED)
    negative: list[dict[str, Any]] | None  # its negative events (None: nothing says)
    rte_at_half_life: float | None  # the model's declared round-trip efficiency at 50 % of cycle life


def build(
    battery: Mapping[str, Any],
    events: Sequence[dict[str, Any]],
    life: Mapping[str, Any],
    parties: Mapping[str, dict[str, Any] | None],
    level: Level,
    declared: Mapping[str, Any],
    amendments: Sequence[Mapping[str, Any]] = (),
    recalls: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The passport of `life` (a `history.service.lives` row) for `level`; `parties` names participants by ID,
    `declared` is the model's passport declaration, `amendments` the registry's amendment records of the battery's
    facts (`battery` holds the facts as last amended), `recalls` the recall campaigns covering it (shown from the
    authority level on). The passport reads the events in effect (none declared in
    error); the chain and the event count are of the whole ledger."""
    from services.portal.history.service import in_effect

    rank = RANK.index(level)
    bid = battery["id"]
    ours = life_events(in_effect(events), life)
    model = battery.get("model") or {}
    bp_declared: Mapping[str, dict[str, Any]] = declared.get("batterypass") or {}
    operator = operator_of(battery, ours)
    readings = condition.newest(ours)
    rated_rte = (((declared.get("catenax") or {}).get("performance") or {}).get("rated") or {}).get(
        "roundTripEfficiency"
    )
    of = _Life(
        battery,
        ours,
        life,
        _category(ours),
        next((e["occurred_at"] for e in ours if e["type"] == "INSTALLED"), None),
        readings,
        condition.negative_events(ours, readings),
        (rated_rte or {}).get("50PercentLife"),
    )
    derived = _battery_pass(of, parties, operator)
    aspects = {
        name: _merge(copy.deepcopy(bp_declared.get(name) or {}), derived[name]) for name in standards.BATTERY_PASS
    }
    if operator == battery["manufacturer"]:  # the manufacturer is this life's operator: the same contact
        maker = aspects["generalProductInformation"]["manufacturerInformation"]
        aspects["generalProductInformation"]["operatorInformation"] = copy.deepcopy(maker)
    catenax = _catenax(of, declared.get("catenax") or {}, rank)

    restricted: dict[str, list[str]] = {}
    for aspect, doc in [*aspects.items(), (CATENAX_ASPECT, catenax)]:
        for path, needs in LEVEL_OF.get(aspect, {}).items():
            if rank < RANK.index(needs):  # named whether or not it is held: the level decides, not the data
                _drop(doc, path)
                restricted.setdefault(aspect, []).append(path)
    unavailable: dict[str, list[str]] = {}
    for aspect, doc in [*aspects.items(), (CATENAX_ASPECT, catenax)]:
        file = standards.CATENAX if aspect == CATENAX_ASPECT else standards.BATTERY_PASS[aspect]
        held_back = restricted.get(aspect, [])
        gaps = [p for p in standards.missing(file, doc) if not any(_under(p, r) for r in held_back)]
        if gaps:
            unavailable[aspect] = gaps
    return {
        "battery_id": bid,
        "passport_id": life["passport_id"],
        "life": life["life"],
        "status": life["status"],
        "predecessor": life["predecessor"],
        "successor": life["successor"],
        "access_level": level.value,
        "aspects": aspects,
        "catenax": catenax,
        "extensions": _extensions(battery, events, model, level, amendments, recalls),
        "restricted": restricted,
        "unavailable": unavailable,
    }


def _battery_pass(of: _Life, parties: Mapping[str, dict[str, Any] | None], operator: str) -> dict[str, dict[str, Any]]:
    model = of.battery.get("model") or {}
    maker = of.battery["manufacturer"]
    general: dict[str, Any] = {
        "productIdentifier": of.battery["id"],
        "batteryPassportIdentifier": of.life["passport_id"],
        "batteryCategory": of.category,
        "manufacturerInformation": {"contactName": _name(maker, parties), "identifier": maker},
        "manufacturingDate": of.battery["manufactured_at"].isoformat(),
        "batteryStatus": of.life["status"],
        "operatorInformation": {"contactName": _name(operator, parties), "identifier": operator},
    }
    if model.get("mass_kg") is not None:
        general["batteryMass"] = model["mass_kg"]
    if of.installed is not None:
        general["puttingIntoService"] = of.installed.isoformat()

    materials = of.battery.get("materials_kg") or {}
    composition: dict[str, Any] = {
        "batteryChemistry": {
            "shortName": of.battery["chemistry"],
            "clearName": CHEMISTRY_NAMES.get(of.battery["chemistry"], of.battery["chemistry"]),
        },
        "batteryMaterials": [
            {
                "batteryMaterialLocation": {"componentName": where},
                "batteryMaterialIdentifier": cas,
                "batteryMaterialName": name,
                "batteryMaterialMass": float(materials[name]),
                "isCriticalRawMaterial": critical,
            }
            for name, (cas, where, critical) in MATERIALS.items()
            if materials.get(name)
        ],
    }
    footprint: dict[str, Any] = {}
    if (cf := of.battery.get("carbon_footprint_kg_co2e_per_kwh")) is not None:
        footprint["batteryCarbonFootprint"] = cf
        if energy := model.get("rated_energy_kwh"):
            footprint["absoluteCarbonFootprint"] = round(cf * energy, 3)
    content = of.battery.get("recycled_content_pct") or {}
    circularity = {
        "recycledContent": [
            # The registry declares one share per material; the standard splits it pre/post consumer.
            {"recycledMaterial": label, "preConsumerShare": 0.0, "postConsumerShare": float(content.get(key, 0.0))}
            for key, label in RECYCLED_MATERIALS.items()
        ]
    }
    technical = {
        k: model[f]
        for k, f in (
            ("ratedEnergy", "rated_energy_kwh"),
            ("ratedCapacity", "rated_capacity_ah"),
            ("nominalVoltage", "nominal_voltage_v"),
        )
        if model.get(f) is not None
    }
    state = condition.battery_condition(of.readings, of.negative, of.rte_at_half_life)
    return {
        "generalProductInformation": general,
        "materialComposition": composition,
        "carbonFootprint": footprint,
        "circularity": circularity,
        "performanceAndDurability": {"batteryTechicalProperties": technical, "batteryCondition": state},
        "labeling": {},
        "supplyChainDueDiligence": {},
    }


def _catenax(of: _Life, declared: Mapping[str, Any], rank: int) -> dict[str, Any]:
    model = of.battery.get("model") or {}
    doc = copy.deepcopy(dict(declared))
    if of.life["life"] > 0:  # the declared economic operator is the manufacturer's, not this life's operator
        doc.get("metadata", {}).pop("economicOperatorId", None)
    chem = of.battery["chemistry"]
    started: datetime | None = of.life["started_at"]
    last = of.events[-1]["occurred_at"] if of.events else started
    derived: dict[str, Any] = {
        "specVersion": "urn:io.catenax.battery.battery_pass:6.1.0",  # as the standard's example writes it
        "identification": {
            "category": CATENAX_CATEGORY[of.category],
            "idDmc": of.battery["id"],
            "chemistry": f"{CHEMISTRY_NAMES.get(chem, chem)} ({chem})",
            "identification": {"serial": [{"key": "partInstanceId", "value": of.battery["serial_number"]}]},
        },
        "operation": {"manufacturer": {"manufacturingDate": of.battery["manufactured_at"].date().isoformat()}},
        "sustainability": {"status": CATENAX_STATUS[of.life["status"]]},
        "performance": {"rated": {}, "dynamic": condition.catenax_dynamic(of.readings, of.negative)},
        "metadata": {
            "passportIdentifier": uuid_of(of.life["passport_id"]),
            "predecessor": uuid_of(of.life["predecessor"]) if of.life["predecessor"] else standards.NO_PREDECESSOR,
            "version": str(of.events[-1]["sequence"] if of.events else 0),
        },
    }
    if started is not None:
        derived["metadata"]["issueDate"] = started.date().isoformat()
    if last is not None:
        derived["metadata"]["lastModification"] = last.date().isoformat()
    if of.installed is not None:
        derived["operation"]["intoServiceDate"] = of.installed.date().isoformat()
    if model.get("mass_kg") is not None:
        derived["characteristics"] = {
            "physicalDimension": {"weight": {"value": model["mass_kg"], "unit": "unit:kilogram"}}
        }
    rated = derived["performance"]["rated"]
    if model.get("rated_energy_kwh") is not None:
        rated["energy"] = {"value": model["rated_energy_kwh"]}
    if model.get("rated_capacity_ah") is not None:
        rated["capacity"] = {"value": model["rated_capacity_ah"]}
    if model.get("nominal_voltage_v") is not None:
        rated["voltage"] = {"nominal": model["nominal_voltage_v"]}
    content = of.battery.get("recycled_content_pct") or {}
    derived["materials"] = {
        "active": {m: {"recycled": float(content.get(m, 0.0))} for m in ("nickel", "lithium", "cobalt", "lead")}
    }
    doc = _merge(doc, derived)
    if rank >= RANK.index(Level.legitimate_interest):
        certified = certificates(of.events)
        if certified:
            conformity = doc.setdefault("conformity", {})
            conformity["thirdPartyAssurance"] = [*conformity.get("thirdPartyAssurance", []), *certified]
    return doc


def certificates(ours: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """CERTIFICATES HOOK: this life's recorded safety inspections (SAFETY_INSPECTED, e.g. KC 10031) as Catena-X
    conformity documents: the statement the ledger holds (standard, result, body, date), and the certificate's
    own link once the event carries one (`certificate_url`)."""
    out = []
    for e in ours:
        if e["type"] != "SAFETY_INSPECTED":
            continue
        data = e["data"]
        header = f"{data.get('standard', 'safety inspection')} {data.get('result', '')} ({data.get('body', '')})"
        if url := data.get("certificate_url"):
            out.append({"header": header[:100], "contentType": "URL", "content": str(url)})
        else:
            statement = f"{header}, {e['occurred_at'].date().isoformat()}, ledger {e['battery_id']}/{e['sequence']}"
            out.append({"header": header[:100], "contentType": "text/plain", "content": statement})
    return out


def _extensions(
    battery: Mapping[str, Any],
    ledger: Sequence[dict[str, Any]],
    model: Mapping[str, Any],
    level: Level,
    amendments: Sequence[Mapping[str, Any]] = (),
    recalls: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    from services.portal.history.service import chain_status, in_effect

    rank = RANK.index(level)
    events = in_effect(ledger)
    out: dict[str, Any] = {}
    if rank >= RANK.index(Level.legitimate_interest):
        out["kr.batterytrace.condition"] = {
            "state": battery["state"],
            "soh_pct": battery["soh_pct"],
            "cycle_count": battery["cycle_count"],
            "grade": battery["grade"],
            "safety_inspection": battery["safety"],
            "last_inspected_at": next(
                (e["occurred_at"] for e in reversed(events) if e["type"] in ("INSPECTED", "GRADED")), None
            ),
        }
    if rank >= RANK.index(Level.authority):
        out["kr.batterytrace.lifecycle"] = {
            "custodian": battery["custodian"],
            "events": len(ledger),
            "chain": chain_status(battery["id"], ledger)["status"],
            "safety_inspections": [
                {"occurred_at": e["occurred_at"], **e["data"]} for e in events if e["type"] == "SAFETY_INSPECTED"
            ],
            "incidents": [{"occurred_at": e["occurred_at"], **e["data"]} for e in events if e["type"] == "INCIDENT"],
            "recalls": [dict(r) for r in recalls],  # the recall campaigns covering it (services/portal/recalls)
        }
    if level is Level.manufacturer:
        out["kr.batterytrace.manufacturing"] = {
            "serial_number": battery["serial_number"],
            "model_id": battery["model_id"],
            "manufacturing_site": battery["manufacturing_site"],
            "materials_kg": battery.get("materials_kg") or {},
            "model": {k: v for k, v in model.items() if k != "passport"},
        }
    if amendments:
        out["kr.batterytrace.amendments"] = {"amendments": amendment_notes(amendments, level)}
    return out


def amendment_notes(amendments: Sequence[Mapping[str, Any]], level: Level) -> list[dict[str, Any]]:
    """The registry amendments behind the passport's facts: who, when, why, each fact before and after (the
    values of commercial facts from the authority level on)."""
    sees_commercial = RANK.index(level) >= RANK.index(Level.authority)
    return [
        {
            "number": a["number"],
            "amended_at": a["amended_at"],
            "actor": a["actor"],
            "reason": a["reason"],
            "changes": {
                k: v if sees_commercial or k not in COMMERCIAL_FACTS else {"restricted": True}
                for k, v in a["changes"].items()
            },
        }
        for a in amendments
    ]


def _merge(declared: dict[str, Any], derived: Mapping[str, Any]) -> dict[str, Any]:
    """`declared` overlaid with `derived`, object by object: what the network derives wins."""
    for key, value in derived.items():
        if isinstance(value, Mapping) and isinstance(declared.get(key), dict):
            _merge(declared[key], value)
        elif isinstance(value, Mapping):
            declared[key] = _merge({}, value)
        else:
            declared[key] = value
    return declared


def _drop(doc: dict[str, Any], path: str) -> bool:
    """Remove the value at `path`; whether there was one."""
    *parents, last = path.split("/")
    node: Any = doc
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _name(org: str, parties: Mapping[str, dict[str, Any] | None]) -> str:
    return str((parties.get(org) or {}).get("name") or org)


def _category(ours: Sequence[dict[str, Any]]) -> str:
    """'stationary' once installed at or repurposed for an ESS, else 'ev'."""
    for e in reversed(ours):
        if e["type"] == "INSTALLED":
            return "stationary" if e["data"].get("ess_site_id") else "ev"
        if e["type"] == "REPURPOSED" and "ESS" in str(e["data"].get("new_application", "")).upper():
            return "stationary"
    return "ev"


def operator_of(battery: Mapping[str, Any], ours: Sequence[dict[str, Any]]) -> str:
    """Who placed this life on the market: the repurposer/remanufacturer, or the manufacturer."""
    first = ours[0] if ours else None
    if first is not None and first["type"] in ("REPURPOSED", "REMANUFACTURED"):
        return str(first["actor"])
    return str(battery["manufacturer"])
