"""Response models of the ministry views. Flows (`by_month`, counts of events) cover the period asked;
sections ending in `_now` are stocks at the time of the request."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from shared.validation import documented


class PeriodOut(BaseModel):
    from_month: date | None = Field(description="First month included (periods are month-granular, KST).")
    to_month: date | None
    region: str | None


# ---- MOTIE ----
class Registration(BaseModel):
    month: date
    manufacturer: str
    chemistry: str
    kind: str
    batteries: int
    kwh: float


class Registrations(BaseModel):
    batteries: int
    packs: int
    pack_kwh: float = Field(description="Rated energy of the packs (cells and modules are inside them).")
    by_month_manufacturer_chemistry_kind: list[Registration]


class OutcomeMonth(BaseModel):
    month: date
    outcome: str
    batteries: int


class OutcomeMaker(BaseModel):
    manufacturer: str
    outcome: str
    batteries: int


class Outcomes(BaseModel):
    totals: dict[str, int] = Field(description="repurposed / remanufactured / recycled")
    by_month: list[OutcomeMonth]
    by_manufacturer: list[OutcomeMaker]


class MaterialsMonth(BaseModel):
    """Every material a recycler may report recovered (kg)."""

    month: date
    lithium: float
    nickel: float
    cobalt: float
    manganese: float
    copper: float = 0.0
    aluminium: float = 0.0
    graphite: float = 0.0
    lead: float = 0.0


class Recovered(BaseModel):
    totals: dict[str, float]
    by_month: list[MaterialsMonth]


class RecycledContent(BaseModel):
    manufacturer: str
    chemistry: str
    batteries: int
    avg_pct: dict[str, float | None]


class MotieView(BaseModel):
    model_config = documented(
        {
            "period": {"from_month": "2026-01-01", "to_month": "2026-12-01", "region": None},
            "registrations": {
                "batteries": 2,
                "packs": 2,
                "pack_kwh": 154.8,
                "by_month_manufacturer_chemistry_kind": [
                    {
                        "month": "2026-01-01",
                        "manufacturer": "LGES",
                        "chemistry": "NCM",
                        "kind": "pack",
                        "batteries": 2,
                        "kwh": 154.8,
                    }
                ],
            },
            "outcomes": {
                "totals": {"recycled": 1},
                "by_month": [{"month": "2026-09-01", "outcome": "recycled", "batteries": 1}],
                "by_manufacturer": [{"manufacturer": "LGES", "outcome": "recycled", "batteries": 1}],
            },
            "recovered_materials_kg": {
                "totals": {"lithium": 4.0, "nickel": 36.0, "cobalt": 4.5, "manganese": 4.0},
                "by_month": [{"month": "2026-09-01", "lithium": 4.0, "nickel": 36.0, "cobalt": 4.5, "manganese": 4.0}],
            },
            "recycled_content_declared": [
                {
                    "manufacturer": "LGES",
                    "chemistry": "NCM",
                    "batteries": 2,
                    "avg_pct": {"lithium": 6.0, "nickel": 4.0, "cobalt": 16.0, "lead": 0.0},
                }
            ],
        }
    )
    period: PeriodOut
    registrations: Registrations = Field(description="By manufacturing month; the region filter does not apply.")
    outcomes: Outcomes
    recovered_materials_kg: Recovered
    recycled_content_declared: list[RecycledContent]


# ---- MOLIT ----
class RegionCount(BaseModel):
    region: str
    batteries: int


class InService(BaseModel):
    batteries: int
    by_region: list[RegionCount]


class Installation(BaseModel):
    month: date
    region: str
    target: str = Field(description="vehicle (VIN) or ess")
    batteries: int


class RegionInspections(BaseModel):
    region: str
    inspections: int
    avg_soh_pct: float | None


class Inspections(BaseModel):
    inspections: int
    avg_soh_pct: float | None
    soh_distribution: dict[str, int] = Field(description="Inspections per SoH band (%).")
    by_region: list[RegionInspections]


class RegionReason(BaseModel):
    region: str
    reason: str
    batteries: int


class Removals(BaseModel):
    batteries: int
    by_reason: dict[str, int]
    by_region: list[RegionReason]


class KindSeverity(BaseModel):
    kind: str
    severity: str
    incidents: int


class RegionIncidents(BaseModel):
    region: str
    incidents: int


class Incidents(BaseModel):
    incidents: int
    by_kind_severity: list[KindSeverity]
    by_region: list[RegionIncidents]


class GradeCount(BaseModel):
    grade: str
    gradings: int
    avg_soh_pct: float | None


class PreRemovalGradings(BaseModel):
    gradings: int = Field(description="Pre-removal gradings (탈거 전 성능평가) of installed batteries in the period.")
    by_grade: list[GradeCount]


class MolitView(BaseModel):
    model_config = documented(
        {
            "period": {"from_month": None, "to_month": None, "region": "KR-31"},
            "pre_removal_gradings": {
                "gradings": 1,
                "by_grade": [{"grade": "reuse", "gradings": 1, "avg_soh_pct": 74.0}],
            },
            "in_service_now": {"batteries": 1, "by_region": [{"region": "KR-31", "batteries": 1}]},
            "installations": [{"month": "2026-02-01", "region": "KR-31", "target": "vehicle", "batteries": 1}],
            "inspections": {
                "inspections": 1,
                "avg_soh_pct": 96.5,
                "soh_distribution": {"90-100": 1},
                "by_region": [{"region": "KR-31", "inspections": 1, "avg_soh_pct": 96.5}],
            },
            "removals": {"batteries": 0, "by_reason": {}, "by_region": []},
            "incidents": {"incidents": 0, "by_kind_severity": [], "by_region": []},
        }
    )
    period: PeriodOut
    pre_removal_gradings: PreRemovalGradings
    in_service_now: InService
    installations: list[Installation]
    inspections: Inspections
    removals: Removals
    incidents: Incidents


# ---- MCEE ----
class CentreCount(BaseModel):
    region: str
    centre: str
    batteries: int
    kg: float = Field(description="Registered mass of the batteries collected.")
    kwh: float = Field(description="Rated energy of the batteries collected.")


class MonthCount(BaseModel):
    month: date
    batteries: int
    kg: float
    kwh: float


class Collected(BaseModel):
    batteries: int
    kg: float
    kwh: float
    by_region_centre: list[CentreCount]
    by_month: list[MonthCount]


class Backlog(BaseModel):
    removed_not_collected: int
    removed_over_30_days: int
    collected_not_graded: int
    collected_over_30_days: int


class ProcessRow(BaseModel):
    process: str
    batteries: int
    input_mass_kg: float
    black_mass_kg: float


class Recycling(BaseModel):
    batteries: int
    input_mass_kg: float
    black_mass_kg: float
    by_process: list[ProcessRow]


class Recovery(BaseModel):
    material: str
    recovered_kg: float
    contained_kg: float = Field(description="Declared content (registry) of the batteries recycled in the period.")
    rate_pct: float | None
    eu_target_2027_pct: float | None = Field(description="Regulation (EU) 2023/1542 Annex XII part C, by 2027.")
    eu_target_2031_pct: float | None = Field(description="Annex XII part C, by 2031.")
    meets_2027_target: bool | None
    meets_2031_target: bool | None


class Efficiency(BaseModel):
    """Recycling efficiency of lithium-based batteries (Annex XII part B): recovered kg of every reported material
    over the input mass (a lower bound: unreported fractions, such as steel, are not counted)."""

    input_mass_kg: float
    recovered_kg: float
    efficiency_pct: float | None
    eu_target_2025_pct: float
    eu_target_2030_pct: float
    meets_2025_target: bool | None
    meets_2030_target: bool | None


class NationalEfficiency(Efficiency):
    batteries: int = Field(description="Lithium-based batteries recycled in the period.")


class RecyclerFigures(BaseModel):
    recycler: str
    batteries: int
    recovery: list[Recovery]
    recycling_efficiency: Efficiency


class Disposals(BaseModel):
    batteries: int
    by_method: dict[str, int]


class McceeView(BaseModel):
    model_config = documented(
        {
            "period": {"from_month": None, "to_month": None, "region": None},
            "collected": {
                "batteries": 1,
                "kg": 477.0,
                "kwh": 77.4,
                "by_region_centre": [
                    {"region": "KR-41", "centre": "SIHEUNG-01", "batteries": 1, "kg": 477.0, "kwh": 77.4}
                ],
                "by_month": [{"month": "2026-08-01", "batteries": 1, "kg": 477.0, "kwh": 77.4}],
            },
            "backlog_now": {
                "removed_not_collected": 0,
                "removed_over_30_days": 0,
                "collected_not_graded": 0,
                "collected_over_30_days": 0,
            },
            "recycling": {
                "batteries": 1,
                "input_mass_kg": 477.0,
                "black_mass_kg": 150.0,
                "by_process": [
                    {
                        "process": "hydrometallurgy",
                        "batteries": 1,
                        "input_mass_kg": 477.0,
                        "black_mass_kg": 150.0,
                    }
                ],
            },
            "recovery": [
                {
                    "material": "lithium",
                    "recovered_kg": 4.0,
                    "contained_kg": 8.0,
                    "rate_pct": 50.0,
                    "eu_target_2027_pct": 50.0,
                    "eu_target_2031_pct": 80.0,
                    "meets_2027_target": True,
                    "meets_2031_target": False,
                }
            ],
            "recycling_efficiency": {
                "batteries": 1,
                "input_mass_kg": 477.0,
                "recovered_kg": 340.0,
                "efficiency_pct": 71.28,
                "eu_target_2025_pct": 65.0,
                "eu_target_2030_pct": 70.0,
                "meets_2025_target": True,
                "meets_2030_target": True,
            },
            "by_recycler": [],
            "disposals": {"batteries": 0, "by_method": {}},
        }
    )
    period: PeriodOut
    collected: Collected
    backlog_now: Backlog
    recycling: Recycling
    recovery: list[Recovery]
    recycling_efficiency: NationalEfficiency
    by_recycler: list[RecyclerFigures]
    disposals: Disposals


# ---- KATS ----
class StatusSafety(BaseModel):
    status: str = Field(description="repurposed or remanufactured")
    safety: str = Field(description="pass, fail or pending (no safety inspection in this life yet)")
    batteries: int


class Reused(BaseModel):
    batteries: int
    by_status_safety: list[StatusSafety]


class ResultBody(BaseModel):
    result: str
    body: str
    standard: str
    inspections: int


class SafetyInspections(BaseModel):
    inspections: int
    by_result_body: list[ResultBody]


class GradeRow(BaseModel):
    grade: str
    batteries: int
    avg_soh_pct: float | None


class CertificateRow(BaseModel):
    battery_id: str
    state: str | None
    status: str
    region: str | None
    certificate_number: str | None
    certificate_body: str | None
    certificate_valid_until: date


class IncidentsAfterReuse(BaseModel):
    incidents: int
    by_kind_severity: list[KindSeverity]


class KatsView(BaseModel):
    model_config = documented(
        {
            "period": {"from_month": None, "to_month": None, "region": None},
            "reused_now": {
                "batteries": 1,
                "by_status_safety": [{"status": "repurposed", "safety": "pass", "batteries": 1}],
            },
            "safety_inspections": {
                "inspections": 1,
                "by_result_body": [{"result": "pass", "body": "KTL", "standard": "KC 10031", "inspections": 1}],
            },
            "grades": [{"grade": "reuse", "batteries": 1, "avg_soh_pct": 82.0}],
            "certificates_expiring_90_days": [
                {
                    "battery_id": "KR-LGES-P000001",
                    "state": "in_service",
                    "status": "repurposed",
                    "region": "KR-11",
                    "certificate_number": "KC10031-2026-0412",
                    "certificate_body": "KTL",
                    "certificate_valid_until": "2027-01-31",
                }
            ],
            "in_service_on_expired_certificate": [],
            "incidents_after_reuse": {"incidents": 0, "by_kind_severity": []},
        }
    )
    period: PeriodOut
    reused_now: Reused
    safety_inspections: SafetyInspections
    grades: list[GradeRow]
    certificates_expiring_90_days: list[CertificateRow] = Field(
        description="KC 10031 certificates valid until a day in the next 90 (now, the soonest first)."
    )
    in_service_on_expired_certificate: list[CertificateRow] = Field(
        description="Reused batteries in service whose latest KC 10031 certificate has expired (now)."
    )
    incidents_after_reuse: IncidentsAfterReuse
