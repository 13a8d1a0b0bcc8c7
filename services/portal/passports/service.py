"""The battery passport in the Battery Pass 1.2 aspects layout (DIN DKE SPEC 99100), cut to the caller's
EU access level. Each aspect is valid against the standard's JSON schema once the fields listed in
`restricted` (held, not for this level) and `unavailable` (not held by the portal) are set aside; the
portal never fills a mandatory field with an invented value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.history import repository as history_repo
from services.portal.history.service import chain_status, lives, locate, relation
from services.portal.recalls import service as recalls
from shared.access import Level, Relation, passport_level
from shared.auth import Principal
from shared.db import raw_connection
from shared.problems import NotFound

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
#: material -> (CAS number, where it is, critical raw material in the EU list)
MATERIALS = {
    "lithium": ("7439-93-2", "cathode", True),
    "nickel": ("7440-02-0", "cathode", True),
    "cobalt": ("7440-48-4", "cathode", True),
    "manganese": ("7439-96-5", "cathode", True),
    "graphite": ("7782-42-5", "anode", True),
}
RECYCLED_MATERIALS = {"lithium": "Lithium", "nickel": "Nickel", "cobalt": "Cobalt", "lead": "Lead"}
RANK = [Level.public, Level.legitimate_interest, Level.authority, Level.manufacturer]


async def passport(session: AsyncSession, principal: Principal | None, battery_id: str) -> dict[str, Any]:
    conn = await raw_connection(session)
    battery = await locate(conn, battery_id, None)
    bid = battery["id"]
    if not battery["registered"]:
        raise NotFound(f"Battery '{bid}' has no registration in the portal yet.", code="unknown-battery")
    proved = await relation(conn, principal.org, battery) if principal is not None else Relation()
    level = passport_level(principal, proved)
    events = await history_repo.timeline(conn, bid)
    maker = await history_repo.participant(session, battery["manufacturer"])
    covering = await recalls.of_battery(conn, battery) if RANK.index(level) >= RANK.index(Level.authority) else []
    return build(battery, events, maker, level, covering)


def build(
    battery: dict[str, Any],
    events: Sequence[dict[str, Any]],
    maker: dict[str, Any] | None,
    level: Level,
    covering: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    rank = RANK.index(level)
    bid = battery["id"]
    life = lives(bid, events)[-1]
    life_events = [e for e in events if e["sequence"] >= life["from_sequence"]]
    restricted: dict[str, list[str]] = {}
    unavailable: dict[str, list[str]] = {}
    model = battery.get("model") or {}

    general: dict[str, Any] = {
        "productIdentifier": bid,
        "batteryPassportIdentifier": life["passport_id"],
        "batteryCategory": _category(life_events),
        "manufacturerInformation": _party(battery["manufacturer"], maker),
        "manufacturingDate": battery["manufactured_at"].isoformat(),
        "batteryStatus": life["status"],
        "manufacturingPlace": {
            "addressCountry": "KR",
            "postalCode": "",
            "streetAddress": battery["manufacturing_site"],
        },
        "operatorInformation": _party(_operator(battery, life_events), None),
    }
    if model.get("mass_kg") is not None:
        general["batteryMass"] = model["mass_kg"]
    installed = next((e["occurred_at"] for e in life_events if e["type"] == "INSTALLED"), None)
    if installed is not None:
        general["puttingIntoService"] = installed.isoformat()
    unavailable["generalProductInformation"] = [
        k for k in ("batteryMass", "puttingIntoService", "warrentyPeriod") if k not in general
    ]

    materials = battery.get("materials_kg") or {}
    composition: dict[str, Any] = {
        "batteryChemistry": {
            "shortName": battery["chemistry"],
            "clearName": CHEMISTRY_NAMES.get(battery["chemistry"], battery["chemistry"]),
        }
    }
    if rank >= RANK.index(Level.authority):  # material masses are commercial facts (shared.access)
        composition["batteryMaterials"] = [
            {
                "batteryMaterialLocation": {"componentName": where},
                "batteryMaterialIdentifier": cas,
                "batteryMaterialName": name,
                "batteryMaterialMass": float(materials.get(name, 0.0)),
                "isCriticalRawMaterial": critical,
            }
            for name, (cas, where, critical) in MATERIALS.items()
            if materials.get(name)
        ]
    else:
        restricted["materialComposition"] = ["batteryMaterials"]
    unavailable["materialComposition"] = ["hazardousSubstances"]

    aspects: dict[str, dict[str, Any]] = {"generalProductInformation": general, "materialComposition": composition}
    footprint = battery.get("carbon_footprint_kg_co2e_per_kwh")
    if footprint is not None:
        aspects["carbonFootprint"] = {"batteryCarbonFootprint": footprint}
        energy = model.get("rated_energy_kwh")
        if energy:
            aspects["carbonFootprint"]["absoluteCarbonFootprint"] = round(footprint * energy, 3)
        unavailable["carbonFootprint"] = [
            "carbonFootprintPerLifecycleStage",
            "carbonFootprintPerformanceClass",
            "carbonFootprintStudy",
        ]
    content = battery.get("recycled_content_pct") or {}
    aspects["circularity"] = {
        "recycledContent": [
            # The registry declares one share per material; the standard splits it pre/post consumer.
            {"recycledMaterial": label, "preConsumerShare": 0.0, "postConsumerShare": float(content.get(key, 0.0))}
            for key, label in RECYCLED_MATERIALS.items()
        ],
        "dismantlingAndRemovalInformation": [],
        "sparePartSources": [],
    }
    unavailable["circularity"] = ["safetyMeasures", "endOfLifeInformation", "renewableContent"]

    extensions: dict[str, Any] = {}
    if rank >= RANK.index(Level.legitimate_interest):
        extensions["kr.batterytrace.condition"] = {
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
        extensions["kr.batterytrace.lifecycle"] = {
            "custodian": battery["custodian"],
            "events": len(events),
            "chain": chain_status(bid, events)["status"],
            "safety_inspections": [
                {"occurred_at": e["occurred_at"], **e["data"]} for e in events if e["type"] == "SAFETY_INSPECTED"
            ],
            "incidents": [{"occurred_at": e["occurred_at"], **e["data"]} for e in events if e["type"] == "INCIDENT"],
            "recalls": list(covering),  # the recall campaigns covering it (services/portal/recalls)
        }
    if level is Level.manufacturer:
        extensions["kr.batterytrace.manufacturing"] = {
            "serial_number": battery["serial_number"],
            "model_id": battery["model_id"],
            "manufacturing_site": battery["manufacturing_site"],
            "materials_kg": materials,
            "model": model,
        }
    return {
        "battery_id": bid,
        "passport_id": life["passport_id"],
        "status": life["status"],
        "predecessor": life["predecessor"],
        "access_level": level.value,
        "aspects": aspects,
        "extensions": extensions,
        "restricted": {k: v for k, v in restricted.items() if v},
        "unavailable": {k: v for k, v in unavailable.items() if v and k in aspects},
    }


def _category(life_events: Sequence[dict[str, Any]]) -> str:
    """'stationary' once installed at or repurposed for an ESS, else 'ev'."""
    for e in reversed(life_events):
        if e["type"] == "INSTALLED":
            return "stationary" if e["data"].get("ess_site_id") else "ev"
        if e["type"] == "REPURPOSED" and "ESS" in str(e["data"].get("new_application", "")).upper():
            return "stationary"
    return "ev"


def _operator(battery: dict[str, Any], life_events: Sequence[dict[str, Any]]) -> str:
    """Who placed this life on the market: the repurposer/remanufacturer, or the manufacturer."""
    first = life_events[0] if life_events else None
    if first is not None and first["type"] in ("REPURPOSED", "REMANUFACTURED"):
        return str(first["actor"])
    return str(battery["manufacturer"])


def _party(org: str, participant: dict[str, Any] | None) -> dict[str, Any]:
    # The registry keeps no postal addresses; the country is Korea for every registered participant.
    return {
        "contactName": (participant or {}).get("name") or org,
        "identifier": org,
        "postalAddress": {"addressCountry": "KR", "postalCode": "", "streetAddress": ""},
    }
