"""The two input streams as the portal reads them (a tolerant reader: unknown fields are ignored, the fields
the read models use are checked). The envelope, the ledger record and the vocabulary are the published
contract (`shared.contract`); the type-specific data models here check what the read models aggregate."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contract.lifecycle import EventType, Grade
from shared.records import BatteryModelFields, ParticipantFields


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---- battery.registry.v1 ----
# The published participant and battery model records: the columns of the tables they are written to and mirrored
# into (`shared.records`).
class ParticipantIn(ParticipantFields):
    model_config = ParticipantFields.model_config | {"extra": "ignore"}
    created_at: datetime | None = None
    status: Literal["active", "suspended"] = "active"


class ModelIn(BatteryModelFields):
    model_config = BatteryModelFields.model_config | {"extra": "ignore"}
    created_at: datetime | None = None
    passport: dict[str, Any] | None = None


class BatteryRegisteredIn(_In):
    id: str = Field(min_length=1, max_length=24)
    model_id: str
    kind: str
    chemistry: str
    manufacturer: str
    serial_number: str
    manufactured_at: datetime
    manufacturing_site: str
    materials_kg: dict[str, float] = {}
    recycled_content_pct: dict[str, float] = {}
    carbon_footprint_kg_co2e_per_kwh: float | None = None
    model: dict[str, Any] = {}


class ChangeIn(_In):
    before: Any = None
    after: Any = None


class AmendedIn(_In):
    """An amendment of registry facts: each changed fact's value before and after."""

    id: str = Field(min_length=1)
    battery_id: str = Field(min_length=1, max_length=24)
    number: int = Field(ge=1)
    changes: dict[str, ChangeIn]
    reason: str
    actor: str
    actor_role: str
    amended_at: datetime


class AliasAddedIn(_In):
    scheme: str
    value: str = Field(min_length=1)
    battery_id: str


# ---- battery.vins.v1 ----
class VinIn(_In):
    """A VIN record (`vin` set) or, from a tombstone, its erasure (`vin` None)."""

    pseudonym: str = Field(pattern=r"^[0-9a-f]{64}$")
    vin: str | None = Field(None, pattern=r"^[A-HJ-NPR-Z0-9]{17}$")


# ---- battery.lifecycle.v1 ----


# Type-specific data the read models aggregate; checked so a malformed event is dead-lettered instead of
# corrupting a figure.
class AssemblyData(_In):
    parent_id: str


class InstalledData(_In):
    vin: str | None = None
    ess_site_id: str | None = None


class InspectedData(_In):
    soh_pct: float = Field(ge=0, le=100)
    cycle_count: int = Field(ge=0)


class RemovedData(_In):
    reason: str


class CollectedData(_In):
    centre: str
    region: str


class GradedData(_In):
    soh_pct: float = Field(ge=0, le=100)
    grade: Grade


class RepurposedData(_In):
    new_application: str
    rated_capacity: float


class SafetyInspectedData(_In):
    standard: str = "KC 10031"
    result: Literal["pass", "fail"]
    body: str


class RecycledData(_In):
    process: str
    input_mass_kg: float = Field(ge=0)
    black_mass_kg: float = Field(ge=0)
    recovered_kg: dict[str, float]


class DisposedData(_In):
    method: str | None = None


class TransferredData(_In):
    to: str


class IncidentData(_In):
    kind: str
    severity: str


DATA_MODELS: dict[EventType, type[_In]] = {
    EventType.ASSEMBLED: AssemblyData,
    EventType.DISASSEMBLED: AssemblyData,
    EventType.INSTALLED: InstalledData,
    EventType.INSPECTED: InspectedData,
    EventType.REMOVED: RemovedData,
    EventType.COLLECTED: CollectedData,
    EventType.GRADED: GradedData,
    EventType.REPURPOSED: RepurposedData,
    EventType.SAFETY_INSPECTED: SafetyInspectedData,
    EventType.RECYCLED: RecycledData,
    EventType.DISPOSED: DisposedData,
    EventType.TRANSFERRED: TransferredData,
    EventType.INCIDENT: IncidentData,
}
