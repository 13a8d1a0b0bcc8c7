"""Installation as a relation: a battery is in a vehicle (VIN) or at an ESS site from its INSTALLED until the
event that takes it out of service (REMOVED, or a final DISPOSED/RECYCLED). Pure: folded from a battery's
timeline; a vehicle's batteries at a moment are the relations that hold then (DOMAIN.md, Vehicles).

A pack replacement is the vehicle's change registration: the old pack's relation ends with its REMOVED, the
new pack's starts with its INSTALLED into the same VIN. The VIN never becomes the new pack's alias: a look-up
at a moment answers whichever batteries were installed then."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Installation:
    battery_id: str
    vin: str | None  # the VIN's pseudonym as the ledger holds it
    ess_site_id: str | None
    installed_by: str
    since: datetime
    since_sequence: int
    until: datetime | None = None
    until_sequence: int | None = None
    removal_reason: str | None = None
    recall_campaign: str | None = None

    def holds_at(self, at: datetime) -> bool:
        return self.since <= at and (self.until is None or at < self.until)


def declared_in_error(events: Iterable[Mapping[str, Any]]) -> set[tuple[str, str | None]]:
    """(event_id, actor or None) of every event an ERROR_DECLARED of the timeline names."""
    out: set[tuple[str, str | None]] = set()
    for e in events:
        if e["type"] == "ERROR_DECLARED":
            data = e.get("data") or {}
            if data.get("declared_event_id"):
                out.add((str(data["declared_event_id"]), data.get("declared_actor")))
    return out


def installations(battery_id: str, events: Sequence[Mapping[str, Any]]) -> list[Installation]:
    """The battery's installations in sequence order. Events declared in error count for nothing."""
    declared = declared_in_error(events)
    out: list[Installation] = []
    current: Installation | None = None
    for e in sorted(events, key=lambda e: e["sequence"]):
        eid = str(e["event_id"])
        if (eid, None) in declared or (eid, e.get("actor")) in declared or e["type"] == "ERROR_DECLARED":
            continue
        data = e.get("data") or {}
        if e["type"] == "INSTALLED":
            if current is not None:  # cannot happen under the state machine; keep the fold total
                out.append(replace(current, until=e["occurred_at"], until_sequence=e["sequence"]))
            current = Installation(
                battery_id=battery_id,
                vin=data.get("vin"),
                ess_site_id=data.get("ess_site_id"),
                installed_by=e["actor"],
                since=e["occurred_at"],
                since_sequence=e["sequence"],
            )
        elif current is not None and e["state_after"] != "in_service":
            out.append(
                replace(
                    current,
                    until=e["occurred_at"],
                    until_sequence=e["sequence"],
                    removal_reason=data.get("reason") if e["type"] == "REMOVED" else e["type"].lower(),
                    recall_campaign=data.get("recall_campaign"),
                )
            )
            current = None
    if current is not None:
        out.append(current)
    return out


def of_vehicle(vin: str, timelines: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Installation]:
    """Every installation into the vehicle, oldest first."""
    found = [i for bid, events in timelines.items() for i in installations(bid, events) if i.vin == vin]
    return sorted(found, key=lambda i: (i.since, i.battery_id))


def installed_at(found: Iterable[Installation], at: datetime) -> list[Installation]:
    return [i for i in found if i.holds_at(at)]


def answer_at(found: Sequence[Installation], at: datetime) -> str | None:
    """The battery a VIN look-up at `at` answers: of those installed then, the one installed first (a battery
    added later, whatever ID its poster chose, never displaces it); else the one installed last before then;
    None if none was installed before `at`."""
    now = installed_at(found, at)
    if now:
        return min(now, key=lambda i: (i.since, i.battery_id)).battery_id
    before = [i for i in found if i.since <= at]
    return max(before, key=lambda i: (i.since, i.since_sequence)).battery_id if before else None


def concerning(found: Sequence[Installation], org: str, custodians: Mapping[str, set[str]]) -> list[Installation]:
    """The installations of batteries `org` installed or held (custodian now or before): what a participant
    that is no authority sees of a vehicle (the batteries concerned by it, not every battery in the car)."""
    return [i for i in found if i.installed_by == org or org in custodians.get(i.battery_id, set())]
