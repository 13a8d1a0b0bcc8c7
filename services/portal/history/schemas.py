from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contract.lifecycle import State, TimelineEntry
from shared.pagination import Page
from shared.validation import documented

_H = "3f7a" + "0" * 60
EXAMPLE_EVENT: dict[str, Any] = {
    "sequence": 2,
    "event_id": "5f0c8a8e-8a4c-4c9e-9a53-0f1d0d3c2b71",
    "type": "INSTALLED",
    "occurred_at": "2026-04-02T10:30:00+09:00",
    "recorded_at": "2026-04-02T10:30:01+09:00",
    "actor": "HMC",
    "actor_role": "oem",
    "location": {"site": "Ulsan plant", "region": "KR-31"},
    "data": {"vin": "KMHEM41AP6A123456"},
    "state_after": "in_service",
    "custodian_after": "HMC",
    "prev_hash": _H,
    "hash": "9c1e" + "0" * 60,
}


class BatterySearch(BaseModel):
    """A battery search's filters (None: any), read as its query parameters (`Annotated[..., Query()]`); `vin` a
    VIN or its pseudonym."""

    model_config = ConfigDict(frozen=True)

    state: State | None = None
    manufacturer: str | None = None
    chemistry: str | None = None
    region: str | None = Field(None, description="The last region an event reported, e.g. KR-41.")
    vin: str | None = Field(None, description="Installed in this vehicle (VIN alias or INSTALLED data).")


class TimelineEvent(TimelineEntry):
    model_config = documented(EXAMPLE_EVENT)
    declared_in_error: Declaration | None = Field(
        None,
        description="Set when a later ERROR_DECLARED declared this event in error: it stays in the history, "
        "marked, and has no effect on state, custody, composition, passports or any figure.",
    )


class Declaration(BaseModel):
    """The ERROR_DECLARED that declared an event in error."""

    sequence: int
    event_id: str
    actor: str
    occurred_at: datetime
    reason: str | None = None


class AmendmentChange(BaseModel):
    before: Any = None
    after: Any = None


class Amendment(BaseModel):
    """A change of registry facts: who, when, why, each fact before and after (the registry's record)."""

    id: str
    number: int
    changes: dict[str, AmendmentChange]
    reason: str
    actor: str
    actor_role: str
    amended_at: datetime
    restricted: list[str] = Field(default_factory=list, description="Changed facts the reader may not see.")


class RegistryFacts(BaseModel):
    model_id: str | None
    kind: str | None
    chemistry: str | None
    manufacturer: str | None
    serial_number: str | None = Field(None, description="Commercial: the manufacturer and authorities only.")
    manufactured_at: datetime | None
    manufacturing_site: str | None
    materials_kg: dict[str, float] | None = Field(
        None, description="Commercial: the manufacturer and authorities only."
    )
    recycled_content_pct: dict[str, float] | None
    carbon_footprint_kg_co2e_per_kwh: float | None
    model: dict[str, Any] | None
    restricted: list[str] = Field([], description="Facts held but not for this reader (commercial).")


class Current(BaseModel):
    state: str | None = Field(None, description="After the event with the highest sequence applied.")
    state_since: datetime | None
    custodian: str | None
    region: str | None = Field(None, description="The last region an event reported.")
    grade: str | None
    soh_pct: float | None = Field(description="The newest state of health (%) an inspection, a grading or a BMS gave.")
    cycle_count: int | None = Field(description="The newest full-cycle count an inspection or a BMS report gave.")
    parent_id: str | None = Field(None, description="The module or pack it is inside now.")
    vin: str | None = Field(description="The vehicle it was last installed in: its VIN, or 'erased' (PIPA).")
    vin_pseudonym: str | None = Field(None, description="That VIN's keyed pseudonym, as the ledger holds it.")
    safety: str | None = Field(None, description="Last safety inspection result of this life (pass/fail).")
    sequence: int
    passport_status: str


class Node(BaseModel):
    id: str
    kind: str | None
    model_id: str | None
    components: list[Node]


class Composition(BaseModel):
    at: datetime
    parent_id: str | None
    ancestors: list[str] = Field(description="Parent, grandparent... at that time.")
    components: list[Node]


class StateAt(BaseModel):
    sequence: int
    state_after: str
    custodian_after: str


class ChainStatus(BaseModel):
    status: Literal["valid", "incomplete", "broken", "empty"]
    events: int
    head_hash: str | None
    broken_at_sequence: int | None
    reason: str | None
    verify_url: str = Field(description="The events service's full recomputation of every hash.")


class PassportRef(BaseModel):
    passport_id: str
    life: int
    status: str
    from_sequence: int
    to_sequence: int | None
    started_at: datetime | None
    predecessor: str | None
    successor: str | None


