"""Plausibility of reported numbers, pure: no I/O, no SQL, no web framework (DOMAIN.md, Plausibility).

A recycler cannot recover more of a material than the battery contained, nor make more black mass than it put in;
what it puts in weighs about what the battery was registered to weigh; a battery's state of health stays within
0-100 % and does not rise (beyond a measuring margin) unless it was remanufactured in between; its cycle count
never falls; a repurposed battery is never rated above what its model was rated when new; a BMS's running totals
(energy and capacity throughput, deep-discharge and overcharge events, time in extreme temperatures) never fall,
and the capacity or energy it says remains is not above the rated one (beyond a margin).

`check` answers an `Implausible` (the rule broken and its numbers: the service renders a 422 whose `code` names
the rule and whose extension members carry the numbers) or the rules it could not apply for want of a fact the
battery lacks (`unchecked`: the event is accepted and flagged). Facts a read-through began (the registry's public
read: no material content) are not the registry's word that a content is unknown: a rule that needs one answers
`pending` (the service asks the client to retry once the registration has arrived) rather than flag the event for
good. `observe` moves the readings the next check
compares with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.contract.lifecycle import BMS_TOTALS, EventType, member

#: The problem code of each rule (the rule's name in `errors[].rule` is the code without "implausible-").
RECOVERY = "implausible-recovery"
BLACK_MASS = "implausible-black-mass"
INPUT_MASS = "implausible-input-mass"
SOH_RANGE = "implausible-soh"
SOH_RISE = "implausible-soh-rise"
CYCLE_COUNT = "implausible-cycle-count"
CAPACITY = "implausible-capacity"
TOTAL = "implausible-total"
REMAINING = "implausible-remaining"
CODES = (RECOVERY, BLACK_MASS, INPUT_MASS, SOH_RANGE, SOH_RISE, CYCLE_COUNT, CAPACITY, TOTAL, REMAINING)

#: What `unchecked` names: the rules that needed a fact the battery lacks.
NO_CONTENT = "recovery"  # no registered content of a material recovered
NO_MASS = "input-mass"  # no registered mass
NO_CAPACITY = "capacity"  # no registered rated energy
NO_RATING = "remaining"  # no registered rated capacity (Ah) or energy (kWh) to compare what remains with
#: What a BMS says remains, and the registered rating it is compared with.
REMAINING_OF = {
    "remaining_capacity_ah": ("rated_capacity_ah", "Ah"),
    "remaining_energy_kwh": ("rated_energy_kwh", "kWh"),
}


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far reported numbers may stray (the events settings `plausibility_*` set them)."""

    recovery_pct: float = 5.0  # recovered may exceed the registered content by this share (weighing, assay error)
    input_mass_band_pct: float = 25.0  # a single battery's input mass within ± this share of its registered mass
    soh_rise_pct: float = 3.0  # SoH may read this many points above the previous reading (measurement spread)
    #: Facts from the public read: wait for the registration (`pending`) where a rule needs the content it holds
    #: (False: no registration stream reaches this service, the public read is all it gets).
    await_registration: bool = True
    remaining_margin_pct: float = 10.0  # a BMS's remaining capacity/energy may exceed the rated one by this share


@dataclass(frozen=True, slots=True)
class Facts:
    """What the registry says of the battery (None: not known here). A material's content is known only where it
    is registered above zero: the registry's material fields default to 0, so a zero does not say 'none'.
    `complete`: from the whole registration (False: from the public read, which holds no material content)."""

    materials_kg: Mapping[str, float] = field(default_factory=dict)
    mass_kg: float | None = None
    rated_energy_kwh: float | None = None
    complete: bool = True
    rated_capacity_ah: float | None = None

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Facts:
        value = value or {}
        return cls(
            dict(value.get("materials_kg") or {}),
            value.get("mass_kg"),
            value.get("rated_energy_kwh"),
            bool(value.get("complete", True)),
            value.get("rated_capacity_ah"),
        )

    @classmethod
    def from_registry(cls, battery: Mapping[str, Any]) -> Facts:
        """From a registry record: the stream's (`model` nested, material content included) or the public read's
        (ratings at the top, no material content)."""
        model: Mapping[str, Any] = battery.get("model") or {}
        materials = battery.get("materials_kg") or {}
        return cls(
            {m: float(kg) for m, kg in materials.items() if _number(kg) and kg > 0},
            _positive(battery.get("mass_kg", model.get("mass_kg"))),
            _positive(battery.get("rated_energy_kwh", model.get("rated_energy_kwh"))),
            "materials_kg" in battery,
            _positive(battery.get("rated_capacity_ah", model.get("rated_capacity_ah"))),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "materials_kg": dict(self.materials_kg),
            "mass_kg": self.mass_kg,
            "rated_energy_kwh": self.rated_energy_kwh,
            "complete": self.complete,
            "rated_capacity_ah": self.rated_capacity_ah,
        }


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    event_id: str


