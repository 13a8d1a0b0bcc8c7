"""EPCIS 2.0 events → lifecycle events: the mapping table of the README, as code. Pure functions, no I/O.

An EPCIS event is a *battery event* when it names a registered battery where our lifecycle reads it
(epcList, parentID/childEPCs, inputEPCList) and its bizStep/action/source-destination mean a lifecycle
step. Everything else (materials, lots, containers, plain observations) is stored as a plain EPCIS event.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson
from pydantic import ValidationError

from services.events.lifecycle.schemas import EventIn
from shared.contract import epcis as voc
from shared.contract.epcis import (
    BATTERY,
    BT,
    CUSTODY_TYPES,
    GRADE_DISPOSITIONS,
    MASS_UOM,
    MATERIAL,
    MEASUREMENT,
    PARTICIPANT,
    RECYCLING,
    REMOVAL_DISPOSITIONS,
    SAFETY_DISPOSITIONS,
    expand,
    site_of,
)
from shared.contract.lifecycle import MATERIALS, EventType
from shared.problems import Problem, field_error, validation_errors

#: What a battery is associated with (AssociationEvent parentID): a vehicle by its VIN, an ESS site by its ID.
VEHICLE = "https://batterytrace.kr/vehicle/"
ESS_SITE = "https://batterytrace.kr/ess/"
VIN_URN = "urn:vin:"
#: The party type whose change is a transfer of ownership (TransactionEvent).
OWNING_PARTY = "owning_party"

#: bizStep → lifecycle type, for ObjectEvents about batteries (the contract's table, typed).
OBJECT_STEPS: dict[str, EventType] = {step: EventType(t) for step, t in voc.OBJECT_STEPS.items()}


def ledger_event_id(capturer: str, epcis_event_id: str, battery_id: str, suffix: str = "") -> str:
    """The ledger's UUID for the lifecycle event an EPCIS event makes for one battery: deterministic, so a
    re-sent document by the same capturer is a harmless retry, and seeded with the capturer, so another
    participant's event with the same eventID is another ledger event."""
    seed = f"{epcis_event_id}#{battery_id}{suffix}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{quote(capturer, safe='')}@{seed}"))


#: Extension fields the server writes (who posted, where in the chain): a captured event may not carry them.
SERVER_OWNED = ("actor", "sequence", "hash")
#: ... nor may its errorDeclaration name who declared it.
SERVER_OWNED_DECLARATION = ("declaredBy",)


def server_owned_fields(event: Mapping[str, Any]) -> list[str]:
    """The server-owned fields an EPCIS event sends (compact `bt:` or full IRI), as JSON-pointer-ish names."""
    out = [k for k in _OWNED_KEYS if k in event]
    declaration = event.get("errorDeclaration")
    if isinstance(declaration, Mapping):
        out += [f"errorDeclaration/{k}" for k in _OWNED_DECLARATION_KEYS if k in declaration]
    return out


#: Each server-owned name in both spellings, in the order they are reported.
_OWNED_KEYS = tuple(k for name in SERVER_OWNED for k in ("bt:" + name, BT + name))
_OWNED_DECLARATION_KEYS = tuple(k for name in SERVER_OWNED_DECLARATION for k in ("bt:" + name, BT + name))


def digest(event: Mapping[str, Any]) -> str:
    """What makes two captures of one eventID the same event (recordTime and errorDeclaration aside)."""
    body = {k: v for k, v in event.items() if k not in ("recordTime", "errorDeclaration")}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def identifiers(event: Mapping[str, Any]) -> list[str]:
    """Every instance-level identifier the event names (class-level epcClass values never are batteries)."""
    out: list[str] = []
    for key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        out += [v for v in event.get(key) or [] if isinstance(v, str)]
    if isinstance(event.get("parentID"), str):
        out.append(event["parentID"])
    return out


class MappingProblem(Problem):
    status, code, title = 422, "epcis-mapping", "EPCIS event cannot be mapped"


@dataclass
class Mapped:
    """What an EPCIS event becomes: lifecycle events (battery events) or none (a plain EPCIS event)."""

    lifecycle: list[EventIn] = field(default_factory=list)
    battery_ids: list[str] = field(default_factory=list)


def _ext(event: Mapping[str, Any], name: str) -> Any:
    """An extension field of ours, compact (`bt:region`) or full (`https://batterytrace.kr/voc/region`)."""
    value = event.get("bt:" + name)
    return event.get(BT + name) if value is None else value


