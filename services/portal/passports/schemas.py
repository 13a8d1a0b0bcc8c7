from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_PASSPORT: dict[str, Any] = {
    "battery_id": "KR-LGES-P000001",
    "passport_id": "urn:batterytrace:0f6c1b1c8c2b5c1d9a3e2b7c4d5e6f70",
    "status": "Original",
    "predecessor": None,
    "access_level": "public",
    "aspects": {
        "generalProductInformation": {
            "productIdentifier": "KR-LGES-P000001",
            "batteryPassportIdentifier": "urn:batterytrace:0f6c1b1c8c2b5c1d9a3e2b7c4d5e6f70",
            "batteryCategory": "ev",
            "manufacturerInformation": {
                "contactName": "LG Energy Solution",
                "identifier": "LGES",
                "postalAddress": {"addressCountry": "KR", "postalCode": "", "streetAddress": ""},
            },
            "manufacturingDate": "2026-03-02T09:00:00+09:00",
            "batteryStatus": "Original",
            "manufacturingPlace": {"addressCountry": "KR", "postalCode": "", "streetAddress": "Ochang"},
            "operatorInformation": {
                "contactName": "LGES",
                "identifier": "LGES",
                "postalAddress": {"addressCountry": "KR", "postalCode": "", "streetAddress": ""},
            },
            "batteryMass": 477.0,
            "puttingIntoService": "2026-04-02T10:30:00+09:00",
        },
        "materialComposition": {
            "batteryChemistry": {"shortName": "NCM", "clearName": "Lithium nickel cobalt manganese oxide"}
        },
        "carbonFootprint": {"batteryCarbonFootprint": 61.5, "absoluteCarbonFootprint": 4760.1},
        "circularity": {
            "recycledContent": [{"recycledMaterial": "Cobalt", "preConsumerShare": 0.0, "postConsumerShare": 16.0}],
            "dismantlingAndRemovalInformation": [],
            "sparePartSources": [],
        },
    },
    "extensions": {},
    "restricted": {"materialComposition": ["batteryMaterials"]},
    "unavailable": {
        "generalProductInformation": ["warrentyPeriod"],
        "materialComposition": ["hazardousSubstances"],
        "carbonFootprint": [
            "carbonFootprintPerLifecycleStage",
            "carbonFootprintPerformanceClass",
            "carbonFootprintStudy",
        ],
        "circularity": ["safetyMeasures", "endOfLifeInformation", "renewableContent"],
    },
}


class Passport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_PASSPORT]})
    battery_id: str
    passport_id: str = Field(description="This life's passport (a new one on remanufacture or repurpose).")
    status: str = Field(description="Original, Repurposed, Remanufactured or Waste (Battery Pass batteryStatus).")
    predecessor: str | None = Field(description="The passport of the previous life, if any.")
    access_level: str = Field(description="public, legitimate_interest, authority or manufacturer.")
    aspects: dict[str, dict[str, Any]] = Field(
        description="Battery Pass 1.2 aspects: generalProductInformation, materialComposition, carbonFootprint, "
        "circularity (keys as in the standard's schemas, its spelling included)."
    )
    extensions: dict[str, dict[str, Any]] = Field(
        description="Facts the standard's aspects do not carry, by level: kr.batterytrace.condition "
        "(legitimate interest and up), kr.batterytrace.lifecycle (authority and up), "
        "kr.batterytrace.manufacturing (the manufacturer)."
    )
    restricted: dict[str, list[str]] = Field(description="Aspect fields held but not shown at this access level.")
    unavailable: dict[str, list[str]] = Field(description="Aspect fields the portal does not hold.")