@dataclass(frozen=True, slots=True)
class Readings:
    """The last SoH (since the last remanufacturing), the last cycle count and the last of each BMS running total
    (`BMS_TOTALS`), each with the event that gave it."""

    soh_pct: Reading | None = None
    cycle_count: Reading | None = None
    totals: Mapping[str, Reading] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Readings:
        value = value or {}

        def one(name: str) -> Reading | None:
            r = value.get(name)
            return None if r is None else Reading(r["value"], r["event_id"])

        totals = {k: Reading(r["value"], r["event_id"]) for k, r in (value.get("totals") or {}).items()}
        return cls(one("soh_pct"), one("cycle_count"), totals)

    def as_json(self) -> dict[str, Any]:
        def one(r: Reading | None) -> dict[str, Any] | None:
            return None if r is None else {"value": r.value, "event_id": r.event_id}

        totals = {k: one(r) for k, r in self.totals.items()}
        return {"soh_pct": one(self.soh_pct), "cycle_count": one(self.cycle_count), "totals": totals}


@dataclass(frozen=True, slots=True)
class Implausible:
    """A broken rule: its problem code, the data field, a sentence with the numbers, and the numbers."""

    code: str
    field: str
    detail: str
    numbers: Mapping[str, Any]

    @property
    def rule(self) -> str:
        return self.code.removeprefix("implausible-")


@dataclass(frozen=True, slots=True)
class Verdict:
    """`pending`: a rule needs a fact the registration holds but the facts here came from the public read (the
    registration has not arrived yet); nothing can be said until it has."""

    implausible: Implausible | None = None
    unchecked: tuple[str, ...] = ()
    pending: str | None = None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> float | None:
    return float(value) if _number(value) and value > 0 else None


def _g(value: float) -> str:
    return f"{value:.6g}"


def check(etype: EventType, data: Mapping[str, Any], facts: Facts, readings: Readings, tol: Tolerances) -> Verdict:
    """The first rule `data` breaks, or which rules could not be applied."""
    if etype is EventType.RECYCLED:
        return _recycled(data, facts, tol)
    if etype in (EventType.INSPECTED, EventType.GRADED):
        return Verdict(_soh(data, readings, tol) or _cycles(data, readings))
    if etype is EventType.BMS_REPORTED:
        found = _soh(data, readings, tol) or _cycles(data, readings) or _totals(data, readings)
        return Verdict(found) if found is not None else _remaining(data, facts, tol)
    if etype is EventType.REPURPOSED:
        return _capacity(data, facts)
    return Verdict()


def _recycled(data: Mapping[str, Any], facts: Facts, tol: Tolerances) -> Verdict:
    inp, black = float(data["input_mass_kg"]), float(data["black_mass_kg"])
    if black > inp:
        return Verdict(
            Implausible(
                BLACK_MASS,
                "data.black_mass_kg",
                f"black_mass_kg {_g(black)} exceeds input_mass_kg {_g(inp)}: black mass comes out of the input.",
                {"black_mass_kg": black, "input_mass_kg": inp},
            )
        )
    unchecked: list[str] = []
    if facts.mass_kg is None:
        unchecked.append(NO_MASS)
    else:
        band = tol.input_mass_band_pct / 100
        low, high = facts.mass_kg * (1 - band), facts.mass_kg * (1 + band)
        if not low <= inp <= high:
            return Verdict(
                Implausible(
                    INPUT_MASS,
                    "data.input_mass_kg",
                    f"input_mass_kg {_g(inp)} is outside ±{_g(tol.input_mass_band_pct)} % of the battery's "
                    f"registered mass {_g(facts.mass_kg)} kg ({_g(low)}-{_g(high)} kg).",
                    {
                        "input_mass_kg": inp,
                        "registered_mass_kg": facts.mass_kg,
                        "band_pct": tol.input_mass_band_pct,
                        "min_kg": low,
                        "max_kg": high,
                    },
                )
            )
    recovered: Mapping[str, float] = data.get("recovered_kg") or {}
    for material, kg in recovered.items():
        if not kg > 0:
            continue
        contained = facts.materials_kg.get(material)
        if contained is None and not facts.complete and tol.await_registration:
            return Verdict(pending=f"data.recovered_kg.{material}")
        if contained is None:
            if NO_CONTENT not in unchecked:
                unchecked.append(NO_CONTENT)
            continue
        limit = contained * (1 + tol.recovery_pct / 100)
        if kg > limit:
            return Verdict(
                Implausible(
                    RECOVERY,
                    f"data.recovered_kg.{material}",
                    f"{_g(kg)} kg of {material} recovered, but the battery contained {_g(contained)} kg "
                    f"(at most {_g(limit)} kg with the {_g(tol.recovery_pct)} % tolerance).",
                    {
                        "material": material,
                        "recovered_kg": kg,
                        "contained_kg": contained,
                        "tolerance_pct": tol.recovery_pct,
                        "limit_kg": limit,
                    },
                )
            )
    return Verdict(None, tuple(unchecked))