def _location(event: Mapping[str, Any]) -> dict[str, Any]:
    loc: dict[str, Any] = {}
    place = (event.get("bizLocation") or {}).get("id") or (event.get("readPoint") or {}).get("id")
    if place:
        loc["site"] = site_of(place)
    if _ext(event, "region"):
        loc["region"] = _ext(event, "region")
    return loc


def _sensor(event: Mapping[str, Any], measurement: str) -> float | None:
    for element in event.get("sensorElementList") or []:
        for report in element.get("sensorReport") or []:
            if expand(str(report.get("type", ""))) == MEASUREMENT + measurement and "value" in report:
                return float(report["value"])
    return None


def _participant(value: str) -> str:
    value = expand(value)
    if value.startswith(PARTICIPANT):
        return unquote(value[len(PARTICIPANT) :])
    raise MappingProblem(
        f"Custody moves to '{value}', which is not a participant URI ({PARTICIPANT}<org>).",
        errors=[field_error("destinationList", "participant-uri", f"use {PARTICIPANT}<org>")],
    )


def _object_data(etype: EventType, event: Mapping[str, Any], disposition: str) -> dict[str, Any]:
    """The type-specific `data` of a lifecycle event, from the EPCIS event's fields (README table)."""
    if etype is EventType.INSTALLED:
        return {k: v for k, v in {"vin": _ext(event, "vin"), "ess_site_id": _ext(event, "essSiteId")}.items() if v}
    if etype is EventType.INSPECTED:
        return {"soh_pct": _sensor(event, "StateOfHealth"), "cycle_count": _cycle_count(event)}
    if etype is EventType.REMOVED:
        return {"reason": _ext(event, "removalReason") or REMOVAL_DISPOSITIONS.get(disposition, "end_of_life")}
    if etype is EventType.COLLECTED:
        place = (event.get("bizLocation") or {}).get("id")
        return {"centre": _ext(event, "centre") or (site_of(place) if place else None), "region": _ext(event, "region")}
    if etype is EventType.GRADED:
        data = {"soh_pct": _sensor(event, "StateOfHealth"), "grade": GRADE_DISPOSITIONS.get(disposition)}
        return data | ({"pre_removal": _ext(event, "preRemoval")} if _ext(event, "preRemoval") is not None else {})
    if etype is EventType.REPURPOSED:
        return {"new_application": _ext(event, "newApplication"), "rated_capacity": _ext(event, "ratedCapacityKWh")}
    if etype is EventType.SAFETY_INSPECTED:
        data = {"result": SAFETY_DISPOSITIONS.get(disposition), "body": _ext(event, "inspectionBody")}
        certificate = {  # KC 10031: the certificate and its report
            "certificate_number": _ext(event, "certificateNumber"),
            "edition": _ext(event, "edition"),
            "valid_until": _ext(event, "validUntil"),
            "report_ref": _ext(event, "reportRef"),
        }
        data |= {k: v for k, v in certificate.items() if v is not None}
        return data | ({"standard": _ext(event, "standard")} if _ext(event, "standard") else {})
    if etype is EventType.INCIDENT:
        data = {"kind": _ext(event, "incidentKind"), "severity": _ext(event, "severity")}
        return data | ({"description": _ext(event, "description")} if _ext(event, "description") else {})
    if etype is EventType.DISPOSED:
        return {k: v for k, v in {"method": _ext(event, "method"), "note": _ext(event, "note")}.items() if v}
    if etype is EventType.REMANUFACTURED:
        return {"note": _ext(event, "note")} if _ext(event, "note") else {}
    if etype is EventType.BMS_REPORTED:
        return _bms_data(event)
    return {}


def _bms_data(event: Mapping[str, Any]) -> dict[str, Any]:
    """A sensor report's BMS readings (the vocabulary's `BMS_MEASUREMENTS`); a reading we cannot read is refused
    rather than dropped."""
    reports = [r for e in event.get("sensorElementList") or [] for r in e.get("sensorReport") or []]
    data, unreadable = voc.bms_data(reports)
    if unreadable:
        raise MappingProblem(
            f"BMS readings need {unreadable[0]}.",
            errors=[field_error("sensorElementList", "bms-measurement", f"needs {u}") for u in unreadable],
        )
    return data


def _cycle_count(event: Mapping[str, Any]) -> int | None:
    value = _sensor(event, "CycleCount")
    return None if value is None else int(value)


