"""The EU targets MCEE's figures are measured against, and the measuring, pure: no I/O, no SQL.

Regulation (EU) 2023/1542 (the Battery Regulation), Annex XII:

- Part B, recycling efficiency (the share by mass of a waste battery's input that the recycling process turns
  into recycled output): lithium-based batteries 65 % by 31 December 2025 and 70 % by 31 December 2030 (lead-acid
  75 % / 80 %; other batteries 50 % by 2025).
- Part C, recovery of materials (the share by mass of each material contained in the waste batteries that is
  recovered): by 31 December 2027 cobalt, copper, lead and nickel 90 %, lithium 50 %; by 31 December 2031 cobalt,
  copper, lead and nickel 95 %, lithium 80 %.

What this module measures from the ledger: a material's recovery rate is the recovered kg reported by RECYCLED
over the content registered for the same batteries; recycling efficiency is the recovered kg of every reported
material over the input mass. The second is a lower bound: a recycler reports the materials it recovered, not
its steel, plastics or electrolyte fractions, which the Regulation's calculation counts as recycled output too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """A target share (%) to be met by the end of `year`."""

    year: int
    pct: float


#: Annex XII part C: material recovery targets (% by mass). Materials without a target (manganese, aluminium,
#: graphite) are reported without one.
RECOVERY_TARGETS: dict[str, tuple[Target, Target]] = {
    "lithium": (Target(2027, 50.0), Target(2031, 80.0)),
    "cobalt": (Target(2027, 90.0), Target(2031, 95.0)),
    "nickel": (Target(2027, 90.0), Target(2031, 95.0)),
    "copper": (Target(2027, 90.0), Target(2031, 95.0)),
    "lead": (Target(2027, 90.0), Target(2031, 95.0)),
}

#: Annex XII part B: recycling efficiency of lithium-based batteries (% by mass of the input).
EFFICIENCY_TARGETS_LITHIUM = (Target(2025, 65.0), Target(2030, 70.0))


def rate(part: float, whole: float) -> float | None:
    """`part` as a percentage of `whole`, to two decimals; None when there is no whole to measure against."""
    return round(100 * part / whole, 2) if whole > 0 else None


def meets(value: float | None, target: Target | None) -> bool | None:
    """Whether a measured share meets a target; None when either is missing."""
    return None if value is None or target is None else value >= target.pct


def recovery(material: str, recovered_kg: float, contained_kg: float) -> dict[str, Any]:
    """One material's recovery against both Annex XII part C dates."""
    first, second = RECOVERY_TARGETS.get(material, (None, None))
    measured = rate(recovered_kg, contained_kg)
    return {
        "material": material,
        "recovered_kg": round(recovered_kg, 3),
        "contained_kg": round(contained_kg, 3),
        "rate_pct": measured,
        "eu_target_2027_pct": None if first is None else first.pct,
        "eu_target_2031_pct": None if second is None else second.pct,
        "meets_2027_target": meets(measured, first),
        "meets_2031_target": meets(measured, second),
    }


def recoveries(
    materials: tuple[str, ...], recovered: Mapping[str, float], contained: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Every material's recovery: those with a target, and any other recovered or contained."""
    return [recovery(m, recovered.get(m, 0.0), contained.get(m, 0.0)) for m in materials]


def efficiency(recovered: Mapping[str, float], input_mass_kg: float) -> dict[str, Any]:
    """Recycling efficiency of lithium-based batteries against both Annex XII part B dates."""
    output = sum(recovered.values())
    measured = rate(output, input_mass_kg)
    first, second = EFFICIENCY_TARGETS_LITHIUM
    return {
        "input_mass_kg": round(input_mass_kg, 3),
        "recovered_kg": round(output, 3),
        "efficiency_pct": measured,
        "eu_target_2025_pct": first.pct,
        "eu_target_2030_pct": second.pct,
        "meets_2025_target": meets(measured, first),
        "meets_2030_target": meets(measured, second),
    }
