"""The passport standards as published, byte for byte (tests/test_portal_passports.py compares them with the
project's `shared/standards` copies): the seven Battery Pass 1.2 aspect schemas and the Catena-X BatteryPass
6.1.0 schema, all JSON Schema draft-04.

The registry checks a manufacturer's partial declaration against them (`declaration_errors`: every value
declared must be what the schema allows; completeness is not asked of a declaration), and the portal reports
which required fields a passport does not hold (`missing`). Neither schema can say "unknown": Battery Pass
1.2 has no null and no "unknown" value anywhere, and Catena-X 6.1 has none either (its one convention is the
dummy `predecessor` of a first passport). So a field the network genuinely does not hold is left out and
named, never filled in."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

HERE = Path(__file__).parent

#: The passport's aspect key -> the Battery Pass 1.2 schema file.
BATTERY_PASS = {
    "generalProductInformation": "GeneralProductInformation-schema.json",
    "materialComposition": "MaterialComposition-schema.json",
    "carbonFootprint": "CarbonFootprintForBatteries-schema.json",
    "circularity": "Circularity-schema.json",
    "performanceAndDurability": "PerformanceAndDurability-schema.json",
    "labeling": "Labeling-schema.json",
    "supplyChainDueDiligence": "SupplyChainDueDiligence-schema.json",
}
CATENAX = "BatteryPass-6.1.0-schema.json"
#: Catena-X's "dummy value" for the predecessor of a first passport (the nil UUID, RFC 9562 §5.9), as in
#: the standard's own example.
NO_PREDECESSOR = "urn:uuid:00000000-0000-0000-0000-000000000000"


@cache
def schema(file: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((HERE / file).read_text(encoding="utf-8"))
    return found


@cache
def _validator(file: str) -> jsonschema_rs.Draft4Validator:
    return jsonschema_rs.Draft4Validator(schema(file), validate_formats=True)


def _path(parts: list[str | int]) -> str:
    return "/".join(str(p) for p in parts)


def missing(file: str, document: dict[str, Any]) -> list[str]:
    """The required fields `document` lacks, as paths (`manufacturerInformation/postalAddress`)."""
    out = []
    for err in _validator(file).iter_errors(document):
        if isinstance(err.kind, jsonschema_rs.ValidationErrorKind.Required):
            out.append(_path([*err.instance_path, str(err.kind.property)]))
    return sorted(out)


def declaration_errors(file: str, document: dict[str, Any]) -> list[tuple[str, str]]:
    """What in a partial `document` the schema does not allow, as (path, message): everything but a missing
    required field."""
    return [
        (_path(list(err.instance_path)), err.message)
        for err in _validator(file).iter_errors(document)
        if not isinstance(err.kind, jsonschema_rs.ValidationErrorKind.Required)
    ]


#: What the network itself derives for a passport (from the registry's facts and the ledger), so no
#: manufacturer's declaration may carry it; paths inside each Battery Pass aspect, and inside the Catena-X aspect.
DERIVED_BATTERY_PASS: dict[str, tuple[str, ...]] = {
    "generalProductInformation": (
        "productIdentifier",
        "batteryPassportIdentifier",
        "batteryCategory",
        "manufacturingDate",
        "batteryStatus",
        "batteryMass",
        "operatorInformation",
        "puttingIntoService",
        "manufacturerInformation/contactName",
        "manufacturerInformation/identifier",
    ),
    "materialComposition": ("batteryChemistry", "batteryMaterials"),
    "carbonFootprint": ("batteryCarbonFootprint", "absoluteCarbonFootprint"),
    "circularity": ("recycledContent",),
    "performanceAndDurability": (
        "batteryCondition",
        "batteryTechicalProperties/ratedEnergy",
        "batteryTechicalProperties/ratedCapacity",
        "batteryTechicalProperties/nominalVoltage",
    ),
    "labeling": (),
    "supplyChainDueDiligence": (),
}
DERIVED_CATENAX: tuple[str, ...] = (
    "specVersion",
    "identification/category",
    "identification/idDmc",
    "identification/chemistry",
    "identification/identification/serial",
    "operation/intoServiceDate",
    "operation/manufacturer/manufacturingDate",
    "characteristics/physicalDimension/weight",
    "sustainability/status",
    "performance/dynamic",
    "performance/rated/energy",
    "performance/rated/capacity/value",
    "performance/rated/voltage/nominal",
    *(f"materials/active/{m}/recycled" for m in ("nickel", "lithium", "cobalt", "lead")),
    "metadata/passportIdentifier",
    "metadata/predecessor",
    "metadata/issueDate",
    "metadata/lastModification",
    "metadata/version",
)


def holds(document: dict[str, Any], path: str) -> bool:
    """Whether `document` has a value at `path` (`a/b/c`)."""
    node: Any = document
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
