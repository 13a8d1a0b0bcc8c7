"""A vehicle as `GET /v1/vehicles/{vin}` answers it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.validation import documented

EXAMPLE: dict[str, Any] = {
    "vin": "KMHEM41AP6A123456",
    "vin_pseudonym": "3f2a" + "0" * 60,
    "vin_erased": False,
    "at": "2026-11-02T10:30:00Z",
    "batteries": ["KR-LGES-P000002"],
    "history": [
        {
            "battery_id": "KR-LGES-P000001",
            "installed_by": "HMC",
            "from": "2025-03-01T09:00:00Z",
            "until": "2026-10-01T09:00:00Z",
            "removal_reason": "replacement",
            "recall_campaign": None,
        },
        {
            "battery_id": "KR-LGES-P000002",
            "installed_by": "HMC",
            "from": "2026-10-02T09:00:00Z",
            "until": None,
            "removal_reason": None,
            "recall_campaign": None,
        },
    ],
}


class Installed(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    battery_id: str
    installed_by: str = Field(description="The OEM that posted INSTALLED.")
    from_: datetime = Field(alias="from", serialization_alias="from")
    until: datetime | None = Field(description="When its REMOVED (or a final event) ended it; null: installed now.")
    removal_reason: str | None = None
    recall_campaign: str | None = None


class Vehicle(BaseModel):
    model_config = documented(EXAMPLE)
    vin: str | None = Field(description="The plain VIN; null once erased (PIPA).")
    vin_pseudonym: str | None = Field(
        description="The VIN's keyed pseudonym, as the ledger holds it (null for records from before pseudonyms)."
    )
    vin_erased: bool
    at: datetime = Field(description="The moment `batteries` answers for.")
    batteries: list[str] = Field(description="The batteries installed in the vehicle at `at`.")
    history: list[Installed] = Field(description="Every installation into the vehicle, oldest first.")
