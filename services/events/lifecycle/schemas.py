"""Lifecycle events as clients post them, and as the service answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from shared.contract.lifecycle import (
    BMS_COMPONENTS,
    MATERIALS,
    EventType,
    Grade,
    IncidentKind,
    LedgerEvent,
    RemovalReason,
    Severity,
    State,
    amounts_model,
)
from shared.contract.recalls import CampaignId
from shared.pagination import Page
from shared.validation import (
    BatteryId,
    Count,
    NonNegative,
    PastAwareDatetime,
    Percent,
    Positive,
    canonical_uuid,
    documented,
)
from shared.vin import vin_problem


# ---- type-specific data ----
class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


_Model = TypeVar("_Model", bound=type[_Data])


class DataModels(dict[EventType, type[_Data]]):
    """Each event type's model of its `data`, registered by the models themselves: `@DATA_MODELS.of(type, ...)`
    on a model names the types whose data it checks (in the order the models are declared)."""

    def of(self, *types: EventType) -> Callable[[_Model], _Model]:
        def register(model: _Model) -> _Model:
            for t in types:
                self[t] = model
            return model

        return register


DATA_MODELS = DataModels()


@DATA_MODELS.of(EventType.MANUFACTURED)
class NoData(_Data):
    note: Annotated[str, Field(max_length=1000)] | None = None


@DATA_MODELS.of(EventType.ASSEMBLED, EventType.DISASSEMBLED)
class AssemblyData(_Data):
    parent_id: BatteryId = Field(description="The module or pack this battery goes into / comes out of.")


@DATA_MODELS.of(EventType.INSTALLED)
class InstalledData(_Data):
    vin: (
        Annotated[
            str,
            Field(
                pattern=r"^[A-HJ-NPR-Z0-9]{17}$",
                description="The vehicle's VIN (ISO 3779; check digit where its market requires one). Stored and "
                "published only as its keyed pseudonym (personal data).",
            ),
        ]
        | None
    ) = None
    ess_site_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> InstalledData:
        if (self.vin is None) == (self.ess_site_id is None):
            raise ValueError("exactly one of vin or ess_site_id is required")
        return self

    @field_validator("vin")
    @classmethod
    def _iso_3779(cls, value: str | None) -> str | None:
        problem = vin_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


@DATA_MODELS.of(EventType.INSPECTED)
class InspectedData(_Data):
    soh_pct: Percent
    cycle_count: Count


ParticipantId = Annotated[str, Field(min_length=1, max_length=64, description="A participant ID.")]


@DATA_MODELS.of(EventType.REMOVED)
class RemovedData(_Data):
    reason: RemovalReason
    consignee: ParticipantId | None = Field(
        None,
        description="The collector the remover hands the battery to: it may then post COLLECTED (and becomes the "
        "custodian). Without one, only the remover itself, or whoever it TRANSFERs the battery to, may go on.",
    )
    recall_campaign: CampaignId | None = Field(
        None,
        description="With reason `recall`: the recall campaign (registered by MOLIT) that covers this battery. "
        "Named only with that reason.",
    )

    @model_validator(mode="after")
    def _campaign_only_for_recalls(self) -> RemovedData:
        if self.recall_campaign is not None and self.reason is not RemovalReason.recall:
            raise ValueError("recall_campaign is named only with reason recall")
        return self


@DATA_MODELS.of(EventType.COLLECTED)
class CollectedData(_Data):
    centre: Annotated[str, Field(min_length=1, max_length=128)]
    region: Annotated[str, Field(min_length=1, max_length=64)]


@DATA_MODELS.of(EventType.GRADED)
class GradedData(_Data):
    soh_pct: Percent
    grade: Grade
    pre_removal: bool | None = Field(
        None,
        description="True: a pre-removal grading (탈거 전 성능평가) of a battery still in service, posted by an "
        "assessor without custody; the state stays in_service and the grade decides what may follow the removal.",
    )


@DATA_MODELS.of(EventType.REMANUFACTURED)
class RemanufacturedData(_Data):
    note: Annotated[str, Field(max_length=1000)] | None = None


@DATA_MODELS.of(EventType.REPURPOSED)
class RepurposedData(_Data):
    new_application: Annotated[str, Field(min_length=1, max_length=128, examples=["ESS"])]
    rated_capacity: Annotated[Positive, Field(description="Rated capacity after repurposing, kWh (at most 1e15).")]


@DATA_MODELS.of(EventType.SAFETY_INSPECTED)
class SafetyInspectedData(_Data):
    """A KC 10031 safety inspection of a reused battery and the certificate it issues."""

    certificate_number: (
        Annotated[str, Field(min_length=1, max_length=64, description="Required when the result is pass.")] | None
    ) = None
    body: Annotated[
        str, Field(min_length=1, max_length=128, description="The inspection body: one of the designated bodies.")
    ]
    standard: Annotated[str, Field(min_length=1, max_length=64)] = "KC 10031"
    edition: Annotated[str, Field(min_length=1, max_length=32, examples=["2024"])]
    result: Literal["pass", "fail"]
    valid_until: date | None = Field(None, description="The certificate's last valid day; required when pass.")
    report_ref: Annotated[str, Field(min_length=1, max_length=256, description="The inspection report's reference.")]

    @model_validator(mode="after")
    def _certificate(self) -> SafetyInspectedData:
        if self.result == "pass" and (self.certificate_number is None or self.valid_until is None):
            raise ValueError("a passing inspection names its certificate_number and valid_until")
        return self


if TYPE_CHECKING:  # built from the contract's material names; to a type checker, a model
    Materials = BaseModel
else:
    Materials = amounts_model("Materials", MATERIALS, NonNegative)


@DATA_MODELS.of(EventType.RECYCLED)
class RecycledData(_Data):
    process: Annotated[str, Field(min_length=1, max_length=64, examples=["hydrometallurgy"])]
    input_mass_kg: Positive
    black_mass_kg: NonNegative
    recovered_kg: Materials  # black mass ≤ input mass and the rest: services/events/lifecycle/plausibility.py


@DATA_MODELS.of(EventType.DISPOSED)
class DisposedData(_Data):
    method: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    note: Annotated[str, Field(max_length=1000)] | None = None


@DATA_MODELS.of(EventType.TRANSFERRED)
class TransferredData(_Data):
    to: Annotated[ParticipantId, Field(description="The participant that receives custody.")]


@DATA_MODELS.of(EventType.INCIDENT)
class IncidentData(_Data):
    kind: IncidentKind
    severity: Severity
    description: Annotated[str, Field(max_length=2000)] | None = None


#: Minutes in 50 years: a cumulative time above that is a typing error, not a battery's life.
MINUTES_MAX = 50 * 366 * 24 * 60
Minutes = Annotated[int, Field(ge=0, le=MINUTES_MAX)]
#: A relative change in % (an increase, an evolution): at least -100 % (down to nothing), at most +1,000 %.
Change = Annotated[float, Field(ge=-100, le=1000, allow_inf_nan=False), AfterValidator(lambda v: v + 0.0)]  # no -0.0


class PerComponent(_Data):
    """A value per battery component: the pack's, and where the BMS tells them, a module's and a cell's."""

    @model_validator(mode="after")
    def _some(self) -> PerComponent:
        if all(getattr(self, c) is None for c in BMS_COMPONENTS):
            raise ValueError(f"give at least one of {', '.join(BMS_COMPONENTS)}")
        return self


