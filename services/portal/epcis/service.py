"""The portal's EPCIS view: every lifecycle event mapped to EPCIS 2.0 (the reverse of the events service's
capture mapping), the EPCIS events captured as they were sent, and the EPCISQueryDocument around them.
The mapping and the document are pure functions; the consumer and the query functions at the end do the I/O.
The vocabulary is the published contract (`shared.contract.epcis`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.epcis import query
from services.portal.epcis import repository as repo
from services.portal.epcis.repository import Filters
from shared import access
from shared.auth import Principal
from shared.contract import epcis as voc
from shared.contract.epcis import (
    BATTERY,
    BT,
    DISP,
    ERROR_REASONS,
    GS1_CONTEXT,
    MATERIAL,
    MEASUREMENT,
    MEASUREMENTS,
    REMOVAL_DISPOSITION,
    SAFETY_DISPOSITION,
    STEPS,
    event_uri,
    participant_uri,
    site_uri,
)
from shared.contract.lifecycle import LedgerRecord as LifecycleEventIn
from shared.contract.lifecycle import ts
from shared.contract.streams import EPCIS_CAPTURED as CAPTURED
from shared.contract.streams import EPCIS_ERROR_DECLARED as DECLARED
from shared.contract.streams import (
    LIFECYCLE_TYPE_PREFIX,
    TOPIC_LIFECYCLE,
    LifecycleCloudEvent,
    is_known_lifecycle,
    is_lifecycle_type,
)
from shared.contract.streams import CloudEvent as CloudEventIn
from shared.kafka import ConsumerRecord, PoisonMessage
from shared.problems import EpcisException

log = logging.getLogger("batterytrace.portal.epcis")


def expand(value: str | None) -> str | None:
    """Compact IRIs with our prefixes → full URIs; CBV URIs → the bare CBV term."""
    return voc.expand(value) if value else None


def _sensor(**values: float | None) -> list[dict[str, Any]]:
    reports = [
        {"type": MEASUREMENT + MEASUREMENTS[k][0], "value": v, "uom": MEASUREMENTS[k][1]}
        for k, v in values.items()
        if v is not None
    ]
    return [{"sensorReport": reports}] if reports else []


def from_ledger(e: Mapping[str, Any]) -> dict[str, Any]:
    """One lifecycle event (as published on battery.lifecycle.v1) as an EPCIS event and its index row."""
    t, data, bid = e["type"], e["data"], e["battery_id"]
    etype, action, step = STEPS[t]
    uri = BATTERY + bid
    body: dict[str, Any] = {
        "type": etype,
        "eventID": event_uri(e["event_id"]),
        "eventTime": ts(e["occurred_at"]),
        "recordTime": ts(e["recorded_at"]),
        "eventTimeZoneOffset": "+00:00",
    }
    parent = None
    if etype == "AggregationEvent":
        parent = BATTERY + data["parent_id"]
        body.update(parentID=parent, childEPCs=[uri], action=action)
    elif etype == "TransformationEvent":
        recovered = data.get("recovered_kg") or {}
        outputs = [{"epcClass": MATERIAL + "black_mass", "quantity": data["black_mass_kg"], "uom": "KGM"}]
        outputs += [{"epcClass": MATERIAL + m, "quantity": kg, "uom": "KGM"} for m, kg in recovered.items() if kg]
        body.update(inputEPCList=[uri], outputQuantityList=outputs)
        body["bt:process"] = data["process"]
        body["bt:inputMassKg"] = data["input_mass_kg"]
    else:
        body.update(epcList=[uri], action=action)
    if step:
        body["bizStep"] = step
    disposition = _disposition(t, data)
    if disposition:
        body["disposition"] = disposition
    site, region = (e.get("location") or {}).get("site"), (e.get("location") or {}).get("region")
    location_id = site_uri(site) if site else None
    if location_id:
        body["readPoint"] = {"id": location_id}
        body["bizLocation"] = {"id": location_id}
    if t == "TRANSFERRED":
        body["destinationList"] = [{"type": "possessing_party", "destination": participant_uri(data["to"])}]
    sensors = _sensor(soh=data.get("soh_pct"), cycles=data.get("cycle_count")) if t in ("INSPECTED", "GRADED") else []
    if t == "BMS_REPORTED":
        sensors = [{"sensorReport": voc.bms_reports(data)}]
    if sensors:
        body["sensorElementList"] = sensors
    body.update({f"bt:{k}": v for k, v in _extensions(t, data).items() if v is not None})
    if region:
        body["bt:region"] = region
    body.update({"bt:actor": e["actor"], "bt:sequence": e["sequence"], "bt:hash": e["hash"]})
    return {
        "event_id": body["eventID"],
        "source": "ledger",
        "event_type": etype,
        "event_time": e["occurred_at"],
        "record_time": e["recorded_at"],
        "biz_step": step,
        "disposition": disposition,
        "read_point": location_id,
        "biz_location": location_id,
        "epcs": [uri],
        "parent_id": parent,
        "battery_ids": [bid] + ([data["parent_id"]] if parent else []),
        "ledger_event_ids": [e["event_id"]],
        "actor": e["actor"],
        "context": {},
        "body": body,
    }


def _disposition(t: str, data: Mapping[str, Any]) -> str | None:
    if t == "GRADED":
        return DISP + "grade_" + str(data["grade"])
    if t == "REMOVED":
        return REMOVAL_DISPOSITION.get(data.get("reason", ""))
    if t == "SAFETY_INSPECTED":
        return SAFETY_DISPOSITION.get(data.get("result", ""))
    if t == "DISPOSED":
        return "destroyed"
    if t in ("MANUFACTURED", "INSTALLED", "REMANUFACTURED", "REPURPOSED"):
        return "active"
    return None


def _extensions(t: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Our extension fields (README mapping table; names as in the served JSON-LD context)."""
    if t == "INSTALLED":
        return {"vin": data.get("vin"), "essSiteId": data.get("ess_site_id")}
    if t == "REMOVED":
        return {"removalReason": data.get("reason")}
    if t == "COLLECTED":
        return {"centre": data.get("centre")}
    if t == "REPURPOSED":
        return {"newApplication": data.get("new_application"), "ratedCapacityKWh": data.get("rated_capacity")}
    if t == "SAFETY_INSPECTED":
        return {
            "standard": data.get("standard"),
            "inspectionBody": data.get("body"),
            "certificateNumber": data.get("certificate_number"),
            "edition": data.get("edition"),
            "validUntil": data.get("valid_until"),
            "reportRef": data.get("report_ref"),
        }
    if t == "GRADED":
        return {"preRemoval": data.get("pre_removal")}
    if t == "INCIDENT":
        return {
            "incidentKind": data.get("kind"),
            "severity": data.get("severity"),
            "description": data.get("description"),
        }
    if t in ("DISPOSED", "REMANUFACTURED"):
        return {"method": data.get("method"), "note": data.get("note")}
    return {}


