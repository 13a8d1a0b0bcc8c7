"""A battery's whole life in one answer: facts, aliases, composition at any time, timeline, chain status,
passports (one per life), and how fresh the read model is."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.history import repository as repo
from services.portal.history.schemas import BatterySearch
from services.portal.ingest.projection import REGISTRY_FACTS
from services.portal.recalls import service as recalls
from services.portal.vehicles import service as vehicles
from shared import access
from shared.auth import Principal, readable_groups
from shared.contract.lifecycle import GENESIS, LEDGER_FIELDS
from shared.db import raw_connection
from shared.pagination import split_page
from shared.problems import Forbidden, NotFound, Unprocessable, field_error
from shared.vin import is_pseudonym, is_vin, normalise

#: Deepest composition: cell in module in pack (and one more level to spare).
MAX_DEPTH = 4
_CURRENT = (
    "state",
    "state_since",
    "custodian",
    "region",
    "grade",
    "soh_pct",
    "cycle_count",
    "parent_id",
    "vin",
    "safety",
    "sequence",
)
#: What of `current` the certification group holds.
_CERTIFICATION_CURRENT = ("state", "state_since", "safety", "sequence")
#: A timeline entry: the ledger record without its battery ID (the history names the battery once).
_EVENT_FIELDS = ("sequence", *(f for f in LEDGER_FIELDS if f not in ("battery_id", "sequence")))
_event_fields = operator.itemgetter(*_EVENT_FIELDS)
PASSPORT_STATUS = {"original": "Original", "repurposed": "Repurposed", "remanufactured": "Remanufactured"}


async def locate(
    conn: asyncpg.Connection, battery_id: str | None, alias: str | None, at: datetime | None = None
) -> dict[str, Any]:
    """The battery by its ID or an alias (`resolve`)."""
    bid = await resolve(conn, battery_id, alias, at)
    battery = await repo.get_battery(conn, bid)
    if battery is None:
        raise _unknown(bid)
    return battery


async def resolve(conn: asyncpg.Connection, battery_id: str | None, alias: str | None, at: datetime | None) -> str:
    """The battery ID meant: `battery_id`, or what an alias (GS1 Digital Link, EPC) names. A VIN (or its
    pseudonym) follows the installation relation at `at` (now if None): `vehicles.battery_for_vin`."""
    if alias and (is_vin(normalise(alias)) or is_pseudonym(alias)):
        found = await vehicles.battery_for_vin(conn, alias, at)
        if found is None:
            raise NotFound(f"Nothing in the portal is known as '{alias}'.", code="unknown-alias")
        return found
    if alias:
        found = await repo.resolve_alias(conn, alias)
        if found is None:
            raise NotFound(f"Nothing in the portal is known as '{alias}'.", code="unknown-alias")
        return found
    return battery_id or ""


def _unknown(battery_id: str) -> NotFound:
    return NotFound(f"The portal knows no battery '{battery_id}' (yet).", code="unknown-battery")


async def relation(conn: asyncpg.Connection, org: str, battery: Mapping[str, Any]) -> access.Relation:
    """What the portal's copy of the ledger proves about `org` and the battery: its manufacturer, its
    custodian now or before, its consignee, a certifier of it (shared.access.Relation)."""
    facts = await repo.relation_facts(conn, org, battery["id"])
    if battery["custodian"] is not None and battery["custodian"] == org:
        custody = access.Custody.current
    else:
        custody = access.Custody.past if facts.get("past") else access.Custody.none
    return access.Relation(
        is_manufacturer=battery["manufacturer"] is not None and battery["manufacturer"] == org,
        custody=custody,
        consigned=facts.get("consigned", False),
        certified=facts.get("certified", False),
    )


async def check_may_read(
    principal: Principal, battery: Mapping[str, Any], prove: Callable[[], Awaitable[access.Relation]]
) -> frozenset[access.FieldGroup]:
    """What of the battery the principal reads (shared.access.field_groups); 403 when nothing non-public."""
    return await readable_groups(
        principal,
        prove,
        f"'{principal.org}' has no relation the ledger proves (manufacturer, custodian, consignee, "
        f"certifier) to battery '{battery['id']}'; only authorities and operators see every history.",
    )


def trim_event(
    event: Mapping[str, Any],
    groups: frozenset[access.FieldGroup],
    by_sequence: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A timeline entry as the principal may see it: commercial facts in its data only for those who see them;
    where it was declared in error, the declaration (`by_sequence`: the timeline by sequence)."""
    out = dict(zip(_EVENT_FIELDS, _event_fields(event), strict=True))
    if access.FieldGroup.commercial not in groups and isinstance(out.get("data"), Mapping):
        out["data"] = access.trim_commercial(out["data"], groups)
    declared_by = event.get("declared_by")
    declaration = (by_sequence or {}).get(declared_by) if declared_by is not None else None
    out["declared_in_error"] = None
    if declaration is not None:
        out["declared_in_error"] = {
            "sequence": declaration["sequence"],
            "event_id": declaration["event_id"],
            "actor": declaration["actor"],
            "occurred_at": declaration["occurred_at"],
            "reason": declaration["data"].get("reason"),
        }
    return out


