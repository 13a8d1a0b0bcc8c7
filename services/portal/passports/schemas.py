from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.validation import documented

EXAMPLE_PASSPORT: dict[str, Any] = {
    "battery_id": "KR-LGES-P000001",
    "passport_id": "urn:batterytrace:0f6c1b1c8c2b5c1d9a3e2b7c4d5e6f70",
    "life": 0,
    "status": "Original",
    "predecessor": None,
    "successor": None,
    "access_level": "public",
    "aspects": {
        "generalProductInformation": {
            "productIdentifier": "KR-LGES-P000001",
            "batteryPassportIdentifier": "urn:batterytrace:0f6c1b1c8c2b5c1d9a3e2b7c4d5e6f70",
            "batteryCategory": "ev",
            "manufacturerInformation": {
                "contactName": "LG Energy Solution",
                "identifier": "LGES",
                "postalAddress": {
                    "addressCountry": "KR",
                    "postalCode": "28122",
                    "streetAddress": "Gwahaksaneop 4-ro 29",
                },
            },
            "manufacturingDate": "2026-03-02T09:00:00+09:00",
            "batteryStatus": "Original",
            "batteryMass": 477.0,
        },
        "supplyChainDueDiligence": {"supplyChainDueDiligenceReport": "https://lges.example/dd-2026.pdf"},
    },
    "catenax": {"metadata": {"passportIdentifier": "urn:uuid:0f6c1b1c-8c2b-5c1d-9a3e-2b7c4d5e6f70"}},
    "extensions": {},
    "restricted": {"materialComposition": ["batteryMaterials"]},
    "unavailable": {"generalProductInformation": ["puttingIntoService", "warrentyPeriod"]},
}


class Passport(BaseModel):
    model_config = documented(EXAMPLE_PASSPORT)
    battery_id: str
    passport_id: str = Field(description="This life's passport (a new one on remanufacture or repurpose).")
    status: str = Field(description="Original, Repurposed, Remanufactured or Waste (Battery Pass batteryStatus).")
    life: int = Field(description="Which life of the battery (0: the original).")
    predecessor: str | None = Field(description="The passport of the previous life, if any.")
    successor: str | None = Field(description="The passport of the next life, once there is one.")
    access_level: str = Field(description="public, legitimate_interest, authority or manufacturer.")
    aspects: dict[str, dict[str, Any]] = Field(
        description="The seven Battery Pass 1.2 aspects: generalProductInformation, materialComposition, "
        "carbonFootprint, circularity, performanceAndDurability, labeling, supplyChainDueDiligence (keys as in the "
        "standard's schemas, its spelling included)."
    )
    catenax: dict[str, Any] = Field(description="The Catena-X BatteryPass 6.1.0 aspect of the same passport.")
    extensions: dict[str, dict[str, Any]] = Field(
        description="Facts the standard's aspects do not carry, by level: kr.batterytrace.condition "
        "(legitimate interest and up), kr.batterytrace.lifecycle (authority and up), "
        "kr.batterytrace.manufacturing (the manufacturer)."
    )
    restricted: dict[str, list[str]] = Field(
        description="Per aspect (`catenax` included), the fields not shown at this access level (paths)."
    )
    unavailable: dict[str, list[str]] = Field(
        description="Per aspect, the required fields nobody has given the network (paths). Neither standard has a "
        "null or an 'unknown' value, so they are left out and named here; an aspect with no entry here or in "
        "`restricted` is valid against its schema as published."
    )
