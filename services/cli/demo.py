"""`batterytrace demo` / `batterytrace dev --demo`: a realistic, deterministic demo loaded through the real
HTTP APIs (registry → Kafka → events → Kafka → portal), so that every ministry view shows figures.

What it loads (seeded, so the same seed gives the same data):
- participants of every role: 3 manufacturers, 3 OEMs (two carmakers and an ESS integrator), 2 inspectors,
  5 dismantlers, 8 collection centres in 8 regions, 2 assessors, 2 remanufacturers, 2 repurposers, the
  certifiers KTL and KTR, 3 recyclers, the four ministries and an operator;
- 18 models: cell, module and pack models of six families in four chemistries (NCM, NCA, LFP, LMFP);
- `packs` packs (2,000 by default), each with a sampled composition of 2 modules x 4 cells (a real pack has
  far more; the sample keeps the load to about a minute), registered and ASSEMBLED cell → module → pack,
  manufactured between January 2024 and about three weeks ago;
- plausible lifecycles: transfer to an OEM and installation (VIN aliases, or an ESS site), periodic
  inspections with declining SoH, incidents, removals (accident, recall, replacement, end of life),
  collection by region, grading, then repurposing (with KC 10031 safety inspections, re-installation at
  ESS sites), remanufacturing (a weak module taken out and recycled), recycling (recovered masses from
  the pack's declared content and the process's yields), a few disposals, and backlogs left waiting.
  The first packs follow scripted stories so that even a small demo fills every section of every view.

Idempotent: participants, models and batteries that exist (409) are skipped; event IDs are UUIDv5 of the
battery and step, and all times are fixed relative to the first run's clock (read back from the first
pack's manufacturing date), so a second run re-posts the same events as harmless retries.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.auth import mint_token

console = Console(stderr=True)

DEMO_NS = uuid.UUID("5b1d0c3e-7a0e-5d8e-9a61-2f1c7e0b9d42")
#: The demo's time span: manufacturing starts about SPAN before the first run's clock.
SPAN_DAYS = 1050
DAY = 1440  # minutes
MODULES_PER_PACK = 2
CELLS_PER_MODULE = 4
EVENT_BATCH = 2500
REGISTER_BATCH = 2500

# ---------------------------------------------------------------------------------------------------------
# Participants
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    role: str
    region: str | None = None
    site: str | None = None
    ministry: str | None = None


ORGS: list[Org] = [
    Org("LGES", "LG Energy Solution", "manufacturer", "KR-43", "Ochang plant"),
    Org("SDI", "Samsung SDI", "manufacturer", "KR-44", "Cheonan plant"),
    Org("SKON", "SK On", "manufacturer", "KR-44", "Seosan plant"),
    Org("HMC", "Hyundai Motor Company", "oem", "KR-31", "Ulsan plant"),
    Org("KIA", "Kia Corporation", "oem", "KR-41", "Hwaseong plant"),
    Org("HANWHA-ESS", "Hanwha Qcells ESS", "oem", "KR-11", "ESS integration"),
    Org("KOTSA", "Korea Transportation Safety Authority", "inspector", "KR-47", "KOTSA inspection centre"),
    Org("KATRI", "Korea Automotive Testing & Research Institute", "inspector", "KR-41", "KATRI Hwaseong"),
    Org("DISM-SEOUL", "Seoul Auto Dismantling", "dismantler", "KR-11", "Seoul dismantling yard"),
    Org("DISM-GYEONGGI", "Gyeonggi EV Dismantling", "dismantler", "KR-41", "Hwaseong dismantling yard"),
    Org("DISM-BUSAN", "Busan Auto Recycling", "dismantler", "KR-26", "Busan dismantling yard"),
    Org("DISM-DAEGU", "Daegu Dismantling", "dismantler", "KR-27", "Daegu dismantling yard"),
    Org("DISM-JEONBUK", "Jeonbuk Dismantling", "dismantler", "KR-45", "Jeonju dismantling yard"),
    Org("COL-SIHEUNG", "Siheung collection centre (수도권)", "collector", "KR-41", "SIHEUNG-01"),
    Org("COL-SEOUL", "Seoul collection centre", "collector", "KR-11", "SEOUL-01"),
    Org("COL-HONGSEONG", "Hongseong collection centre (충청권)", "collector", "KR-44", "HONGSEONG-01"),
    Org("COL-DAEGU", "Daegu collection centre (영남권)", "collector", "KR-27", "DAEGU-01"),
    Org("COL-JEONGEUP", "Jeongeup collection centre (호남권)", "collector", "KR-45", "JEONGEUP-01"),
    Org("COL-BUSAN", "Busan collection centre", "collector", "KR-26", "BUSAN-01"),
    Org("COL-POHANG", "Pohang collection centre", "collector", "KR-47", "POHANG-01"),
    Org("COL-CHANGWON", "Changwon collection centre", "collector", "KR-48", "CHANGWON-01"),
    Org("ASSESS-KTC", "KTC battery performance assessment", "assessor", "KR-41", "Gunpo assessment lab"),
    Org("ASSESS-KCL", "KCL battery performance assessment", "assessor", "KR-11", "Seoul assessment lab"),
    Org("REMAN-GLOVIS", "Hyundai Glovis remanufacturing", "remanufacturer", "KR-41", "Pyeongtaek reman"),
    Org("REMAN-DAEGU", "Daegu battery remanufacturing", "remanufacturer", "KR-27", "Daegu reman"),
    Org("REPUR-JEJU", "Jeju EV battery reuse centre", "repurposer", "KR-49", "Jeju reuse centre"),
    Org("REPUR-POHANG", "Pohang ESS repurposing", "repurposer", "KR-47", "Pohang repurposing"),
    Org("KTL", "Korea Testing Laboratory", "certifier", "KR-48", "KTL Jinju"),
    Org("KTR", "Korea Testing & Research Institute", "certifier", "KR-41", "KTR Gwacheon"),
    Org("REC-SUNGEEL", "SungEel HiTech", "recycler", "KR-45", "Gunsan recycling plant"),
    Org("REC-KOREAZINC", "Korea Zinc", "recycler", "KR-31", "Onsan smelter"),
    Org("REC-POSCO", "POSCO HY Clean Metal", "recycler", "KR-46", "Gwangyang recycling plant"),
    Org("MOTIE", "산업통상부", "ministry", ministry="MOTIE"),
    Org("MOLIT", "국토교통부", "ministry", ministry="MOLIT"),
    Org("MCEE", "기후에너지환경부", "ministry", ministry="MCEE"),
    Org("KATS", "국가기술표준원", "ministry", ministry="KATS"),
    Org("BT-OPS", "batterytrace operations", "operator", "KR-11"),
]
BY_ID = {o.id: o for o in ORGS}
ADMIN = ("BT-ADMIN", "admin")

#: Where vehicles are registered (weights ≈ EV registrations), and each region's nearest centre/dismantler.
HOME_REGIONS = {
    "KR-41": 26, "KR-11": 17, "KR-49": 6, "KR-26": 7, "KR-48": 7, "KR-28": 6, "KR-47": 5, "KR-27": 5,
    "KR-44": 4, "KR-30": 3, "KR-29": 3, "KR-31": 3, "KR-43": 3, "KR-45": 3, "KR-46": 2,
}  # fmt: skip
CENTRE_OF = {
    "KR-41": "COL-SIHEUNG", "KR-28": "COL-SIHEUNG", "KR-11": "COL-SEOUL", "KR-44": "COL-HONGSEONG",
    "KR-30": "COL-HONGSEONG", "KR-43": "COL-HONGSEONG", "KR-27": "COL-DAEGU", "KR-31": "COL-BUSAN",
    "KR-26": "COL-BUSAN", "KR-47": "COL-POHANG", "KR-48": "COL-CHANGWON", "KR-45": "COL-JEONGEUP",
    "KR-29": "COL-JEONGEUP", "KR-46": "COL-JEONGEUP", "KR-49": "COL-JEONGEUP",
}  # fmt: skip
DISMANTLER_OF = {
    "KR-11": "DISM-SEOUL", "KR-28": "DISM-SEOUL", "KR-41": "DISM-GYEONGGI", "KR-44": "DISM-GYEONGGI",
    "KR-30": "DISM-GYEONGGI", "KR-43": "DISM-GYEONGGI", "KR-26": "DISM-BUSAN", "KR-31": "DISM-BUSAN",
    "KR-48": "DISM-BUSAN", "KR-27": "DISM-DAEGU", "KR-47": "DISM-DAEGU", "KR-45": "DISM-JEONBUK",
    "KR-29": "DISM-JEONBUK", "KR-46": "DISM-JEONBUK", "KR-49": "DISM-JEONBUK",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# Models: six families, each a pack, module and cell model. Material content per kWh by chemistry.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    key: str
    manufacturer: str
    chemistry: str
    weight: int
    pack: tuple[float, float, float]  # kWh, nominal V, kg
    module: tuple[float, float, float]
    cell: tuple[float, float, float]  # Ah, nominal V, kg
    fade_pct_per_year: tuple[float, float]

    def model_id(self, kind: str) -> str:
        return f"{self.key}-{kind[0].upper()}"

    @property
    def pack_kwh(self) -> float:
        return self.pack[0]


FAMILIES = [
    Family("LGES-NCM811-E77", "LGES", "NCM", 30, (77.4, 697.0, 477.0), (2.42, 21.8, 14.2), (55.6, 3.63, 0.89), (1.8, 3.4)),
    Family("LGES-LFP-E60", "LGES", "LFP", 10, (60.0, 350.0, 430.0), (5.0, 38.4, 33.0), (130.0, 3.2, 2.3), (1.0, 2.2)),
    Family("SDI-NCA-P84", "SDI", "NCA", 15, (84.0, 360.0, 490.0), (4.2, 36.0, 24.0), (94.0, 3.65, 2.0), (2.0, 3.6)),
    Family("SDI-NCM-P64", "SDI", "NCM", 10, (64.0, 356.0, 410.0), (4.0, 44.5, 25.0), (60.0, 3.68, 0.95), (1.8, 3.2)),
    Family("SKON-NCM9-E98", "SKON", "NCM", 25, (98.0, 653.0, 530.0), (3.27, 21.8, 17.0), (75.0, 3.63, 1.1), (2.0, 3.6)),
    Family("SKON-LMFP-E70", "SKON", "LMFP", 10, (70.0, 400.0, 450.0), (4.4, 50.0, 28.0), (105.0, 3.4, 1.9), (1.2, 2.6)),
]  # fmt: skip
FAMILY_BY_KEY = {f.key: f for f in FAMILIES}
#: kg per kWh of lithium, nickel, cobalt, manganese, graphite.
CONTENT_PER_KWH = {
    "NCM": (0.115, 0.60, 0.075, 0.070, 1.00),
    "NCA": (0.105, 0.68, 0.090, 0.0, 0.95),
    "LFP": (0.095, 0.0, 0.0, 0.0, 1.20),
    "LMFP": (0.090, 0.0, 0.0, 0.300, 1.10),
}
MATERIALS = ("lithium", "nickel", "cobalt", "manganese", "graphite")
#: Recovery yields (low, high) per process for Li, Ni, Co, Mn.
YIELDS = {
    "hydrometallurgy": {"lithium": (0.55, 0.82), "nickel": (0.93, 0.98), "cobalt": (0.94, 0.98), "manganese": (0.85, 0.95)},
    "pyrometallurgy": {"lithium": (0.10, 0.35), "nickel": (0.92, 0.97), "cobalt": (0.93, 0.97), "manganese": (0.15, 0.35)},
    "direct-recycling": {"lithium": (0.85, 0.93), "nickel": (0.90, 0.95), "cobalt": (0.90, 0.95), "manganese": (0.88, 0.94)},
}  # fmt: skip


def model_bodies() -> list[tuple[str, dict[str, Any]]]:
    """(manufacturer, model body) for every family's pack, module and cell model."""
    out = []
    for f in FAMILIES:
        kwh, v, kg = f.pack
        out.append((f.manufacturer, _model(f, "pack", round(kwh * 1000 / v, 1), v, kwh, kg)))
        kwh, v, kg = f.module
        out.append((f.manufacturer, _model(f, "module", round(kwh * 1000 / v, 1), v, kwh, kg)))
        ah, v, kg = f.cell
        out.append((f.manufacturer, _model(f, "cell", ah, v, round(ah * v / 1000, 3), kg)))
    return out