#: Fields of an answered event the server owns (capture refuses them in a body): who posted it, its place in
#: a chain; and, in an errorDeclaration, who declared it.
SERVER_OWNED = tuple(k for n in ("actor", "sequence", "hash") for k in ("bt:" + n, BT + n))
SERVER_OWNED_DECLARATION = ("bt:declaredBy", BT + "declaredBy")


def from_capture(data: Mapping[str, Any]) -> dict[str, Any]:
    """An EPCIS event captured by the events service, indexed as it was sent, with its capturer as `bt:actor`
    (server-owned fields a body carried are dropped: the capture refuses them, older records may have them)."""
    body = {k: v for k, v in data["event"].items() if k not in SERVER_OWNED}
    if isinstance(body.get("errorDeclaration"), Mapping):
        body["errorDeclaration"] = {
            k: v for k, v in body["errorDeclaration"].items() if k not in SERVER_OWNED_DECLARATION
        }
    body["bt:actor"] = data["actor"]
    epcs: list[str] = []
    for key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        epcs += [v for v in body.get(key) or [] if isinstance(v, str)]
    battery_ids = list(data.get("battery_ids") or [])
    epcs += [BATTERY + b for b in battery_ids]
    return {
        "event_id": data["event_id"],
        "source": "epcis",
        "event_type": body.get("type", ""),
        "event_time": datetime.fromisoformat(body["eventTime"].replace("Z", "+00:00")),
        "record_time": datetime.fromisoformat(data["record_time"].replace("Z", "+00:00")),
        "biz_step": expand(body.get("bizStep")),
        "disposition": expand(body.get("disposition")),
        "read_point": (body.get("readPoint") or {}).get("id"),
        "biz_location": (body.get("bizLocation") or {}).get("id"),
        "epcs": sorted(set(epcs)),
        "parent_id": body.get("parentID"),
        "battery_ids": battery_ids,
        "ledger_event_ids": list(data.get("ledger_event_ids") or []),
        "actor": data["actor"],
        "context": dict(data.get("context") or {}),
        "body": body,
    }