class AsOf(BaseModel):
    event_id: str
    sequence: int
    recorded_at: datetime
    applied_at: datetime


class Alias(BaseModel):
    scheme: str
    value: str


class RecallRef(BaseModel):
    id: str
    title: str
    opened_on: date
    removed: bool = Field(description="Whether a REMOVED of this battery named the campaign.")


class History(BaseModel):
    model_config = documented(
        {
            "battery_id": "KR-LGES-P000001",
            "registry": {
                "model_id": "NCM-P77",
                "kind": "pack",
                "chemistry": "NCM",
                "manufacturer": "LGES",
                "serial_number": "P000001",
                "manufactured_at": "2026-03-02T09:00:00+09:00",
                "manufacturing_site": "Ochang",
                "materials_kg": {"lithium": 8.1, "nickel": 39.5, "cobalt": 4.9},
                "recycled_content_pct": {"lithium": 6, "nickel": 4, "cobalt": 16, "lead": 0},
                "carbon_footprint_kg_co2e_per_kwh": 61.5,
                "model": {"rated_energy_kwh": 77.4},
            },
            "aliases": [{"scheme": "vin", "value": "KMHEM41AP6A123456"}],
            "current": {
                "state": "in_service",
                "state_since": "2026-04-02T10:30:00+09:00",
                "custodian": "HMC",
                "region": "KR-31",
                "grade": None,
                "soh_pct": None,
                "cycle_count": None,
                "parent_id": None,
                "vin": "KMHEM41AP6A123456",
                "safety": None,
                "sequence": 2,
                "passport_status": "original",
            },
            "composition": {
                "at": "2026-05-01T00:00:00+09:00",
                "parent_id": None,
                "ancestors": [],
                "components": [{"id": "KR-LGES-M000001", "kind": "module", "model_id": "NCM-M8", "components": []}],
            },
            "state_at": None,
            "timeline": [EXAMPLE_EVENT],
            "chain": {
                "status": "valid",
                "events": 2,
                "head_hash": "9c1e" + "0" * 60,
                "broken_at_sequence": None,
                "reason": None,
                "verify_url": "/v1/batteries/KR-LGES-P000001/verify",
            },
            "passports": [
                {
                    "passport_id": "urn:batterytrace:0f6c1b1c8c2b5c1d9a3e2b7c4d5e6f70",
                    "life": 0,
                    "status": "Original",
                    "from_sequence": 1,
                    "to_sequence": None,
                    "started_at": "2026-03-02T09:00:00+09:00",
                    "predecessor": None,
                    "successor": None,
                }
            ],
            "as_of": {
                "event_id": "5f0c8a8e-8a4c-4c9e-9a53-0f1d0d3c2b71",
                "sequence": 2,
                "recorded_at": "2026-04-02T10:30:01+09:00",
                "applied_at": "2026-04-02T10:30:01.2+09:00",
            },
        }
    )
    battery_id: str
    registry: RegistryFacts | None = Field(description="Null until the registration reached the portal.")
    aliases: list[Alias]
    current: Current
    composition: Composition = Field(description="Now, or at `at` when given.")
    state_at: StateAt | None = Field(None, description="State and custodian at `at` (when given).")
    timeline: list[TimelineEvent] = Field(description="Every event, in sequence order.")
    amendments: list[Amendment] = Field(
        default_factory=list, description="Amendments of the registry facts, oldest first (`registry` is the result)."
    )
    chain: ChainStatus
    passports: list[PassportRef] = Field(description="One passport per life, linked predecessor → successor.")
    as_of: AsOf | None = Field(description="The last event applied to this battery's read model.")
    recalls: list[RecallRef] | None = Field(
        None, description="Recall campaigns covering the battery (authority level: ministries and admin; else null)."
    )


class BatterySummary(BaseModel):
    id: str
    kind: str | None
    model_id: str | None
    chemistry: str | None
    manufacturer: str | None
    state: str | None
    custodian: str | None
    region: str | None
    grade: str | None
    vin: str | None
    status: str
    sequence: int


class BatterySearchPage(Page[BatterySummary]):
    model_config = documented(
        {
            "items": [
                {
                    "id": "KR-LGES-P000001",
                    "kind": "pack",
                    "model_id": "NCM-P77",
                    "chemistry": "NCM",
                    "manufacturer": "LGES",
                    "state": "in_service",
                    "custodian": "HMC",
                    "region": "KR-31",
                    "grade": None,
                    "vin": "KMHEM41AP6A123456",
                    "status": "original",
                    "sequence": 2,
                }
            ],
            "next_cursor": None,
        }
    )


TimelineEvent.model_rebuild()