def _model(f: Family, kind: str, ah: float, v: float, kwh: float, kg: float) -> dict[str, Any]:
    return {
        "id": f.model_id(kind),
        "kind": kind,
        "chemistry": f.chemistry,
        "rated_capacity_ah": ah,
        "nominal_voltage_v": v,
        "rated_energy_kwh": kwh,
        "mass_kg": kg,
    }


def kind_specs(f: Family, kind: str) -> tuple[float, float]:
    """(kWh, kg) of one battery of the family's `kind`."""
    if kind == "pack":
        return f.pack[0], f.pack[2]
    if kind == "module":
        return f.module[0], f.module[2]
    return round(f.cell[0] * f.cell[1] / 1000, 3), f.cell[2]


# ---------------------------------------------------------------------------------------------------------
# The plan: registrations and events, with times in minutes from the demo's start
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Ev:
    actor: str
    battery_id: str
    type: str
    at: int  # minutes after the start
    data: dict[str, Any]
    region: str | None = None
    site: str | None = None
    event_id: str = ""


@dataclass
class PackPlan:
    index: int
    family: Family
    pack_id: str
    batteries: list[dict[str, Any]]  # registration bodies; manufactured_at in minutes (key "_at")
    events: list[Ev] = field(default_factory=list)
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (oem, VIN)