class ResistanceOhm(PerComponent):
    pack: Positive | None = None
    module: Positive | None = None
    cell: Positive | None = None


class ResistanceIncrease(PerComponent):
    pack: Change | None = None
    module: Change | None = None
    cell: Change | None = None


class ExtremeTemperatureMinutes(_Data):
    """Cumulative minutes outside the battery's temperature limits (Annex VII Part B (4)): all four together."""

    above: Minutes
    below: Minutes
    charging_above: Minutes
    charging_below: Minutes


class PowerAtSoc(_Data):
    at_soc_pct: Annotated[Percent, Field(description="The state of charge the power capability is measured at.")]
    power_w: NonNegative


def _reading(unit: str, what: str) -> Any:
    return Field(None, description=f"{what} ({unit}).")


@DATA_MODELS.of(EventType.BMS_REPORTED)
class BmsReportedData(_Data):
    """What a battery management system reports (EU Battery Regulation 2023/1542 Art. 14, Annex VII; the Battery
    Pass 1.2 PerformanceAndDurability `batteryCondition` and Catena-X 6.1 `performance/dynamic` fields, in their
    units). Any subset, at least one reading; the passport shows each field's newest reading of the life."""

    soh_pct: Percent | None = _reading("%", "State of health; never rises unless remanufactured (plausibility)")
    soce_pct: Percent | None = _reading("%", "State of certified energy (UN GTR 22), EV batteries")
    soc_pct: Percent | None = _reading("%", "State of charge")
    cycle_count: Count | None = _reading("cycles", "Full equivalent charge-discharge cycles; never falls")
    remaining_capacity_ah: NonNegative | None = _reading("Ah", "Remaining capacity; at most the rated one + margin")
    remaining_energy_kwh: NonNegative | None = _reading("kWh", "Remaining usable energy; at most the rated + margin")
    capacity_fade_pct: Percent | None = _reading("%", "Capacity fade")
    power_fade_pct: Percent | None = _reading("%", "Power fade")
    remaining_power_w: (
        Annotated[list[PowerAtSoc], Field(min_length=1, max_length=4, description="Remaining power capability (W).")]
        | None
    ) = None
    remaining_round_trip_efficiency_pct: Percent | None = _reading("%", "Remaining round-trip energy efficiency")
    round_trip_efficiency_fade_pct: Percent | None = _reading("%", "Round-trip energy efficiency fade")
    self_discharge_rate_pct_per_month: Percent | None = _reading("% per month", "Current self-discharge rate")
    self_discharge_evolution_pct: Change | None = _reading("%", "Evolution of the self-discharge rate")
    internal_resistance_ohm: ResistanceOhm | None = _reading("Ω", "Internal (ohmic) resistance per component")
    internal_resistance_increase_pct: ResistanceIncrease | None = _reading("%", "Internal resistance increase")
    energy_throughput_kwh: NonNegative | None = _reading("kWh", "Energy throughput since manufacture; never falls")
    capacity_throughput_ah: NonNegative | None = _reading("Ah", "Capacity throughput since manufacture; never falls")
    deep_discharge_events: Count | None = _reading("events", "Deep-discharge events so far; never falls")
    overcharge_events: Count | None = _reading("events", "Overcharge events so far; never falls")
    extreme_temperature_min: ExtremeTemperatureMinutes | None = _reading(
        "minutes", "Time spent in, and charging in, extreme temperatures so far; never falls"
    )

    @model_validator(mode="after")
    def _readings(self) -> BmsReportedData:
        if all(v is None for v in self.__dict__.values()):
            raise ValueError("a BMS report carries at least one reading")
        socs = [p.at_soc_pct for p in self.remaining_power_w or []]
        if len(set(socs)) != len(socs):
            raise ValueError("remaining_power_w: one power capability per state of charge")
        return self


