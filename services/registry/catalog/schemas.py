from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.registry.catalog.passport import PassportDeclaration
from shared.contract.lifecycle import MATERIALS
from shared.validation import documented


class Kind(StrEnum):
    cell = "cell"
    module = "module"
    pack = "pack"


#: The materials a battery's registered content (`materials_kg`) may name, in kg: the contract's list (lithium,
#: nickel, cobalt, manganese, copper, aluminium, graphite, lead), so that every material a recycler may report
#: recovered can be compared with what the battery contained (EU targets cover copper; lead where present).
CONTENT_MATERIALS = MATERIALS


class Chemistry(StrEnum):
    NCM = "NCM"
    NCA = "NCA"
    LFP = "LFP"
    LMFP = "LMFP"
    LMR = "LMR"
    LCO = "LCO"
    LMO = "LMO"
    SODIUM_ION = "sodium-ion"
    SOLID_STATE = "solid-state"


ModelId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["NCM811-P96-77KWH"])]
Positive = Annotated[float, Field(gt=0)]


class BatteryModelIn(BaseModel):
    model_config = documented(
        {
            "id": "NCM811-P96-77KWH",
            "kind": "pack",
            "chemistry": "NCM",
            "rated_capacity_ah": 222.0,
            "nominal_voltage_v": 350.0,
            "rated_energy_kwh": 77.4,
            "mass_kg": 477.0,
        },
        extra="forbid",
    )
    id: ModelId
    kind: Kind
    chemistry: Chemistry
    rated_capacity_ah: Positive
    nominal_voltage_v: Positive
    rated_energy_kwh: Positive
    mass_kg: Positive
    passport: PassportDeclaration | None = Field(
        None,
        description="What the Battery Pass 1.2 and Catena-X BatteryPass 6.1 passports of its batteries need from "
        "the manufacturer, in the standards' own vocabulary; what is left out, the passports name as not held.",
    )


class BatteryModelOut(BatteryModelIn):
    model_config = ConfigDict(extra="ignore")
    #: Not answered: the model is public, and a declaration holds documents only some levels may read
    #: (test reports, dismantling manuals); the passports cut it to the reader's level.
    passport: PassportDeclaration | None = Field(None, exclude=True)
    manufacturer: str
    created_at: datetime