class _Horizon(Exception):
    """The next step would happen after the demo's 'now': the story stops here."""


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


#: Scripted stories for the first packs, so that every figure of every view shows up in a small demo.
STORIES: list[dict[str, Any]] = [
    {"reason": "accident", "incident": ("fire", "high"), "collect": True, "grade": "recycle", "process": "hydrometallurgy"},
    {"reason": "end_of_life", "collect": True, "grade": "reuse", "safety": ["pass"], "reinstall": True, "reuse_incident": True},
    {"reason": "recall", "collect": True, "grade": "remanufacture", "take_module": True, "safety": ["pass"], "reinstall": True},
    {"reason": "replacement", "collect": True, "grade": "reuse", "safety": ["fail"], "after_fail": "dispose"},
    {"reason": "accident", "incident": ("thermal_runaway", "critical"), "collect": True, "dispose_collected": True},
    {"reason": "end_of_life", "collect": False, "removed_days_ago": 75},
    {"reason": "accident", "collect": True, "grade": None, "collected_days_ago": 50},
    {"removal": False, "incident": ("swelling", "medium")},
    {"reason": "end_of_life", "collect": True, "grade": "recycle", "process": "pyrometallurgy"},
    {"reason": "replacement", "collect": True, "grade": "reuse", "safety": []},
    {"reason": "recall", "collect": True, "grade": "remanufacture", "take_module": False, "safety": ["pass"], "reinstall": False},
    {"family": "LGES-LFP-E60", "ess": True, "removal": False},
    {"reason": "replacement", "collect": True, "grade": "reuse", "safety": ["fail", "pass"], "reinstall": True},
    {"reason": "end_of_life", "collect": True, "grade": "recycle", "process": "direct-recycling"},
]  # fmt: skip


