"""The demo's cast as data: its participants (every role, in the regions they work in), the battery model
families with their chemistry, material content and recovery yields, and the models registered for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