@DATA_MODELS.of(EventType.ERROR_DECLARED)
class ErrorDeclaredData(_Data):
    """Declares an earlier event of the same battery erroneous (EPCIS ErrorDeclaration). The original stays
    in the ledger; this event marks it."""

    declared_event_id: Annotated[str, Field(description="The event_id (UUID) of the event declared in error.")]
    declared_actor: ParticipantId | None = Field(
        None,
        description="The participant that posted the declared event. Event IDs are unique per poster: needed only "
        "where several posters used the ID on this battery and the declared event is not the declarer's own.",
    )
    reason: Annotated[str, Field(min_length=1, max_length=256, examples=["incorrect_data", "did_not_occur"])]
    corrective_event_ids: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=512)]], Field(max_length=100)] | None
    ) = None

    @model_validator(mode="after")
    def _uuid(self) -> ErrorDeclaredData:
        self.declared_event_id = canonical_uuid(self.declared_event_id, "declared_event_id")
        return self


DATA_ADAPTERS = {t: TypeAdapter(m) for t, m in DATA_MODELS.items()}


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: Annotated[str, Field(max_length=128)] | None = None
    region: Annotated[str, Field(max_length=64, examples=["KR-11"])] | None = None


EXAMPLE_EVENT: dict[str, Any] = {
    "event_id": "5f0c8a8e-8a4c-4c9e-9a53-0f1d0d3c2b71",
    "battery_id": "KR-LGES-P000001",
    "type": "COLLECTED",
    "occurred_at": "2026-11-02T10:30:00+09:00",
    "location": {"site": "Siheung collection centre", "region": "KR-41"},
    "data": {"centre": "SIHEUNG-01", "region": "KR-41"},
}