class PlanBuilder:
    """Walks one pack family (pack, modules, cells) through a plausible life, seeded by (seed, index)."""

    def __init__(self, seed: int, index: int) -> None:
        self.rng = random.Random(f"batterytrace-demo:{seed}:{index}")
        self.seed = seed
        self.index = index
        self.horizon = SPAN_DAYS * DAY
        self.story = STORIES[index] if index < len(STORIES) else {}
        self.t = 0
        self.events: list[Ev] = []
        self.extra_aliases: list[tuple[str, str]] = []  # VINs of re-installed remanufactured packs

    # -- helpers --
    def decide(self, key: str, default: Callable[[], Any]) -> Any:
        return self.story[key] if key in self.story else default()

    def later(self, lo_days: float, hi_days: float) -> int:
        self.t += self.rng.randint(int(lo_days * DAY), int(hi_days * DAY))
        if self.t > self.horizon:
            raise _Horizon
        return self.t

    def emit(
        self, actor: str, battery_id: str, etype: str, data: dict[str, Any], *, at: int | None = None,
        region: str | None = None, site: str | None = None,
    ) -> None:  # fmt: skip
        org = BY_ID[actor]
        self.events.append(
            Ev(actor, battery_id, etype, self.t if at is None else at, data, region or org.region, site or org.site)
        )

    def build(self) -> PackPlan:
        rng = self.rng
        fam = FAMILY_BY_KEY[self.story["family"]] if "family" in self.story else (
            rng.choices(FAMILIES, weights=[f.weight for f in FAMILIES])[0]
        )  # fmt: skip
        mfr = BY_ID[fam.manufacturer]
        n = self.index + 1
        pack_id = f"KR-{fam.manufacturer}-P{n:06d}"
        # Scripted stories are older packs, so that their whole story fits before 'now'.
        lo, hi = (40, 200) if self.story else (5, SPAN_DAYS - 20)
        t_pack = rng.randint(lo * DAY, hi * DAY) + rng.randint(8 * 60, 18 * 60)
        t_module = t_pack - DAY + rng.randint(-120, 120)
        t_cell = t_pack - 3 * DAY + rng.randint(-600, 600)
        year = 2024 + t_pack // DAY // 365  # the demo starts about January 2024
        rc = {
            "lithium": round(rng.uniform(0, 4) + (year - 2024) * 1.0, 1),
            "nickel": round(rng.uniform(2, 6) + (year - 2024) * 1.0, 1),
            "cobalt": round(rng.uniform(6, 14) + (year - 2024) * 1.5, 1),
            "lead": 0.0,
        }
        footprint = round(rng.uniform(45, 70) if fam.chemistry in ("LFP", "LMFP") else rng.uniform(58, 95), 1)
        var = rng.uniform(0.97, 1.03)

        def body(bid: str, kind: str, at: int, serial: str) -> dict[str, Any]:
            kwh, _ = kind_specs(fam, kind)
            per = CONTENT_PER_KWH[fam.chemistry]
            return {
                "id": bid,
                "model_id": fam.model_id(kind),
                "kind": kind,
                "serial_number": serial,
                "_at": at,
                "manufacturing_site": f"{mfr.site}, KR",
                "materials_kg": {m: round(per[i] * kwh * var, 3) for i, m in enumerate(MATERIALS)},
                "recycled_content_pct": rc,
                "carbon_footprint_kg_co2e_per_kwh": footprint,
            }

        batteries = [body(pack_id, "pack", t_pack, f"P{n:06d}")]
        modules = [f"KR-{fam.manufacturer}-M{n:06d}-{m + 1}" for m in range(MODULES_PER_PACK)]
        for m, mid in enumerate(modules):
            batteries.append(body(mid, "module", t_module, f"M{n:06d}{m + 1}"))
            for c in range(CELLS_PER_MODULE):
                cid = f"KR-{fam.manufacturer}-C{n:06d}-{m + 1}{c + 1}"
                batteries.append(body(cid, "cell", t_cell + c * 7, f"C{n:06d}{m + 1}{c + 1}"))
                self.emit(mfr.id, cid, "ASSEMBLED", {"parent_id": mid}, at=t_module + 60 + c)
        for m, mid in enumerate(modules):
            self.emit(mfr.id, mid, "ASSEMBLED", {"parent_id": pack_id}, at=t_pack + 90 + m)
        self.t = t_pack + 120
        plan = PackPlan(self.index, fam, pack_id, batteries)
        try:
            self._life(plan, modules)
        except _Horizon:
            pass
        for k, ev in enumerate(self.events):
            ev.event_id = str(uuid.uuid5(DEMO_NS, f"{self.seed}/{ev.battery_id}/{k}/{ev.type}"))
        plan.events = self.events
        plan.aliases.extend(self.extra_aliases)
        return plan

    def _vin(self, oem: str, serial: int, year_code: str) -> str:
        wmi, vds = ("KMH", "K381G") if oem == "HMC" else ("KNA", "C381C")
        return f"{wmi}{vds}{self.rng.choice('0123456789X')}{year_code}U{serial:06d}"

    def _life(self, plan: PackPlan, modules: list[str]) -> None:
        rng, fam, pid = self.rng, plan.family, plan.pack_id
        mfr = fam.manufacturer
        if not self.story and rng.random() < 0.05:
            return  # unsold stock at the manufacturer
        ess = self.decide("ess", lambda: rng.random() < (0.6 if fam.chemistry == "LFP" else 0.03))
        oem = "HANWHA-ESS" if ess else _weighted(rng, {"HMC": 55, "KIA": 45})
        home = _weighted(rng, HOME_REGIONS)
        self.later(3, 25)
        self.emit(mfr, pid, "TRANSFERRED", {"to": oem})
        t_install = self.later(4, 40)
        if ess:
            site = f"ESS-{home[3:]}-{rng.randint(1, 60):03d}"
            self.emit(oem, pid, "INSTALLED", {"ess_site_id": site}, region=home, site=site)
        else:
            year_code = "RSTV"[min(3, t_install // DAY // 365)]  # model years 2024 (R) … 2027 (V)
            vin = self._vin(oem, 100000 + self.index, year_code)
            plan.aliases.append((oem, vin))
            self.emit(oem, pid, "INSTALLED", {"vin": vin})

        # Removal: more likely the longer the pack has been in service.
        service_days = (self.horizon - t_install) / DAY
        removal = self.decide("removal", lambda: rng.random() < 0.10 + 0.40 * min(service_days, 900) / 900)
        reason = self.decide("reason", lambda: _weighted(
            rng, {"accident": 38, "replacement": 22, "recall": 18, "end_of_life": 22}))  # fmt: skip
        lo_fade, hi_fade = fam.fade_pct_per_year
        fade = rng.uniform(8, 13) if removal and reason == "end_of_life" else rng.uniform(lo_fade, hi_fade)
        soh0 = rng.uniform(98.2, 99.6)
        if removal:
            if "removed_days_ago" in self.story:
                t_removed = self.horizon - self.story["removed_days_ago"] * DAY
            elif self.story:
                t_removed = t_install + rng.randint(400 * DAY, 520 * DAY)
            else:
                t_removed = t_install + rng.randint(60 * DAY, max(61 * DAY, self.horizon - t_install))
        else:
            t_removed = self.horizon + 1

        def soh_at(t: int) -> float:
            years = (t - t_install) / (365 * DAY)
            return round(max(55.0, soh0 - fade * years + rng.uniform(-0.6, 0.6)), 1)

        def cycles_at(t: int) -> int:
            per_year = 120 if ess else 260
            return int(per_year * (t - t_install) / (365 * DAY) * rng.uniform(0.85, 1.15))

        # In service: periodic inspections, perhaps an incident.
        incident = self.decide("incident", lambda: (
            _weighted(rng, {"damage": 45, "swelling": 15, "leak": 10, "fire": 12, "thermal_runaway": 6, "other": 12}),
            _weighted(rng, {"low": 35, "medium": 35, "high": 22, "critical": 8}),
        ) if rng.random() < (0.35 if removal and reason == "accident" else 0.03) else None)  # fmt: skip
        inspector = _weighted(rng, {"KOTSA": 70, "KATRI": 30})
        t = t_install + rng.randint(90 * DAY, 240 * DAY)
        while t < min(t_removed, self.horizon):
            self.t = t
            self.emit(inspector, pid, "INSPECTED", {"soh_pct": soh_at(t), "cycle_count": cycles_at(t)}, region=home)
            t += rng.randint(120 * DAY, 300 * DAY)
        end_of_service = min(t_removed, self.horizon)
        if incident:
            self.t = max(self.t, end_of_service - rng.randint(1 * DAY, 20 * DAY))
            if self.t > self.horizon:
                raise _Horizon
            actor = oem if rng.random() < 0.6 else inspector
            self.emit(actor, pid, "INCIDENT", {"kind": incident[0], "severity": incident[1]}, region=home)
        if not removal:
            return
        self.t = max(self.t, t_removed)
        if self.t > self.horizon:
            raise _Horizon
        dismantler = oem if reason in ("recall", "replacement") and rng.random() < 0.5 else DISMANTLER_OF[home]
        self.emit(dismantler, pid, "REMOVED", {"reason": reason}, region=home)
        soh = soh_at(self.t)

        # Collection (some wait: the removed-not-collected backlog).
        if not self.decide("collect", lambda: rng.random() < 0.9):
            return
        centre = BY_ID[CENTRE_OF[home]]
        if "collected_days_ago" in self.story:
            self.t = max(self.t + DAY, self.horizon - self.story["collected_days_ago"] * DAY)
        else:
            self.later(2, 35)
        self.emit(centre.id, pid, "COLLECTED", {"centre": centre.site, "region": centre.region})
        if self.decide("dispose_collected", lambda: incident is not None and incident[1] == "critical"):
            self.later(3, 20)
            method = "hazardous-waste incineration" if incident and incident[0] in ("fire", "thermal_runaway") \
                else "stabilised landfill"  # fmt: skip
            self.emit(centre.id, pid, "DISPOSED", {"method": method})
            return
        if incident is not None and incident[0] in ("fire", "thermal_runaway") and not self.story:
            # Fire-damaged: straight to a recycler, without grading.
            recycler = self._recycler()
            self.later(3, 20)
            self.emit(centre.id, pid, "TRANSFERRED", {"to": recycler})
            self._recycle(recycler, pid, fam, "pack", process="pyrometallurgy")
            return

        # Grading (some wait: the collected-not-graded backlog).
        if "grade" in self.story and self.story["grade"] is None:
            return
        if not self.story and rng.random() < 0.12:
            return
        assessor = _weighted(rng, {"ASSESS-KTC": 60, "ASSESS-KCL": 40})
        self.later(3, 25)
        self.emit(centre.id, pid, "TRANSFERRED", {"to": assessor})
        self.later(3, 25)
        graded_soh = round(max(50.0, soh - rng.uniform(0, 2.5)), 1)
        grade = self.decide("grade", lambda: self._grade(graded_soh, reason))
        self.emit(assessor, pid, "GRADED", {"soh_pct": graded_soh, "grade": grade})
        if not self.story and rng.random() < 0.08:
            return  # graded, waiting for the next owner
        if grade == "reuse":
            self._reuse(pid, fam, assessor, graded_soh)
        elif grade == "remanufacture":
            self._remanufacture(pid, fam, assessor, modules, oem, home)
        else:
            recycler = self._recycler()
            self.later(4, 30)
            self.emit(assessor, pid, "TRANSFERRED", {"to": recycler})
            self._recycle(recycler, pid, fam, "pack", process=self.story.get("process"))

    def _grade(self, soh: float, reason: str) -> str:
        r = self.rng.random()
        if reason == "accident" and r < 0.6:
            return "recycle"  # crash damage
        if soh >= 80:
            return "reuse" if r < 0.55 else ("remanufacture" if r < 0.8 else "recycle")
        if soh >= 70:
            return "remanufacture" if r < 0.4 else ("reuse" if r < 0.65 else "recycle")
        return "recycle"

    def _recycler(self) -> str:
        return _weighted(self.rng, {"REC-SUNGEEL": 45, "REC-KOREAZINC": 25, "REC-POSCO": 30})

    def _recycle(self, recycler: str, bid: str, fam: Family, kind: str, process: str | None = None) -> None:
        rng = self.rng
        self.later(7, 45)
        process = process or _weighted(rng, {"hydrometallurgy": 70, "pyrometallurgy": 20, "direct-recycling": 10})
        kwh, mass = kind_specs(fam, kind)
        per = CONTENT_PER_KWH[fam.chemistry]
        recovered = {}
        for i, m in enumerate(("lithium", "nickel", "cobalt", "manganese")):
            contained = per[i] * kwh
            if contained:
                lo, hi = YIELDS[process][m]
                recovered[m] = round(contained * rng.uniform(lo, hi), 3)
        recovered["copper"] = round(mass * 0.07 * rng.uniform(0.85, 0.95), 3)
        recovered["aluminium"] = round(mass * 0.12 * rng.uniform(0.75, 0.92), 3)
        black_share = rng.uniform(0.30, 0.38) if fam.chemistry in ("LFP", "LMFP") else rng.uniform(0.34, 0.42)
        data = {
            "process": process,
            "input_mass_kg": mass,
            "black_mass_kg": round(mass * black_share, 2),
            "recovered_kg": recovered,
        }
        self.emit(recycler, bid, "RECYCLED", data)

    def _safety(self, bid: str) -> str | None:
        """Safety inspections (KC 10031) of a repurposed or remanufactured battery; the last result."""
        rng = self.rng
        results = self.decide("safety", lambda: (
            [] if rng.random() < 0.12 else
            (["pass"] if rng.random() < 0.85 else (["fail", "pass"] if rng.random() < 0.4 else ["fail"]))
        ))  # fmt: skip
        last = None
        for result in results:
            self.later(7, 40)
            body = _weighted(rng, {"KTL": 55, "KTR": 45})
            self.emit(body, bid, "SAFETY_INSPECTED", {"standard": "KC 10031", "result": result, "body": body})
            last = result
        return last

    def _reuse(self, pid: str, fam: Family, assessor: str, soh: float) -> None:
        rng = self.rng
        repurposer = _weighted(rng, {"REPUR-JEJU": 50, "REPUR-POHANG": 50})
        self.later(5, 30)
        self.emit(assessor, pid, "TRANSFERRED", {"to": repurposer})
        self.later(10, 45)
        application = _weighted(rng, {"ESS": 75, "UPS": 10, "EV charger buffer": 15})
        capacity = round(fam.pack_kwh * soh / 100 * rng.uniform(0.92, 0.98), 1)
        self.emit(repurposer, pid, "REPURPOSED", {"new_application": application, "rated_capacity": capacity})
        result = self._safety(pid)
        if result == "pass" and self.decide("reinstall", lambda: rng.random() < 0.6):
            region = BY_ID[repurposer].region or "KR-49"
            self.later(5, 20)
            self.emit(repurposer, pid, "TRANSFERRED", {"to": "HANWHA-ESS"})
            self.later(5, 30)
            site = f"ESS-{region[3:]}-R{rng.randint(1, 40):02d}"
            self.emit("HANWHA-ESS", pid, "INSTALLED", {"ess_site_id": site}, region=region, site=site)
            if self.decide("reuse_incident", lambda: rng.random() < 0.1):
                self.later(20, 200)
                kind = _weighted(rng, {"swelling": 40, "damage": 20, "leak": 15, "thermal_runaway": 10, "other": 15})
                severity = _weighted(rng, {"low": 35, "medium": 40, "high": 20, "critical": 5})
                self.emit("HANWHA-ESS", pid, "INCIDENT", {"kind": kind, "severity": severity}, region=region, site=site)
        elif result == "fail" and self.decide("after_fail", lambda: "dispose" if rng.random() < 0.4 else None):
            recycler = self._recycler()
            self.later(5, 30)
            self.emit(repurposer, pid, "TRANSFERRED", {"to": recycler})
            self.later(5, 30)
            self.emit(recycler, pid, "DISPOSED", {"method": "failed safety inspection: dismantled as waste"})

    def _remanufacture(
        self, pid: str, fam: Family, assessor: str, modules: list[str], oem: str, home: str
    ) -> None:  # fmt: skip
        rng = self.rng
        reman = _weighted(rng, {"REMAN-GLOVIS": 60, "REMAN-DAEGU": 40})
        self.later(5, 30)
        self.emit(assessor, pid, "TRANSFERRED", {"to": reman})
        if self.decide("take_module", lambda: rng.random() < 0.5):
            weak = modules[-1]
            self.later(3, 15)
            self.emit(reman, weak, "DISASSEMBLED", {"parent_id": pid})
            recycler = self._recycler()
            self.later(2, 20)
            self.emit(reman, weak, "TRANSFERRED", {"to": recycler})
            self._recycle(recycler, weak, fam, "module")
        self.later(10, 60)
        self.emit(reman, pid, "REMANUFACTURED", {"note": "modules rebalanced, BMS and cooling refurbished"})
        result = self._safety(pid)
        if result == "pass" and self.decide("reinstall", lambda: rng.random() < 0.5) and oem != "HANWHA-ESS":
            self.later(5, 30)
            self.emit(reman, pid, "TRANSFERRED", {"to": oem})
            self.later(3, 30)
            vin = self._vin(oem, 500000 + self.index, "T")
            self.emit(oem, pid, "INSTALLED", {"vin": vin}, region=home)
            self.extra_aliases.append((oem, vin))


def build_plans(seed: int, packs: int) -> list[PackPlan]:
    return [PlanBuilder(seed, i).build() for i in range(packs)]


# ---------------------------------------------------------------------------------------------------------
# Talking to the services
# ---------------------------------------------------------------------------------------------------------


class DemoError(RuntimeError):
    pass


class Api:
    def __init__(self, clients: dict[str, httpx.AsyncClient], private_key: bytes) -> None:
        self.clients = clients
        self.private_key = private_key
        self._tokens: dict[str, dict[str, str]] = {}

    def auth(self, org: str) -> dict[str, str]:
        if org not in self._tokens:
            if org == ADMIN[0]:
                role, ministry = ADMIN[1], None
            else:
                role, ministry = BY_ID[org].role, BY_ID[org].ministry
            tok = mint_token(self.private_key, org=org, role=role, ministry=ministry, ttl_s=6 * 3600)
            self._tokens[org] = {"Authorization": f"Bearer {tok}"}
        return self._tokens[org]

    async def post(self, service: str, path: str, body: Any, org: str) -> httpx.Response:
        for attempt in range(5):
            try:
                return await self.clients[service].post(path, json=body, headers=self.auth(org))
            except httpx.TransportError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def get(self, service: str, path: str, org: str | None = None, **params: Any) -> httpx.Response:
        headers = self.auth(org) if org else {}
        return await self.clients[service].get(path, headers=headers, params=params or None)


def _fail(what: str, r: httpx.Response) -> DemoError:
    return DemoError(f"{what}: HTTP {r.status_code}: {r.text[:2000]}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


async def _participants(api: Api, progress: Progress) -> int:
    task = progress.add_task("participants", total=len(ORGS))
    created = 0
    for o in ORGS:
        body = {"id": o.id, "name": o.name, "role": o.role}
        if o.ministry:
            body["ministry"] = o.ministry
        if o.region:
            body["region"] = o.region
        r = await api.post("registry", "/v1/participants", body, ADMIN[0])
        if r.status_code not in (201, 409):
            raise _fail(f"participant {o.id}", r)
        created += r.status_code == 201
        progress.advance(task)
    return created


async def _models(api: Api, progress: Progress) -> int:
    bodies = model_bodies()
    task = progress.add_task("models", total=len(bodies))
    created = 0
    for mfr, body in bodies:
        r = await api.post("registry", "/v1/models", body, mfr)
        if r.status_code not in (201, 409):
            raise _fail(f"model {body['id']}", r)
        created += r.status_code == 201
        progress.advance(task)
    return created


async def _register(api: Api, progress: Progress, plans: list[PackPlan], start: datetime) -> int:
    by_mfr: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in plans:
        for b in p.batteries:
            body = {k: v for k, v in b.items() if k != "_at"}
            body["manufactured_at"] = (start + timedelta(minutes=b["_at"])).isoformat()
            by_mfr[p.family.manufacturer].append(body)
    total = sum(len(v) for v in by_mfr.values())
    task = progress.add_task("batteries (cells, modules, packs)", total=total)
    created = 0
    for mfr, bodies in by_mfr.items():
        for i in range(0, len(bodies), REGISTER_BATCH):
            chunk = bodies[i : i + REGISTER_BATCH]
            while chunk:
                r = await api.post("registry", "/v1/batteries/bulk", {"batteries": chunk}, mfr)
                if r.status_code == 201:
                    created += len(chunk)
                    break
                problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                if r.status_code == 409 and problem.get("code") == "duplicate-battery":
                    taken = {e["index"] for e in problem.get("errors", []) if "index" in e}
                    if not taken:
                        continue  # registered concurrently: retry
                    chunk = [b for j, b in enumerate(chunk) if j not in taken]
                    continue
                raise _fail(f"registering {mfr} batteries", r)
            progress.advance(task, min(REGISTER_BATCH, len(bodies) - i))
    return created


async def _aliases(api: Api, progress: Progress, plans: list[PackPlan]) -> int:
    items = [(oem, p.pack_id, vin) for p in plans for oem, vin in p.aliases]
    task = progress.add_task("VIN aliases", total=len(items))
    sem = asyncio.Semaphore(8)

    async def one(oem: str, bid: str, vin: str) -> None:
        async with sem:
            r = await api.post("registry", f"/v1/batteries/{bid}/aliases", {"scheme": "vin", "value": vin}, oem)
            if r.status_code not in (200, 201):
                raise _fail(f"alias {vin} for {bid}", r)
            progress.advance(task)

    await asyncio.gather(*(one(*it) for it in items))
    return len(items)


def _segments(events: list[Ev]) -> list[list[Ev]]:
    """A pack family's events split into runs of consecutive events by the same actor."""
    out: list[list[Ev]] = []
    for ev in events:
        if out and out[-1][0].actor == ev.actor:
            out[-1].append(ev)
        else:
            out.append([ev])
    return out


def _wire(ev: Ev, start: datetime) -> dict[str, Any]:
    location = {k: v for k, v in (("site", ev.site), ("region", ev.region)) if v}
    return {
        "event_id": ev.event_id,
        "battery_id": ev.battery_id,
        "type": ev.type,
        "occurred_at": (start + timedelta(minutes=ev.at)).isoformat(),
        "location": location,
        "data": ev.data,
    }


async def _events(api: Api, progress: Progress, plans: list[PackPlan], start: datetime) -> int:
    """Waves: wave k posts every family's k-th run, one batch per actor (a run never splits across
    batches, and the runs of one wave touch disjoint families, so batches may go in parallel)."""
    families = [_segments(p.events) for p in plans]
    total = sum(len(p.events) for p in plans)
    task = progress.add_task("lifecycle events", total=total)
    sem = asyncio.Semaphore(3)

    async def send(actor: str, events: list[dict[str, Any]]) -> None:
        async with sem:
            r = await api.post("events", "/v1/events/batch", {"events": events}, actor)
            if r.status_code != 201:
                raise _fail(f"{len(events)} events by {actor}", r)
            progress.advance(task, len(events))

    wave = 0
    while True:
        runs: dict[str, list[list[Ev]]] = defaultdict(list)
        for segs in families:
            if wave < len(segs):
                runs[segs[wave][0].actor].append(segs[wave])
        if not runs:
            break
        jobs = []
        for actor, actor_runs in runs.items():
            batch: list[dict[str, Any]] = []
            for run in actor_runs:
                if batch and len(batch) + len(run) > EVENT_BATCH:
                    jobs.append(send(actor, batch))
                    batch = []
                batch.extend(_wire(ev, start) for ev in run)
            if batch:
                jobs.append(send(actor, batch))
        await asyncio.gather(*jobs)
        wave += 1
    return total


def _position(rows: list[dict[str, Any]], topic: str, key: str) -> int:
    return max((int(r[key]) for r in rows if str(r["topic"]).endswith(topic)), default=0)


async def _wait_applied(
    api: Api, consumer: str, topics: dict[str, str], progress: Progress, label: str, timeout_s: float
) -> bool:
    """Wait until `consumer` has applied, per topic, the newest position its producer wrote."""
    task = progress.add_task(label, total=None)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            done = True
            applied = (await api.get(consumer, "/v1/ops/positions")).json().get("applied", [])
            for topic, producer in topics.items():
                written = _position((await api.get(producer, "/v1/ops/positions")).json()["published"], topic,
                                    "written_position")  # fmt: skip
                if written and _position(applied, topic, "applied_position") < written:
                    done = False
            if done:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        progress.update(task, total=1, completed=1)


async def _wait_portal(api: Api, progress: Progress, timeout_s: float) -> bool:
    topics = {"battery.registry.v1": "registry", "battery.lifecycle.v1": "events"}
    deadline = time.monotonic() + timeout_s
    if not await _wait_applied(api, "portal", topics, progress, "portal catching up", timeout_s):
        return False
    # Positions are the newest applied per topic (any partition): also wait for the consumer to go idle.
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        status = (await api.get("portal", "/v1/ops/consumer")).json()
        now = (status.get("applied"), status.get("last_batch_at"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.5:
            return True
        await asyncio.sleep(0.25)
    return False


async def _anchor(api: Api, plans: list[PackPlan]) -> datetime:
    """The demo's start: from the first pack if a previous run registered it, else from the clock."""
    first = plans[0].batteries[0]
    r = await api.get("registry", f"/v1/batteries/{first['id']}")
    if r.status_code == 200:
        made = datetime.fromisoformat(r.json()["manufactured_at"])
        return made - timedelta(minutes=first["_at"])
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    return now - timedelta(days=SPAN_DAYS)


async def _views(api: Api) -> dict[str, dict[str, Any]]:
    out = {}
    for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        r = await api.get("portal", f"/v1/views/{code.lower()}", code)
        if r.status_code != 200:
            raise _fail(f"{code} view", r)
        out[code] = r.json()
    return out


SYMBOL = {"lithium": "Li", "nickel": "Ni", "cobalt": "Co", "manganese": "Mn"}


def _summary(counts: dict[str, int], views: dict[str, dict[str, Any]], seconds: float) -> Table:
    m, lt, c, k = views["MOTIE"], views["MOLIT"], views["MCEE"], views["KATS"]
    rec = {r["material"]: r for r in c["recovery"]}

    def rate(mat: str) -> str:
        v = rec.get(mat, {}).get("rate_pct")
        return "—" if v is None else f"{v:.1f} %"

    table = Table(title=f"batterytrace demo loaded in {seconds:.0f} s", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("loaded", f"{counts['packs']:,} packs · {counts['batteries']:,} batteries · "
                            f"{counts['events']:,} lifecycle events · {counts['participants_total']} participants")  # fmt: skip
    reg = m["registrations"]
    table.add_row("MOTIE", f"{reg['batteries']:,} batteries registered, {reg['packs']:,} packs = "
                           f"{reg['pack_kwh']:,.0f} kWh; outcomes {m['outcomes']['totals']}; recovered kg "
                           + ", ".join(f"{SYMBOL[k]} {v:,.0f}" for k, v in m["recovered_materials_kg"]["totals"].items()))  # fmt: skip
    ins = lt["inspections"]
    table.add_row("MOLIT", f"{lt['in_service_now']['batteries']:,} in service; {ins['inspections']:,} inspections "
                           f"(avg SoH {ins['avg_soh_pct']} %); removals {lt['removals']['by_reason']}; "
                           f"{lt['incidents']['incidents']} incidents")  # fmt: skip
    bl = c["backlog_now"]
    table.add_row("MCEE", f"{c['collected']['batteries']:,} collected at {len(c['collected']['by_region_centre'])} "
                          f"centres; backlog {bl['removed_not_collected']} removed / {bl['collected_not_graded']} "
                          f"collected ({bl['removed_over_30_days']} + {bl['collected_over_30_days']} over 30 days); "
                          f"{c['recycling']['batteries']} recycled; recovery Li {rate('lithium')}, Ni {rate('nickel')}, "
                          f"Co {rate('cobalt')}; {c['disposals']['batteries']} disposed")  # fmt: skip
    table.add_row("KATS", f"{k['reused_now']['batteries']} reused now "
                          + str({f"{r['status']}/{r['safety']}": r["batteries"] for r in k["reused_now"]["by_status_safety"]})
                          + f"; {k['safety_inspections']['inspections']} safety inspections; grades "
                          + str({g["grade"]: g["batteries"] for g in k["grades"]})
                          + f"; {k['incidents_after_reuse']['incidents']} incidents after reuse")  # fmt: skip
    return table


async def load_demo_async(
    urls: dict[str, str],
    private_key_path: Path,
    *,
    packs: int = 2000,
    seed: int = 7,
    clients: dict[str, httpx.AsyncClient] | None = None,
    portal_timeout_s: float = 300.0,
    quiet: bool = False,
) -> dict[str, int]:
    """Load the demo through the services' HTTP APIs. `clients` (tests) replace connections to `urls`."""
    started = time.monotonic()
    own: list[httpx.AsyncClient] = []
    if clients is None:
        clients = {}
        for name in ("registry", "events", "portal"):
            client = httpx.AsyncClient(base_url=urls[name], timeout=httpx.Timeout(600, connect=10))
            clients[name] = client
            own.append(client)
    api = Api(clients, await asyncio.to_thread(private_key_path.read_bytes))
    plans = build_plans(seed, packs)
    try:
        with _progress() as progress:
            if quiet:
                progress.stop()
            participants = await _participants(api, progress)
            models = await _models(api, progress)
            start = await _anchor(api, plans)
            created = await _register(api, progress, plans, start)

            async def lifecycle() -> int:
                # Let the events service learn the new batteries from the registry stream (read-through
                # on a miss would also work, one battery at a time).
                await _wait_applied(
                    api, "events", {"battery.registry.v1": "registry"}, progress, "events service catching up", 120
                )
                return await _events(api, progress, plans, start)

            # VIN aliases go to the registry while the events service takes the lifecycle events.
            events, aliases = await asyncio.gather(lifecycle(), _aliases(api, progress, plans))
            caught_up = await _wait_portal(api, progress, portal_timeout_s)
        views = await _views(api)
        seconds = time.monotonic() - started
        counts = {
            "participants": participants,
            "participants_total": len(ORGS),
            "models": models,
            "packs": packs,
            "batteries": sum(len(p.batteries) for p in plans),
            "batteries_created": created,
            "events": events,
            "aliases": aliases,
            "portal_caught_up": int(caught_up),
            "seconds": round(seconds),
        }
        if not quiet:
            if not caught_up:
                console.print(f"[yellow]the portal had not caught up after {portal_timeout_s:.0f} s[/]")
            console.print(_summary(counts, views, seconds))
        return counts
    finally:
        for client in own:
            await client.aclose()


def load_demo(urls: dict[str, str], private_key_path: Path, *, packs: int = 2000, seed: int = 7) -> dict[str, int]:
    """Load the demo into running services at `urls` (registry, events, portal); returns counts."""
    return asyncio.run(load_demo_async(urls, private_key_path, packs=packs, seed=seed))


__all__ = ["build_plans", "load_demo", "load_demo_async"]
