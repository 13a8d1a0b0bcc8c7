"""What the passport tests share: the standards' schemas as published (each aspect checked against its own, with the
`jsonschema` library rather than the service's validator), and a model whose manufacturer declared everything the
passport asks of it."""

from __future__ import annotations

import json

from jsonschema import Draft4Validator

from tests.standards import standard

SCHEMA_FILES = {
    "generalProductInformation": ("batterypass", "GeneralProductInformation-schema.json"),
    "materialComposition": ("batterypass", "MaterialComposition-schema.json"),
    "carbonFootprint": ("batterypass", "CarbonFootprintForBatteries-schema.json"),
    "circularity": ("batterypass", "Circularity-schema.json"),
    "performanceAndDurability": ("batterypass", "PerformanceAndDurability-schema.json"),
    "labeling": ("batterypass", "Labeling-schema.json"),
    "supplyChainDueDiligence": ("batterypass", "SupplyChainDueDiligence-schema.json"),
    "catenax": ("catenax", "BatteryPass-6.1.0-schema.json"),
}
ASPECTS = set(SCHEMA_FILES) - {"catenax"}


def verdict(name: str, doc: dict) -> tuple[set[str], list[str]]:
    """What the standard's schema, exactly as published, says of `doc` (the `jsonschema` library, not the
    service's validator): the missing required fields as paths, and every other error."""
    schema = json.loads(standard(*SCHEMA_FILES[name]).read_text())
    missing, other = set(), []
    for e in Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).iter_errors(doc):
        if e.validator == "required":
            for field in set(e.validator_value) - set(e.instance):
                missing.add("/".join([*map(str, e.absolute_path), field]))
        else:
            other.append(f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
    return missing, other


def assert_valid_aspects(passport: dict) -> dict[str, set[str]]:
    """Every aspect against its schema as published (nothing taken out of `required`): no error but missing
    required fields, each of them one the passport names as restricted (not for this level) or unavailable
    (nobody gave it); no named field is present; an aspect naming none is valid outright. Returns the
    missing fields per aspect."""
    found = {}
    docs = {**passport["aspects"], "catenax": passport["catenax"]}
    assert set(docs) == set(SCHEMA_FILES)
    for name, doc in docs.items():
        missing, other = verdict(name, doc)
        assert not other, f"{name}: {other}"
        restricted = set(passport["restricted"].get(name, []))
        unavailable = set(passport["unavailable"].get(name, []))
        assert unavailable <= missing, (name, unavailable - missing)
        assert missing - unavailable <= restricted, (name, missing - unavailable - restricted)
        for path in restricted | unavailable:
            node = doc
            for part in path.split("/")[:-1]:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            assert path.split("/")[-1] not in node, (name, path)
        if not restricted and not unavailable:
            assert not missing, (name, missing)
        found[name] = missing
    return found


# ---- a model whose manufacturer declared what the passport needs ----

DOC = "https://lges.example/docs"
ADDRESS = {"addressCountry": "KR", "postalCode": "28122", "streetAddress": "Gwahaksaneop 4-ro 29, Ochang"}
BATTERY_PASS_DECLARATION = {
    "generalProductInformation": {
        "manufacturerInformation": {"postalAddress": ADDRESS, "webAddress": "https://lges.example"},
        "manufacturingPlace": ADDRESS,
        "warrentyPeriod": "--08",
    },
    "materialComposition": {"hazardousSubstances": []},  # declared: none
    "carbonFootprint": {
        "carbonFootprintPerLifecycleStage": [
            {"lifecycleStage": "RawMaterialExtraction", "carbonFootprint": 40.1},
            {"lifecycleStage": "MainProduction", "carbonFootprint": 18.2},
            {"lifecycleStage": "Distribution", "carbonFootprint": 1.2},
            {"lifecycleStage": "Recycling", "carbonFootprint": 2.0},
        ],
        "carbonFootprintPerformanceClass": "B",
        "carbonFootprintStudy": f"{DOC}/cf-study.pdf",
    },
    "circularity": {
        "dismantlingAndRemovalInformation": [
            {"documentType": "DismantlingManual", "mimeType": "application/pdf", "documentURL": f"{DOC}/dis.pdf"}
        ],
        "sparePartSources": [
            {
                "nameOfSupplier": "LGES Service",
                "addressOfSupplier": ADDRESS,
                "emailAddressOfSupplier": "parts@lges.example",
                "supplierWebAddress": "https://lges.example/parts",
                "components": [{"partName": "BMS board", "partNumber": "BMS-77-A"}],
            }
        ],
        "safetyMeasures": {"safetyInstructions": f"{DOC}/safety.pdf", "extinguishingAgent": ["water", "CO2"]},
        "endOfLifeInformation": {
            "wastePrevention": f"{DOC}/waste.pdf",
            "separateCollection": f"{DOC}/collection.pdf",
            "informationOnCollection": f"{DOC}/where.pdf",
        },
        "renewableContent": 0.0,
    },
    "performanceAndDurability": {
        "batteryTechicalProperties": {
            "originalPowerCapability": [{"atSoC": 80, "powerCapabilityAt": 180000}],
            "ratedMaximumPower": 200000,
            "powerCapabilityRatio": 2.6,
            "expectedNumberOfCycles": 3000,
            "initialSelfDischarge": 2.0,
            "roundtripEfficiency": 95.0,
            "initialInternalResistance": [{"ohmicResistance": 0.08, "batteryComponent": "pack"}],
            "expectedLifetime": 15,
            "minimumVoltage": 270.0,
            "maximumVoltage": 403.0,
            "capacityThresholdForExhaustion": 70.0,
            "lifetimeReferenceTest": f"{DOC}/life-test.pdf",
            "cRateLifeCycleTest": 0.5,
            "temperatureRangeIdleState": 25.0,
        }
    },
    "labeling": {
        "declarationOfConformity": f"{DOC}/doc.pdf",
        "resultOfTestReport": f"{DOC}/test-report.pdf",
        "labels": [
            {
                "labelingSymbol": f"{DOC}/weee.svg",
                "labelingMeaning": {"en": "Collect separately", "ko": "분리 배출"},
                "labelingSubject": "SeparateCollection",
            }
        ],
    },
    "supplyChainDueDiligence": {"supplyChainDueDiligenceReport": f"{DOC}/dd-2026.pdf"},
}


def catenax_declaration() -> dict:
    """The Catena-X standard's own example as the manufacturer's declaration, less what the network derives."""
    from shared.standards import DERIVED_CATENAX

    doc = json.loads(standard("catenax", "BatteryPass-6.1.0-example.json").read_text())
    for path in DERIVED_CATENAX:
        *parents, last = path.split("/")
        node = doc
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
    return doc


DECLARED_MODEL = {
    "id": "NCM-PACK-DECL",
    "kind": "pack",
    "chemistry": "NCM",
    "rated_capacity_ah": 222.0,
    "nominal_voltage_v": 350.0,
    "rated_energy_kwh": 77.4,
    "mass_kg": 477.0,
}
