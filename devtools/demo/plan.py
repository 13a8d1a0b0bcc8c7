"""The demo's plan: which batteries each pack is made of and which events happen to which battery, by whom,
in which order and when (minutes from the demo's start), seeded so that the same seed gives the same plan."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devtools.demo.catalogue import (
    BY_ID,
    CENTRE_OF,
    CONTENT_PER_KWH,
    DISMANTLER_OF,
    FAMILIES,
    FAMILY_BY_KEY,
    HOME_REGIONS,
    MATERIALS,
    YIELDS,
    Family,
    kind_specs,
)

DEMO_NS = uuid.UUID("5b1d0c3e-7a0e-5d8e-9a61-2f1c7e0b9d42")
#: The demo's time span: manufacturing starts about SPAN before the first run's clock.
SPAN_DAYS = 1050
DAY = 1440  # minutes
MODULES_PER_PACK = 2
CELLS_PER_MODULE = 4


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
    awaiting_recycling: str | None = None  # the recycler holding the pack, its RECYCLED left to `regime.py`


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
    # issue 13: graded before removal (탈거 전 성능평가); a reused pack in service on a KC 10031 certificate that
    # has expired since; a pack waiting at its recycler, whose first report the events service refuses (regime.py).
    {"removal": True, "reason": "end_of_life", "collect": True, "grade": "recycle", "pre_removal": True, "process": "hydrometallurgy"},
    {"removal": True, "reason": "replacement", "collect": True, "grade": "reuse", "safety": ["pass"], "reinstall": True, "certificate_days": 60},
    {"removal": True, "reason": "end_of_life", "collect": True, "grade": "recycle", "hold_at_recycler": True},
]  # fmt: skip
#: How long a demo KC 10031 certificate is valid, unless the story says otherwise.
CERTIFICATE_DAYS = 730


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
        self.awaiting_recycling: str | None = None

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
            kwh, kg = kind_specs(fam, kind)
            per = CONTENT_PER_KWH[fam.chemistry]
            materials = {m: round(per[i] * kwh * var, 3) for i, m in enumerate(MATERIALS)}
            # Current collectors and housing: copper and aluminium by mass (issue 13: in the content too).
            materials |= {"copper": round(kg * 0.07 * var, 3), "aluminium": round(kg * 0.12 * var, 3)}
            return {
                "id": bid,
                "model_id": fam.model_id(kind),
                "kind": kind,
                "serial_number": serial,
                "_at": at,
                "manufacturing_site": f"{mfr.site}, KR",
                "materials_kg": materials,
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
        plan.awaiting_recycling = self.awaiting_recycling
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

        last_cycles = 0

        def cycles_at(t: int) -> int:
            nonlocal last_cycles
            per_year = 120 if ess else 260
            # A cycle count never falls (the events service refuses one that does).
            last_cycles = max(last_cycles, int(per_year * (t - t_install) / (365 * DAY) * rng.uniform(0.85, 1.15)))
            return last_cycles

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
        pre_grade = None
        if self.decide("pre_removal", lambda: False):
            pre_grade = self._pre_removal_grading(pid, soh_at(max(self.t, t_removed - 10 * DAY)), t_removed)
        self.t = max(self.t, t_removed)
        if self.t > self.horizon:
            raise _Horizon
        dismantler = oem if reason in ("recall", "replacement") and rng.random() < 0.5 else DISMANTLER_OF[home]
        # The dismantler consigns the battery to its region's collection centre, which may then collect it.
        self.emit(dismantler, pid, "REMOVED", {"reason": reason, "consignee": CENTRE_OF[home]}, region=home)
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

        if pre_grade is not None:
            # Graded before removal: the grade decides what follows the collection, with no second grading.
            assessor, grade, graded_soh = centre.id, pre_grade, soh
        else:
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
            if self.story.get("hold_at_recycler"):
                self.awaiting_recycling = recycler  # its report: devtools/demo/regime.py
                return
            self._recycle(recycler, pid, fam, "pack", process=self.story.get("process"))

    def _pre_removal_grading(self, pid: str, soh: float, t_removed: int) -> str:
        """탈거 전 성능평가: an assessor grades the pack still in the vehicle, some days before its removal, without
        holding it; the grade decides what follows once it is removed (MOLIT's view counts these)."""
        self.t = max(self.t, t_removed - 10 * DAY)
        if self.t > self.horizon:
            raise _Horizon
        assessor = _weighted(self.rng, {"ASSESS-KTC": 60, "ASSESS-KCL": 40})
        graded_soh = round(max(50.0, soh - self.rng.uniform(0, 1.5)), 1)
        grade = str(self.decide("grade", lambda: self._grade(graded_soh, "end_of_life")))
        self.emit(assessor, pid, "GRADED", {"soh_pct": graded_soh, "grade": grade, "pre_removal": True})
        return grade

    def _certificate(self, body: str, bid: str, result: str, n: int) -> dict[str, Any]:
        """A KC 10031 safety inspection's data: the certificate (number, validity) where it passed, the edition of
        the standard and the report. Validity is in days (`_valid_days`); the loader turns it into a date."""
        ref = f"{body}-{self.index:05d}-{n}"
        data: dict[str, Any] = {"body": body, "standard": "KC 10031", "edition": "2024", "result": result}
        data["report_ref"] = f"R-{ref}"
        if result == "pass":
            data["certificate_number"] = f"KC10031-{ref}"
            data["_valid_days"] = int(self.story.get("certificate_days", CERTIFICATE_DAYS))
        return data

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
        for n, result in enumerate(results):
            self.later(7, 40)
            body = _weighted(rng, {"KTL": 55, "KTR": 45})
            self.emit(body, bid, "SAFETY_INSPECTED", self._certificate(body, bid, result, n))
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