def _soh(data: Mapping[str, Any], readings: Readings, tol: Tolerances) -> Implausible | None:
    soh = data.get("soh_pct")
    if soh is None:
        return None
    soh = float(soh)
    if not (_number(soh) and 0 <= soh <= 100):
        return Implausible(
            SOH_RANGE, "data.soh_pct", f"soh_pct {soh} is outside 0-100 %.", {"soh_pct": soh, "min": 0, "max": 100}
        )
    last = readings.soh_pct
    if last is not None and soh > last.value + tol.soh_rise_pct:
        return Implausible(
            SOH_RISE,
            "data.soh_pct",
            f"soh_pct {_g(soh)} is more than {_g(tol.soh_rise_pct)} points above the previous reading "
            f"{_g(last.value)} (event {last.event_id}) with no REMANUFACTURED in between.",
            {
                "soh_pct": soh,
                "previous_soh_pct": last.value,
                "previous_event_id": last.event_id,
                "margin_pct": tol.soh_rise_pct,
            },
        )
    return None


def _cycles(data: Mapping[str, Any], readings: Readings) -> Implausible | None:
    cycles, last = data.get("cycle_count"), readings.cycle_count
    if cycles is None or last is None or cycles >= last.value:
        return None
    return Implausible(
        CYCLE_COUNT,
        "data.cycle_count",
        f"cycle_count {cycles} is below the previous reading {int(last.value)} (event {last.event_id}): "
        "a cycle count never falls.",
        {"cycle_count": cycles, "previous_cycle_count": int(last.value), "previous_event_id": last.event_id},
    )


def _totals(data: Mapping[str, Any], readings: Readings) -> Implausible | None:
    for name in BMS_TOTALS:
        value, last = member(data, name), readings.totals.get(name)
        if value is None or last is None or value >= last.value:
            continue
        return Implausible(
            TOTAL,
            f"data.{name}",
            f"{name} {_g(value)} is below the previous reading {_g(last.value)} (event {last.event_id}): a running "
            "total since manufacture never falls.",
            {"total": name, "value": value, "previous_value": last.value, "previous_event_id": last.event_id},
        )
    return None


def _remaining(data: Mapping[str, Any], facts: Facts, tol: Tolerances) -> Verdict:
    unchecked: tuple[str, ...] = ()
    for name, (fact, unit) in REMAINING_OF.items():
        value, rated = data.get(name), getattr(facts, fact)
        if value is None:
            continue
        if rated is None:
            unchecked = (NO_RATING,)
            continue
        limit = rated * (1 + tol.remaining_margin_pct / 100)
        if value > limit:
            return Verdict(
                Implausible(
                    REMAINING,
                    f"data.{name}",
                    f"{name} {_g(value)} {unit} exceeds the battery's rated {_g(rated)} {unit} by more than "
                    f"{_g(tol.remaining_margin_pct)} % (at most {_g(limit)} {unit}).",
                    {
                        "reading": name,
                        "value": value,
                        "rated": rated,
                        "margin_pct": tol.remaining_margin_pct,
                        "limit": limit,
                    },
                )
            )
    return Verdict(None, unchecked)


def _capacity(data: Mapping[str, Any], facts: Facts) -> Verdict:
    if facts.rated_energy_kwh is None:
        return Verdict(None, (NO_CAPACITY,))
    capacity = float(data["rated_capacity"])
    if capacity > facts.rated_energy_kwh:
        return Verdict(
            Implausible(
                CAPACITY,
                "data.rated_capacity",
                f"rated_capacity {_g(capacity)} kWh exceeds the battery's original rated energy "
                f"{_g(facts.rated_energy_kwh)} kWh.",
                {"rated_capacity_kwh": capacity, "original_rated_energy_kwh": facts.rated_energy_kwh},
            )
        )
    return Verdict()


def observe(readings: Readings, etype: EventType, event_id: str, data: Mapping[str, Any]) -> Readings:
    """The readings after an accepted event: an INSPECTED, GRADED or BMS_REPORTED gives new ones; REMANUFACTURED
    lets the SoH start afresh (new cells may read higher); an ERROR_DECLARED drops a reading its declared event
    gave."""
    if etype in (EventType.INSPECTED, EventType.GRADED, EventType.BMS_REPORTED):
        soh, cycles = data.get("soh_pct"), data.get("cycle_count")
        if soh is not None:
            readings = replace(readings, soh_pct=Reading(float(soh), event_id))
        if cycles is not None:
            readings = replace(readings, cycle_count=Reading(cycles, event_id))
        reported = {name: Reading(value, event_id) for name in BMS_TOTALS if (value := member(data, name)) is not None}
        if reported:
            readings = replace(readings, totals={**readings.totals, **reported})
    elif etype is EventType.REMANUFACTURED:
        readings = replace(readings, soh_pct=None)
    elif etype is EventType.ERROR_DECLARED:
        declared = data.get("declared_event_id")
        if readings.soh_pct is not None and readings.soh_pct.event_id == declared:
            readings = replace(readings, soh_pct=None)
        if readings.cycle_count is not None and readings.cycle_count.event_id == declared:
            readings = replace(readings, cycle_count=None)
        if any(r.event_id == declared for r in readings.totals.values()):
            readings = replace(readings, totals={k: r for k, r in readings.totals.items() if r.event_id != declared})
    return readings