class EventIn(BaseModel):
    """An event as posted. `data` is checked against the type's own fields (see the schemas of each type)."""

    model_config = documented(EXAMPLE_EVENT, extra="forbid")
    event_id: Annotated[str, Field(description="UUID chosen by the client; retries reuse it.")]
    battery_id: BatteryId
    type: EventType
    occurred_at: PastAwareDatetime
    location: Location = Location()
    data: dict[str, Any] = Field(default_factory=dict)
    expected_sequence: Annotated[Count, Field(description="Refuse unless the battery's sequence is this.")] | None = (
        None
    )

    @model_validator(mode="after")
    def _check(self) -> EventIn:
        self.event_id = canonical_uuid(self.event_id, "event_id")
        return self


class BatchIn(BaseModel):
    model_config = documented({"events": [EXAMPLE_EVENT]}, extra="forbid")
    events: Annotated[list[EventIn], Field(min_length=1, max_length=5000)]


class EventResult(BaseModel):
    event_id: str
    battery_id: str
    sequence: int
    hash: str
    state: State
    custodian: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> EventResult:
        """What an accepted event is answered, from its ledger row (as stored or published)."""
        renamed = {"state": "state_after", "custodian": "custodian_after"}
        return cls(**{name: row[renamed.get(name, name)] for name in cls.model_fields})


class BatchOut(BaseModel):
    results: list[EventResult]


class Timeline(Page[LedgerEvent]):
    pass


class StateOut(BaseModel):
    """A battery's current lifecycle state: what its last event left, and the events that may follow."""

    battery_id: str = Field(examples=["KR-LGES-P000001"])
    kind: str = Field(description="cell, module or pack.", examples=["pack"])
    manufacturer: str = Field(description="The manufacturer's participant ID.", examples=["LGES"])
    state: State
    custodian: str = Field(description="The participant holding the battery now (custody).", examples=["HMC"])
    sequence: int = Field(ge=1, description="The sequence number of its last event (1: MANUFACTURED).")
    last_event_at: datetime = Field(description="When its last event occurred.")
    grade: Grade | None = Field(None, description="The grade of its last GRADED since collection, if any.")
    pre_removal_grade: Grade | None = Field(None, description="A grade given in service, before any removal.")
    safety_inspection: dict[str, Any] | None = Field(
        None, description="Its latest SAFETY_INSPECTED: KC 10031 result, body, certificate and validity."
    )
    parent_id: str | None = Field(None, description="The module or pack it is assembled into, if any.")
    allowed_events: list[EventType] = Field(
        [], description="The event types its state and grade allow next (custody and roles still apply)."
    )


class VerifyOut(BaseModel):
    battery_id: str
    valid: bool
    events: int
    head_hash: str | None
    broken_at_sequence: int | None = None
    reason: str | None = None
    from_sequence: int = 1  # the page of the chain this answer checked starts here
    next_from_sequence: int | None = None  # where the next page starts; None: the page reached the head