def declaration_from_ledger(e: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An ERROR_DECLARED lifecycle event as the EPCIS errorDeclaration of the event it declares."""
    data = e["data"]
    decl: dict[str, Any] = {"declarationTime": ts(e["occurred_at"])}
    reason = str(data.get("reason") or "")
    if reason in ERROR_REASONS or (":" in reason and " " not in reason):
        decl["reason"] = reason
    elif reason and reason != "unspecified":
        decl["bt:reasonText"] = reason
    corrective = [c if ":" in c else event_uri(c) for c in data.get("corrective_event_ids") or []]
    if corrective:
        decl["correctiveEventIDs"] = corrective
    decl["bt:declaredBy"] = e["actor"]
    return data["declared_event_id"], decl


# ---- the stream ----


@dataclass
class Batch:
    ledger: list[dict[str, Any]]
    declarations: list[tuple[str, dict[str, Any]]]
    captured: list[dict[str, Any]]
    declared: list[tuple[str | None, str, dict[str, Any]]]  # (capturer, eventID, declaration)


def decode(records: Iterable[ConsumerRecord[bytes, bytes]]) -> Batch:
    batch = Batch([], [], [], [])
    for rec in records:
        try:
            known = LifecycleCloudEvent.known(rec.value) if rec.value and rec.topic.endswith(TOPIC_LIFECYCLE) else None
            if known is not None:  # the fast path: one parse, one validation
                _add_ledger(batch, known.data)
                continue
            ce = CloudEventIn.model_validate(orjson.loads(rec.value or b""))
            if ce.type.startswith(LIFECYCLE_TYPE_PREFIX) and not is_known_lifecycle(ce.type, ce.data):
                continue  # UNKNOWN_TYPE_RULE: newer than this portal
            if is_lifecycle_type(ce.type):
                _add_ledger(batch, LifecycleEventIn.model_validate(ce.data))
            elif ce.type == CAPTURED:
                batch.captured.append(from_capture(ce.data))
            elif ce.type == DECLARED:
                capturer = ce.data.get("actor")
                batch.declared.append(
                    (
                        None if capturer is None else str(capturer),
                        str(ce.data["event_id"]),
                        dict(ce.data["error_declaration"]),
                    )
                )
            # else UNKNOWN_TYPE_RULE: a message type this view does not read is skipped
        except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError) as exc:
            if rec.topic.endswith(TOPIC_LIFECYCLE):
                # The portal's main consumer owns battery.lifecycle.v1 and dead-letters its bad records;
                # this secondary projection skips them rather than dead-letter each one a second time.
                log.warning(
                    "EPCIS view: skipping an unreadable lifecycle record %s:%d:%d", rec.topic, rec.partition, rec.offset
                )
                continue
            raise PoisonMessage(f"not an event the EPCIS view can apply: {exc}") from None
    return batch


def _add_ledger(batch: Batch, event: LifecycleEventIn) -> None:
    e = event.model_dump(mode="python")
    e["type"] = e["type"].value
    if e["type"] == "ERROR_DECLARED":
        batch.declarations.append(declaration_from_ledger(e))
    else:
        batch.ledger.append(from_ledger(e))


# ---- answering ----


def query_document(events: Sequence[dict[str, Any]], contexts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    prefixes: dict[str, Any] = {"bt": BT}
    for ctx in contexts:
        for k, v in ctx.items():
            prefixes.setdefault(k, v)
    return {
        "@context": [GS1_CONTEXT, prefixes],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": ts(datetime.now(UTC)),
        "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": list(events)}}},
    }


def present(
    row: Mapping[str, Any], aliases: Mapping[str, str], declarations: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """A stored event as answered: ledger-made events name each battery by its EPC (or Digital Link) alias
    when it has one; an event declared in error carries its errorDeclaration."""
    body = dict(row["body"])
    if row["source"] == "ledger":

        def name(v: str) -> str:
            return aliases.get(v[len(BATTERY) :], v) if v.startswith(BATTERY) else v

        for key in ("epcList", "childEPCs", "inputEPCList"):
            if key in body:
                body[key] = [name(v) for v in body[key]]
        if "parentID" in body:
            body["parentID"] = name(body["parentID"])
    declaration = row.get("error_declaration") or next(
        (declarations[i] for i in row["ledger_event_ids"] if i in declarations), None
    )
    if declaration:
        body["errorDeclaration"] = declaration
    return body


# ---- the query ----


@dataclass(frozen=True)
class Page:
    document: dict[str, Any]
    #: (order time, event ID, actor, source) the next page starts after, and how many events it may still hold
    next_after: tuple[datetime, str, str, str] | None
    remaining: int | None
    #: Subscriptions (`after_seq`): the arrival order of the page's last event, and whether more follow.
    last_seq: int | None = None
    more: bool = False
    #: The page's events as stored (each with its `event_id`, `record_time`, `seq`).
    rows: tuple[dict[str, Any], ...] = ()


async def search(
    session: AsyncSession,
    principal: Principal,
    q: query.EventQuery,
    *,
    after: tuple[datetime, str, str, str] | None = None,
    remaining: int | None = None,
    after_seq: int | None = None,
    min_record_time: datetime | None = None,
    batch: int | None = None,
) -> Page:
    """A page of the events visible to the principal (shared.access: every event for those who see every
    battery; else those it captured and those about batteries it has a relation to: made, holds, held or
    is consigned, never merely posted about) that match the query, as an EPCISQueryDocument.
    `remaining`: how many events the query's `eventCountLimit` still allows (None: no limit).
    Subscriptions pass `after_seq` (a watermark on arrival order; answers at most `batch` events in arrival
    order, `last_seq` the new watermark) and `min_record_time` (their initialRecordTime)."""
    conditions: list[query.Condition] = []
    for c in q.conditions:
        if isinstance(c, query.Column) and c.column in ("biz_step", "disposition"):
            c = query.Column(c.column, c.op, tuple(dict.fromkeys(s for s in (expand(v) for v in c.values) if s)))
        elif isinstance(c, query.Ids) and c.values:
            c = query.Ids(
                c.parameter, c.paths, tuple(await _with_batteries(session, list(c.values))), c.patterns, c.column
            )
        conditions.append(c)
    f = Filters(
        conditions=conditions,
        handler_org=access.only_handled_by(principal),
        after=after,
        order_by=q.order_by,
        descending=q.descending and after_seq is None,
        after_seq=after_seq,
        ge_record_time=min_record_time,
    )
    if after_seq is not None:
        rows = await repo.search(session, f, (batch or q.per_page) + 1)
        more = len(rows) > (batch or q.per_page)
        rows = rows[: batch or q.per_page]
        watermark = int(rows[-1]["seq"]) if rows else after_seq
        return Page(await _document(session, rows), None, None, last_seq=watermark, more=more, rows=tuple(rows))
    if remaining is None and q.event_count_limit is not None:
        remaining = q.event_count_limit
    per_page = q.per_page if remaining is None else min(q.per_page, remaining)
    if q.max_event_count is not None and after is None:
        over = await repo.search(session, f, q.max_event_count + 1)
        if len(over) > q.max_event_count:
            raise EpcisException(
                "QueryTooLargeException",
                f"More than maxEventCount={q.max_event_count} events match; narrow the query.",
                status=413,
            )
    rows = await repo.search(session, f, per_page + 1)
    more = len(rows) > per_page
    rows = rows[:per_page]
    left = None if remaining is None else remaining - len(rows)
    document = await _document(session, rows)
    if not more or left == 0:
        return Page(document, None, None)
    last = rows[-1]
    order = last["event_time"] if q.order_by == "event_time" else last["record_time"]
    return Page(document, (order, last["event_id"], last["actor"], last["source"]), left)


#: Events answered for one eventID at most (eventIDs are unique per capturer; a few participants may share one).
EVENT_ID_ANSWERS = 50


async def event(session: AsyncSession, principal: Principal, event_id: str) -> dict[str, Any]:
    """The events with that eventID visible to the principal as in `search` (a ledger-made one and each
    capturer's), in an EPCISQueryDocument."""
    f = Filters(event_ids=[event_id], handler_org=access.only_handled_by(principal))
    rows = await repo.search(session, f, EVENT_ID_ANSWERS)
    if not rows:
        raise EpcisException(
            "NoSuchNameException",
            f"No EPCIS event '{event_id[:200]}' is visible to you.",
            status=404,
            code="unknown-event",
        )
    return await _document(session, rows)


async def distinct(session: AsyncSession, principal: Principal, column: str, limit: int) -> list[str]:
    """The values of one column (EPCs, bizSteps, locations, dispositions) among the events visible to the
    principal, at most `limit`."""
    return await repo.distinct(session, column, access.only_handled_by(principal), limit)


async def _with_batteries(session: AsyncSession, values: list[str]) -> list[str]:
    """Identifiers plus the battery URI each alias stands for."""
    if not values:
        return []
    found = await repo.battery_uris_of_aliases(session, values)
    return sorted(set(values) | {BATTERY + b for b in found.values()})


async def _document(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ledger_ids = sorted({i for r in rows for i in r["ledger_event_ids"]})
    batteries = sorted({b for r in rows if r["source"] == "ledger" for b in r["battery_ids"]})
    declarations = await repo.declarations(session, ledger_ids)
    aliases = await repo.preferred_aliases(session, batteries)
    return query_document([present(r, aliases, declarations) for r in rows], (r["context"] for r in rows))