def in_effect(events: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The events that shape the battery's life: none declared in error, and not the declarations themselves."""
    return [e for e in events if e.get("declared_by") is None and e["type"] != "ERROR_DECLARED"]


def trim_amendment(amendment: Mapping[str, Any], groups: frozenset[access.FieldGroup]) -> dict[str, Any]:
    """An amendment as the principal may see it: the values of commercial facts only for those who see them."""
    changes = amendment["changes"]
    shown = access.trim_commercial(changes, groups)
    keys = ("id", "number", "reason", "actor", "actor_role", "amended_at")
    return {k: amendment[k] for k in keys} | {"changes": shown, "restricted": sorted(set(changes) - set(shown))}


def visible_events(events: Sequence[Mapping[str, Any]], groups: frozenset[access.FieldGroup]) -> list[Any]:
    """The whole timeline for those who read a battery's condition; the certification events for a certifier."""
    if access.FieldGroup.condition in groups:
        return list(events)
    return [e for e in events if e["type"] in access.CERTIFICATION_EVENTS]


async def history(
    conn: asyncpg.Connection, principal: Principal, battery_id: str, *, alias: str | None, at: datetime | None
) -> dict[str, Any]:
    bid = await resolve(conn, battery_id, alias, at)
    read = await repo.history_of(conn, bid)  # the whole history in one statement
    if read is None:
        raise _unknown(bid)
    battery = read.battery
    by_vin = bool(alias and (is_vin(normalise(alias)) or is_pseudonym(alias)))
    proved: list[access.Relation] = []

    async def prove() -> access.Relation:  # asked at most once per request, by whichever check needs it first
        if not proved:
            proved.append(await relation(conn, principal.org, battery))
        return proved[0]

    try:
        groups = await check_may_read(principal, battery, prove)
    except Forbidden:
        if by_vin:  # a VIN's battery: who may not read it learns nothing, not even that the VIN is known
            raise NotFound(f"Nothing in the portal is known as '{alias}'.", code="unknown-alias") from None
        raise
    sees_vin = await _sees_vin(principal, prove)
    if by_vin and not sees_vin:
        raise NotFound(f"Nothing in the portal is known as '{alias}'.", code="unknown-alias")
    if at is not None and at.tzinfo is None:
        raise Unprocessable("at: needs a time zone", errors=[field_error("at", "timezone_aware", "needs a time zone")])
    when = at or datetime.now(UTC)
    events = read.timeline
    by_sequence = {e["sequence"]: e for e in events}
    head = events[-1] if events else None
    facts = {k: battery[k] for k in REGISTRY_FACTS}
    registry = access.trim_commercial(facts, groups)
    registry["restricted"] = sorted(k for k in facts if k not in registry)
    condition = access.FieldGroup.condition in groups
    # A certifier: the state it certifies and the last result, not custody, health or the vehicle.
    current = {k: battery[k] if condition or k in _CERTIFICATION_CURRENT else None for k in _CURRENT}
    # The vehicle: its plain VIN (or "erased") for those who read the battery's condition, never the pseudonym's key.
    current["vin_pseudonym"] = current["vin"] if current["vin"] and is_pseudonym(current["vin"]) else None
    if current["vin"] and sees_vin:
        current["vin"] = (await vehicles.shown_vins(conn, [current["vin"]])).get(current["vin"])
    elif current["vin"]:
        current["vin"] = None  # personal data: the pseudonym only, for those who read the battery but not its car
    out: dict[str, Any] = {
        "battery_id": bid,
        "registry": registry if battery["registered"] else None,
        "aliases": [a for a in read.aliases if condition or a["scheme"] != "vin"],
        "current": current | {"passport_status": battery["status"]},
        "composition": await composition(conn, bid, when, events, assembled_into=read.assembled_into),
        "state_at": state_at(events, at) if at is not None and condition else None,
        "timeline": [trim_event(e, groups, by_sequence) for e in visible_events(events, groups)],
        "amendments": [trim_amendment(a, groups) for a in read.amendments],
        "chain": chain_status(bid, events),
        "passports": lives(bid, events),
        "as_of": {
            "event_id": head["event_id"],
            "sequence": head["sequence"],
            "recorded_at": head["recorded_at"],
            "applied_at": head["applied_at"],
        }
        if head
        else None,
        "recalls": await recalls.of_battery(conn, battery) if access.sees_every_vehicle(principal) else None,
    }
    return out


async def _sees_vin(principal: Principal, prove: Callable[[], Awaitable[access.Relation]]) -> bool:
    """Whether the principal reads the battery's vehicle (its VIN): shared.access.may_read_vehicle, where every
    custodian, the installing OEM included (INSTALLED needs custody), holds or held it."""
    if access.sees_every_vehicle(principal):
        return True
    held = (await prove()).custody is not access.Custody.none
    return access.may_read_vehicle(principal, installed_one=False, held_one=held)


async def search(
    session: AsyncSession, principal: Principal, f: BatterySearch, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the batteries the principal may read that match every filter, and whether more follow. `vin`:
    the batteries ever installed into that vehicle (the installation relation; its pseudonym works too)."""
    conn = await raw_connection(session)
    # Who sees every battery but not its vehicle (operators) neither finds batteries by VIN nor sees VINs.
    sees_vins = access.sees_every_vehicle(principal) or not access.sees_every_battery(principal)
    if f.vin is not None:
        if not sees_vins:
            return [], False
        f = f.model_copy(update={"vin": await vehicles.pseudonym_for(conn, f.vin)})
    rows = await repo.search(session, f, access.only_handled_by(principal), after, limit + 1)
    shown = await vehicles.shown_vins(conn, [r["vin"] for r in rows if r.get("vin")]) if sees_vins else {}
    for r in rows:
        if r.get("vin"):
            r["vin"] = shown.get(r["vin"])
    return split_page(rows, limit)


async def composition(
    conn: asyncpg.Connection,
    battery_id: str,
    at: datetime,
    own: Sequence[Mapping[str, Any]] | None = None,
    *,
    assembled_into: bool = True,
) -> dict[str, Any]:
    """The tree under the battery and the chain of parents above it, as they were at `at`. `own`: the battery's
    timeline where the caller holds it (its parent is then read from it); `assembled_into`: False where no battery
    was ever assembled into it (it has no components to look up)."""
    ancestors: list[str] = []
    parent = parent_in(own, at) if own is not None else await repo.parent_at(conn, battery_id, at)
    while parent is not None and parent not in ancestors and parent != battery_id:
        ancestors.append(parent)
        if len(ancestors) == MAX_DEPTH:
            break
        parent = await repo.parent_at(conn, parent, at)
    edges: dict[str, str] = {}
    level = [battery_id]
    for _ in range(MAX_DEPTH if assembled_into else 0):
        found = await repo.children_at(conn, level, at)
        found = {c: p for c, p in found.items() if c not in edges and c != battery_id}
        if not found:
            break
        edges.update(found)
        level = list(found)
    info = await repo.summaries(conn, list(edges))
    children: dict[str, list[str]] = {}
    for child, parent in sorted(edges.items()):
        children.setdefault(parent, []).append(child)

    def node(bid: str) -> dict[str, Any]:
        facts = info.get(bid, {})
        return {
            "id": bid,
            "kind": facts.get("kind"),
            "model_id": facts.get("model_id"),
            "components": [node(c) for c in children.get(bid, [])],
        }

    return {
        "at": at,
        "parent_id": ancestors[0] if ancestors else None,
        "ancestors": ancestors,
        "components": node(battery_id)["components"],
    }


def parent_in(events: Sequence[Mapping[str, Any]], at: datetime) -> str | None:
    """The parent a battery was inside at `at`, from its own timeline (as `repository.parent_at` reads it): that
    of its last ASSEMBLED in effect by then, unless a DISASSEMBLED followed."""
    for e in reversed(events):
        if e["type"] in ("ASSEMBLED", "DISASSEMBLED") and e["declared_by"] is None and e["occurred_at"] <= at:
            return e["parent_id"] if e["type"] == "ASSEMBLED" else None
    return None


def state_at(events: Sequence[Mapping[str, Any]], at: datetime) -> dict[str, Any] | None:
    """The state and custodian after the last event in effect that occurred by `at` (a declaration included: it
    records the corrected ones)."""
    for e in reversed(events):
        if e["declared_by"] is None and e["occurred_at"] <= at:
            return {k: e[k] for k in ("sequence", "state_after", "custodian_after")}
    return None


def chain_status(battery_id: str, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Linkage check on what the portal holds: sequences contiguous from 1, each prev_hash equal to the
    previous event's hash. The events service recomputes every hash (`verify_url`)."""
    status, broken_at, reason = "valid", None, None
    prev = GENESIS
    for expected, e in enumerate(events, start=1):
        if e["sequence"] != expected:
            status, broken_at = "incomplete", expected
            reason = f"event {expected} has not reached the portal (next held: {e['sequence']})"
            break
        if e["prev_hash"] != prev:
            status, broken_at, reason = "broken", expected, "prev_hash differs from the previous event's hash"
            break
        prev = e["hash"]
    return {
        "status": status if events else "empty",
        "events": len(events),
        "head_hash": events[-1]["hash"] if events else None,
        "broken_at_sequence": broken_at,
        "reason": reason,
        "verify_url": f"/v1/batteries/{battery_id}/verify",
    }


def passport_id(battery_id: str, life: int) -> str:
    """A passport identifier per life of the battery (a new one on remanufacture or repurpose)."""
    name = f"https://batterytrace.kr/battery/{battery_id}/passport/{life}"
    return f"urn:batterytrace:{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}"


def lives(battery_id: str, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One passport per life: the original, then one per REMANUFACTURED/REPURPOSED, each linked to its
    predecessor. The last one's status becomes Waste once the battery is recycled or disposed. Events declared in
    error start no life and end none."""
    events = in_effect(events)
    out = [
        {
            "passport_id": passport_id(battery_id, 0),
            "life": 0,
            "status": "Original",
            "from_sequence": 1,
            "to_sequence": None,
            "started_at": events[0]["occurred_at"] if events else None,
            "predecessor": None,
            "successor": None,
        }
    ]
    for e in events:
        if e["type"] in ("REMANUFACTURED", "REPURPOSED"):
            prev = out[-1]
            new = {
                "passport_id": passport_id(battery_id, len(out)),
                "life": len(out),
                "status": PASSPORT_STATUS[e["type"].lower()],
                "from_sequence": e["sequence"],
                "to_sequence": None,
                "started_at": e["occurred_at"],
                "predecessor": prev["passport_id"],
                "successor": None,
            }
            prev["to_sequence"] = e["sequence"] - 1
            prev["successor"] = new["passport_id"]
            out.append(new)
        elif e["type"] in ("RECYCLED", "DISPOSED"):
            out[-1]["status"] = "Waste"
    return out
