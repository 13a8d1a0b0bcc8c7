"""A model's passport declaration: what its manufacturer states once for every battery of the model (documents,
labels, technical properties, hazardous substances, due diligence, its Catena-X identifiers), written in the
standards' own vocabulary: per Battery Pass 1.2 aspect, and as the Catena-X BatteryPass 6.1 aspect.

A declaration is partial by nature (the network adds the battery's facts and its life), so it is checked
value by value against the standard's schema, and refused where it claims something the network derives."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import standards
from shared.problems import Unprocessable, field_error
from shared.validation import documented

BatteryPassAspect = Literal[
    "generalProductInformation",
    "materialComposition",
    "carbonFootprint",
    "circularity",
    "performanceAndDurability",
    "labeling",
    "supplyChainDueDiligence",
]
RULE_SCHEMA, RULE_DERIVED = "standard-schema", "derived-by-the-network"

EXAMPLE_DECLARATION: dict[str, Any] = {
    "batterypass": {
        "generalProductInformation": {
            "manufacturerInformation": {
                "postalAddress": {
                    "addressCountry": "KR",
                    "postalCode": "28122",
                    "streetAddress": "Gwahaksaneop 4-ro 29",
                }
            },
            "manufacturingPlace": {"addressCountry": "KR", "postalCode": "28122", "streetAddress": "Ochang plant 1"},
            "warrentyPeriod": "--08",
        },
        "supplyChainDueDiligence": {"supplyChainDueDiligenceReport": "https://lges.example/dd-2026.pdf"},
    },
    "catenax": {"metadata": {"economicOperatorId": "BPNL0000000001AB"}},
}


class PassportDeclaration(BaseModel):
    model_config = documented(EXAMPLE_DECLARATION, extra="forbid")
    batterypass: dict[BatteryPassAspect, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per Battery Pass 1.2 aspect, the fields the manufacturer states (keys and values as in the "
        "aspect's schema, its spelling included). Leave out what is not known: the passport names it.",
    )
    catenax: dict[str, Any] = Field(
        default_factory=dict,
        description="The parts of the Catena-X BatteryPass 6.1 aspect the manufacturer states (BPNL/BPNA, "
        "documents, rated performance, materials, ...), as in its schema.",
    )


def check(declaration: PassportDeclaration | None) -> None:
    """422 naming every field the standard does not allow, and every field the network derives."""
    if declaration is None:
        return
    errors = []
    parts = [
        (f"passport.batterypass.{aspect}", standards.BATTERY_PASS[aspect], doc, standards.DERIVED_BATTERY_PASS[aspect])
        for aspect, doc in declaration.batterypass.items()
    ]
    parts.append(("passport.catenax", standards.CATENAX, declaration.catenax, standards.DERIVED_CATENAX))
    for prefix, file, doc, derived in parts:
        known = standards.schema(file)["properties"]
        for key in doc:
            if key not in known:
                errors.append(field_error(_field(prefix, key), RULE_SCHEMA, f"{file} has no property '{key}'"))
        for path in derived:
            if standards.holds(doc, path):
                errors.append(
                    field_error(
                        _field(prefix, path), RULE_DERIVED, "the network derives this from the registry and the ledger"
                    )
                )
        for path, message in standards.declaration_errors(file, doc):
            errors.append(field_error(_field(prefix, path), RULE_SCHEMA, f"{file}: {message}"))
    if errors:
        raise Unprocessable(f"The passport declaration is invalid; first: {errors[0]['field']}.", errors=errors)


def _field(prefix: str, path: str) -> str:
    return ".".join([prefix, *path.split("/")]) if path else prefix