def _recycled_data(event: Mapping[str, Any]) -> dict[str, Any]:
    recovered = dict.fromkeys(MATERIALS, 0.0)
    black_mass = 0.0
    for q in event.get("outputQuantityList") or []:
        factor = MASS_UOM.get(str(q.get("uom", "")))
        cls = expand(str(q.get("epcClass", "")))
        if factor is None or not cls.startswith(MATERIAL):
            continue
        name, kg = cls[len(MATERIAL) :], float(q.get("quantity", 0)) * factor
        if name == "black_mass":
            black_mass += kg
        elif name in recovered:
            recovered[name] += kg
    input_mass = _ext(event, "inputMassKg")
    if input_mass is None:  # without a declared input mass, the outputs are the least it weighed
        input_mass = black_mass + sum(recovered.values())
    return {
        "process": _ext(event, "process") or "unspecified",
        "input_mass_kg": input_mass,
        "black_mass_kg": black_mass,
        "recovered_kg": {k: round(v, 6) for k, v in recovered.items() if v},
    }


def _is_recycling(event: Mapping[str, Any]) -> bool:
    if expand(str(event.get("bizStep", ""))) == RECYCLING:
        return True
    return any(q.get("uom") in MASS_UOM for q in event.get("outputQuantityList") or [])


def map_event(event: Mapping[str, Any], eid: str, batteries: Mapping[str, str | None], capturer: str) -> Mapped:
    """The lifecycle events one EPCIS event captured by `capturer` stands for. `batteries` maps each identifier to a battery ID
    (None: not a battery). Raises MappingProblem when the event is about batteries but cannot be applied."""
    etype = event.get("type")
    step = expand(str(event.get("bizStep", "")))
    disposition = expand(str(event.get("disposition", "")))
    occurred = event.get("eventTime")
    location = _location(event)

    def bid(value: Any) -> str | None:
        return batteries.get(value) if isinstance(value, str) else None

    def lifecycle(battery_id: str, t: EventType, data: dict[str, Any]) -> EventIn:
        body = {
            "event_id": ledger_event_id(capturer, eid, battery_id),
            "battery_id": battery_id,
            "type": t.value,
            "occurred_at": occurred,
            "location": location,
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            return EventIn.model_validate(body)
        except ValidationError as exc:
            errs = validation_errors(exc.errors())
            raise MappingProblem(
                f"{t.value} for {battery_id}: {errs[0]['field']}: {errs[0]['message']}", errors=errs
            ) from None

    if etype == "ObjectEvent":
        ids = [b for b in (bid(v) for v in event.get("epcList") or []) if b]
        if not ids:
            return Mapped()
        mapped = OBJECT_STEPS.get(step)
        if mapped is not None:
            data = _object_data(mapped, event, disposition)
            if mapped is EventType.BMS_REPORTED and not data:
                return Mapped(battery_ids=ids)  # a sensor report without BMS readings (a logger's): observed only
            return Mapped([lifecycle(b, mapped, data) for b in ids], ids)
        receivers = [d["destination"] for d in event.get("destinationList") or [] if d.get("type") in CUSTODY_TYPES]
        if receivers:
            to = _participant(receivers[0])
            return Mapped([lifecycle(b, EventType.TRANSFERRED, {"to": to}) for b in ids], ids)
        return Mapped(battery_ids=ids)  # an observation of batteries: stored, no lifecycle step

    if etype == "AggregationEvent" and event.get("action") in ("ADD", "DELETE"):
        parent_value = event.get("parentID")
        parent = bid(parent_value) or (
            parent_value[len(BATTERY) :] if isinstance(parent_value, str) and parent_value.startswith(BATTERY) else None
        )
        children = [(v, bid(v)) for v in event.get("childEPCs") or []]
        child_ids = [b for _, b in children if b]
        composing = step in ("assembling", "disassembling") or parent is not None
        if not composing or not child_ids:
            return Mapped(battery_ids=[b for b in [parent, *child_ids] if b])
        if parent is None:
            raise MappingProblem(
                f"The parent '{parent_value}' is not a registered battery.",
                status=404,
                code="unknown-parent",
                errors=[field_error("parentID", "known-battery", "not a registered battery")],
            )
        strangers = [v for v, b in children if b is None]
        if strangers:
            raise MappingProblem(
                f"Components {strangers} are not registered batteries.",
                status=404,
                code="unknown-battery",
                errors=[field_error("childEPCs", "known-battery", f"not registered: {v}") for v in strangers],
            )
        t = EventType.ASSEMBLED if event["action"] == "ADD" else EventType.DISASSEMBLED
        return Mapped([lifecycle(b, t, {"parent_id": parent}) for b in child_ids], [*child_ids, parent])

    if etype == "TransformationEvent":
        inputs = [b for b in (bid(v) for v in event.get("inputEPCList") or []) if b]
        outputs = [b for b in (bid(v) for v in event.get("outputEPCList") or []) if b]
        if not inputs or not _is_recycling(event):
            return Mapped(battery_ids=inputs + outputs)
        if len(inputs) != 1:
            raise MappingProblem(
                "A recycling TransformationEvent takes exactly one battery as input (recovered kg are per battery).",
                errors=[field_error("inputEPCList", "one-battery", f"{len(inputs)} batteries")],
            )
        return Mapped([lifecycle(inputs[0], EventType.RECYCLED, _recycled_data(event))], inputs + outputs)

    if etype == "AssociationEvent" and event.get("action") in ("ADD", "DELETE"):
        hosted = [b for b in (bid(v) for v in event.get("childEPCs") or []) if b]
        host = _host(event)
        if not hosted or host is None:
            return Mapped(battery_ids=[b for b in [bid(event.get("parentID")), *hosted] if b])
        if event["action"] == "ADD":
            data = {"vin": host[1]} if host[0] == "vehicle" else {"ess_site_id": host[1]}
            return Mapped([lifecycle(b, EventType.INSTALLED, data) for b in hosted], hosted)
        data = _object_data(EventType.REMOVED, event, disposition)
        return Mapped([lifecycle(b, EventType.REMOVED, data) for b in hosted], hosted)

    if etype == "TransactionEvent" and event.get("action") == "ADD":
        sold = [b for b in (bid(v) for v in event.get("epcList") or []) if b]
        owners = [
            d.get("destination")
            for d in event.get("destinationList") or []
            if expand(str(d.get("type", ""))).removeprefix("https://ref.gs1.org/cbv/SDT-") == OWNING_PARTY
        ]
        if sold and owners:
            to = _participant(str(owners[0]))
            return Mapped([lifecycle(b, EventType.TRANSFERRED, {"to": to}) for b in sold], sold)
        return Mapped(battery_ids=sold)

    ids = [b for b in (bid(v) for v in identifiers(event)) if b]
    return Mapped(battery_ids=ids)  # other Association/Transaction events, OBSERVE aggregations: stored only


def _host(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """What an AssociationEvent associates its batteries with: ("vehicle", VIN) or ("ess", site ID), from its
    parentID (`https://batterytrace.kr/vehicle/{VIN}`, `urn:vin:{VIN}`, `https://batterytrace.kr/ess/{site}`)
    or, for a parent named otherwise (a GIAI, an SGLN), our `bt:vin` / `bt:essSiteId` extension fields."""
    parent = event.get("parentID")
    if isinstance(parent, str):
        for prefix, kind in ((VEHICLE, "vehicle"), (VIN_URN, "vehicle"), (ESS_SITE, "ess")):
            if parent.startswith(prefix) and len(parent) > len(prefix):
                return kind, unquote(parent[len(prefix) :])
    if _ext(event, "vin"):
        return "vehicle", str(_ext(event, "vin"))
    if _ext(event, "essSiteId"):
        return "ess", str(_ext(event, "essSiteId"))
    return None


def declaration_event(
    declarer: str,
    eid: str,
    battery_id: str,
    declared_event_id: str,
    declaration: Mapping[str, Any],
    location: dict[str, Any],
) -> EventIn:
    data: dict[str, Any] = {
        "declared_event_id": declared_event_id,
        "reason": str(declaration.get("reason") or "unspecified"),
    }
    if declaration.get("correctiveEventIDs"):
        data["corrective_event_ids"] = list(declaration["correctiveEventIDs"])
    try:
        return EventIn.model_validate(
            {
                "event_id": ledger_event_id(
                    declarer, eid, battery_id, f"#declared@{declaration.get('declarationTime')}"
                ),
                "battery_id": battery_id,
                "type": EventType.ERROR_DECLARED.value,
                "occurred_at": declaration["declarationTime"],
                "location": location,
                "data": data,
            }
        )
    except ValidationError as exc:
        errs = validation_errors(exc.errors(), prefix=("errorDeclaration",))
        raise MappingProblem(f"{errs[0]['field']}: {errs[0]['message']}", errors=errs) from None


def location_of(event: Mapping[str, Any]) -> dict[str, Any]:
    return _location(event)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
