"""EPCIS capture: validate a document, map its events onto the lifecycle, apply them with the native rules
(lifecycle.service.capture), store every EPCIS event, and record the capture job. No SQL here."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any, Protocol
from urllib.parse import unquote

import jsonschema_rs
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.epcis import repository as repo
from services.events.epcis.event_hash import event_hashes
from services.events.epcis.mapping import (
    VEHICLE,
    VIN_URN,
    MappingProblem,
    declaration_event,
    digest,
    identifiers,
    location_of,
    map_event,
    parse_time,
    server_owned_fields,
)
from services.events.lifecycle.schemas import EventIn
from services.events.lifecycle.service import (
    BatchProblem,
    CaptureRules,
    EventProblem,
    ParticipantLookup,
    RegistryLookup,
    capture,
)
from services.events.models import SCHEMA
from services.events.vins.service import VinKey
from shared import access
from shared.auth import Principal
from shared.contract.epcis import BT
from shared.contract.lifecycle import ts
from shared.contract.streams import (
    EPCIS_CAPTURED as CAPTURED,
)
from shared.contract.streams import (
    EPCIS_ERROR_DECLARED as DECLARED,
)
from shared.contract.streams import (
    SOURCE_EPCIS as SOURCE,
)
from shared.contract.streams import (
    TOPIC_EPCIS,
    envelope,
)
from shared.outbox import OutboxMessage, enqueue
from shared.problems import EpcisException, Problem, Unprocessable, field_error
from shared.vin import is_pseudonym


class Behaviour(StrEnum):
    rollback = "rollback"
    proceed = "proceed"


class Resolver(Protocol):
    async def resolve_many(self, values: Any) -> dict[str, str | None]: ...


def _load_validator() -> Any:
    schema = json.loads(resources.files("services.events.epcis").joinpath("EPCIS-JSON-Schema.json").read_text())
    return jsonschema_rs.Draft7Validator(schema, validate_formats=True)


_VALIDATOR = _load_validator()


def context_document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("services.events.epcis").joinpath("batterytrace.context.json").read_text()
    )
    return data


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path)


def check_document(document: Any, max_events: int) -> None:
    """A document this service captures: valid against the schema, with at most `max_events` events (413)."""
    validate_document(document)
    if len(document["epcisBody"]["eventList"]) > max_events:
        raise Problem(
            f"At most {max_events} events per document.",
            status=413,
            code="capture-limit",
            title="Capture limit exceeded",
            headers={"GS1-EPCIS-Capture-Limit": str(max_events)},
        )


def validate_document(document: Any) -> None:
    """The official EPCIS 2.0 JSON Schema (draft-07, formats checked). 422 listing each failing path."""
    errors = []
    for err in _VALIDATOR.iter_errors(document):
        errors.append(
            {
                "field": _pointer(err.instance_path) or "/",
                "rule": _pointer(err.schema_path),
                "message": err.message[:500],
            }
        )
        if len(errors) >= 100:
            break
    if not errors and (not isinstance(document, dict) or document.get("type") != "EPCISDocument"):
        errors.append({"field": "/type", "rule": "/properties/type/enum", "message": "must be 'EPCISDocument'"})
    if errors:
        raise EpcisException(
            "ValidationException",
            f"The document does not validate against the EPCIS 2.0 JSON Schema: {errors[0]['field']}: "
            f"{errors[0]['message'][:200]}",
            code="epcis-schema",
            errors=errors,
        )


@dataclass
class _Plan:
    index: int
    event: dict[str, Any]
    event_id: str
    digest: str
    event_hash: str
    lifecycle: list[EventIn] = field(default_factory=list)
    battery_ids: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    store: bool = True  # a new EPCIS event row
    declare: dict[str, Any] | None = None  # errorDeclaration to mark on an existing row
    declared_capturer: str | None = None  # whose captured event `declare` marks


def _error(plan: _Plan, problem: Problem, **extra: Any) -> dict[str, Any]:
    out = {
        "eventIndex": plan.index,
        "eventID": plan.event_id,
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        **extra,
    }
    if problem.errors:
        out["errors"] = problem.errors
    return out


def _prefixes(context: Any) -> dict[str, Any]:
    """The prefix definitions a document's @context makes inline (kept with its events for the query side)."""
    items = context if isinstance(context, list) else [context]
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict):
            out.update({k: v for k, v in item.items() if isinstance(v, str)})
    return out


async def capture_document(
    session: AsyncSession,
    document: dict[str, Any],
    principal: Principal,
    behaviour: Behaviour,
    resolver: Resolver,
    registry: RegistryLookup,
    *,
    rules: CaptureRules,
    receivers: ParticipantLookup | None = None,
) -> dict[str, Any]:
    """Capture a validated EPCISDocument; returns the finished capture job (stored in this transaction).
    `rules`: the app's capture rules, as the native capture applies them (clock skew, plausibility, KC 10031
    bodies, correction window), and the key of VIN pseudonyms (a `bt:vin` is stored and published only as its
    pseudonym);
    `receivers`: the participant directory a transfer's receiver is checked against (None: not checked)."""
    created = datetime.now(UTC)
    capture_id = str(uuid.uuid4())
    record_time = ts(created)
    events: list[dict[str, Any]] = document["epcisBody"]["eventList"]
    plans: list[_Plan] = []
    seen: dict[str, _Plan] = {}
    # The event hash (CBV 2.0) of each event; one carrying a VIN is hashed with the VIN as its pseudonym, like
    # everything else stored of it: a hash over the plain VIN, with the rest of the event known to its readers,
    # could be brute-forced back to the VIN (README "Vehicles, recalls and personal data").
    vin_key = rules.vin_key
    pseudonymised = [_pseudonymise_vin(dict(e), vin_key) for e in events]
    hashes = event_hashes({**document, "epcisBody": {**document["epcisBody"], "eventList": pseudonymised}})
    same_content: dict[str, _Plan] = {}
    for i, ev in enumerate(events):
        # An event without an eventID is named by its event hash (CBV 2.0), so sending it again names it again.
        given = ev.get("eventID")
        eid = given if isinstance(given, str) and given else hashes[i]
        # Digested as stored: with its VIN as the pseudonym (a digest over a plain VIN could be brute-forced).
        plan = _Plan(
            i,
            {**ev, "eventID": eid, "recordTime": record_time},
            eid,
            digest({**pseudonymised[i], "eventID": eid}),
            hashes[i],
        )
        if "errorDeclaration" not in ev:  # a declaration has its original's hash: never a duplicate of it
            first = same_content.setdefault(plan.event_hash, plan)
            if first is not plan and first.event_id != eid:
                plan.store = False  # the same event twice in one document under two eventIDs: once in effect
        twin = seen.get(eid)
        if twin is not None:  # one eventID twice in a document: once in effect, or a conflict
            plan.store = False
            if twin.digest != plan.digest:
                plan.error = _error(
                    plan,
                    Problem(
                        f"eventID {eid} appears twice with different content.", status=409, code="event-id-conflict"
                    ),
                )
        owned = server_owned_fields(ev)
        if owned and plan.error is None:
            plan.error = _error(
                plan,
                Unprocessable(
                    f"{', '.join(owned)}: the server records who captured an event and where it sits in a chain.",
                    code="server-owned-field",
                    errors=[
                        field_error(f"/epcisBody/eventList/{i}/{k}", "server-owned", "set by the server; omit it")
                        for k in owned
                    ],
                ),
            )
        seen.setdefault(eid, plan)
        plans.append(plan)

    batteries = await resolver.resolve_many({v for p in plans for v in identifiers(p.event)})
    captured = await repo.existing(session, list(seen))
    resent = await repo.captured_hashes(session, principal.org, [p.event_hash for p in plans])
    # Only an errorDeclaration can name a native ledger event (by its `urn:uuid:` eventID).
    native_ids = [
        eid[len("urn:uuid:") :]
        for eid, p in seen.items()
        if "errorDeclaration" in p.event and eid.startswith("urn:uuid:")
    ]
    native = await repo.ledger_batteries(session, [i for i in native_ids if _is_uuid(i)])

    for plan in plans:
        if plan.error or not plan.store:
            continue
        if plan.event_hash in resent and "errorDeclaration" not in plan.event:
            plan.store = False  # captured before by this participant (under this or another eventID): a retry
            continue
        try:
            _plan(plan, principal, captured.get(plan.event_id, []), batteries, native)
        except (MappingProblem, EventProblem, Problem) as problem:
            plan.error = _error(plan, problem)

    await _apply(session, plans, principal, behaviour, registry, rules, receivers)
    for p in plans:
        _pseudonymise_vin(p.event, vin_key)
    failed = [p.error for p in plans if p.error]
    stored = [] if failed and behaviour is Behaviour.rollback else [p for p in plans if not p.error]
    await _store(session, stored, capture_id, created, principal, document)
    job = {
        "capture_id": capture_id,
        "actor": principal.org,
        "actor_role": principal.role.value,
        "behaviour": behaviour.value,
        "status": "failure" if failed else "success",
        "created_at": created,
        "finished_at": datetime.now(UTC),
        "event_count": len(events),
        "stored_count": len(stored),
        "errors": failed,
    }
    await repo.insert_capture(session, job)
    return job


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _declared(principal: Principal, eid: str, captured: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The captured event an errorDeclaration by `principal` names: its own under that eventID; another
    participant's only for an authority (and only when one participant captured it). 403 otherwise."""
    own = next((r for r in captured if r["actor"] == principal.org), None)
    others = [r for r in captured if r["actor"] != principal.org]
    if own is not None or not others:
        return own
    if not principal.is_authority:
        raise Problem(
            f"The event {eid} was captured by another participant: only its capturer or an authority may "
            "declare it in error.",
            status=403,
            code="not-capturer",
            title="Not the capturer",
            errors=[field_error("errorDeclaration", "capturer-or-authority", "captured by another participant")],
        )
    if len(others) > 1:
        raise Problem(
            f"Several participants captured an event {eid}; declare it in error as one of them.",
            status=409,
            code="ambiguous-event-id",
        )
    return others[0]


def _plan(
    plan: _Plan,
    principal: Principal,
    captured: list[dict[str, Any]],
    batteries: dict[str, str | None],
    native: dict[str, str],
) -> None:
    ev, eid, org = plan.event, plan.event_id, principal.org
    declaration = ev.get("errorDeclaration")
    if declaration is not None:
        # ErrorDeclaration: the original is named by its eventID; it stays, marked, and the ledger gets a
        # correcting ERROR_DECLARED for each battery event it made.
        location = location_of(ev)
        prior = _declared(principal, eid, captured)
        if prior is not None:
            plan.store, plan.declare, plan.declared_capturer = False, declaration, prior["actor"]
            plan.lifecycle = [
                declaration_event(org, eid, le["battery_id"], le["event_id"], declaration, location)
                for le in prior["ledger_events"]
            ]
            plan.battery_ids = [le["battery_id"] for le in prior["ledger_events"]]
            return
        ledger_id = eid[len("urn:uuid:") :]
        if ledger_id in native:  # an event posted through the native API, as the EPCIS query shows it
            plan.store = False
            plan.lifecycle = [declaration_event(org, eid, native[ledger_id], ledger_id, declaration, location)]
            plan.battery_ids = [native[ledger_id]]
            return
        mapped = map_event(ev, eid, batteries, org)
        if mapped.lifecycle:
            raise MappingProblem(
                f"The event {eid} declared in error was never captured.", status=404, code="unknown-event"
            )
        plan.battery_ids = mapped.battery_ids
        return  # a plain EPCIS event captured with its declaration: stored as it is
    prior = next((r for r in captured if r["actor"] == org), None)  # another's eventID is not a conflict
    if prior is not None:
        if prior["digest"] != plan.digest:
            raise MappingProblem(
                f"eventID {eid} was already captured with different content.", status=409, code="event-id-conflict"
            )
        plan.store = False  # the same event again: harmless
        return
    mapped = map_event(ev, eid, batteries, org)
    plan.lifecycle, plan.battery_ids = mapped.lifecycle, mapped.battery_ids


async def _apply(
    session: AsyncSession,
    plans: list[_Plan],
    principal: Principal,
    behaviour: Behaviour,
    registry: RegistryLookup,
    rules: CaptureRules,
    receivers: ParticipantLookup | None = None,
) -> None:
    """All battery events through the native capture in one call (in event-time order). On failures: with
    rollback, stop (nothing is stored); with proceed, drop the failing EPCIS events and try the rest again."""
    while True:
        if behaviour is Behaviour.rollback and any(p.error for p in plans):
            return
        items = sorted(((p, ev) for p in plans if not p.error for ev in p.lifecycle), key=lambda pe: pe[1].occurred_at)
        if not items:
            return
        try:
            async with session.begin_nested():
                await capture(session, [ev for _, ev in items], principal, registry, rules, receivers=receivers)
            return
        except (EventProblem, BatchProblem) as exc:
            failures = _failures(exc, len(items))
        real = {i: f for i, f in failures.items() if f.get("code") != "depends-on-failed-item"} or failures
        for i, f in sorted(real.items()):
            plan, ev = items[i]
            if plan.error is None:
                detail = {k: v for k, v in f.items() if k not in ("index", "status", "code", "detail")}
                plan.error = {
                    "eventIndex": plan.index,
                    "eventID": plan.event_id,
                    "status": f["status"],
                    "code": f["code"],
                    "detail": f["detail"],
                    "batteryID": ev.battery_id,
                    "lifecycleType": ev.type.value,
                    **detail,
                }


def _pseudonymise_vin(event: dict[str, Any], vin_key: VinKey) -> dict[str, Any]:
    """The EPCIS event as stored, digested and published: a VIN extension (compact or full name) as its
    pseudonym (in place; returns the event)."""
    for name in ("bt:vin", BT + "vin"):
        value = event.get(name)
        if isinstance(value, str) and not is_pseudonym(value):
            event[name] = vin_key.pseudonym(value)
    # An AssociationEvent names the vehicle by its VIN in parentID (mapping.VEHICLE / VIN_URN): stored as the
    # pseudonym under the same prefix, so the VIN stays out of the stored event, its digest and Kafka.
    parent = event.get("parentID")
    if isinstance(parent, str):
        for prefix in (VEHICLE, VIN_URN):
            vin = unquote(parent[len(prefix) :]) if parent.startswith(prefix) else ""
            if vin and not is_pseudonym(vin):
                event["parentID"] = prefix + vin_key.pseudonym(vin)
    return event


def _failures(exc: Problem, n: int) -> dict[int, dict[str, Any]]:
    if isinstance(exc, BatchProblem):
        return {int(e["index"]): dict(e) for e in exc.errors}
    body = {"status": exc.status, "code": exc.code, "detail": exc.detail, **exc.extra}
    if exc.errors:
        body["errors"] = exc.errors
    return {0: body} if n == 1 else {i: body for i in range(n)}


async def _store(
    session: AsyncSession,
    plans: list[_Plan],
    capture_id: str,
    created: datetime,
    principal: Principal,
    document: dict[str, Any],
) -> None:
    context = _prefixes(document.get("@context"))
    rows, messages, declarations = [], [], []
    for p in plans:
        if p.declare is not None and p.declared_capturer is not None:
            declarations.append((p.declared_capturer, p.event_id, p.declare))
            messages.append(
                _message(
                    DECLARED,
                    f"{p.declared_capturer}@{p.event_id}#declared@{p.declare.get('declarationTime')}",
                    p.event_id,
                    {
                        "event_id": p.event_id,
                        "actor": p.declared_capturer,
                        "declared_by": principal.org,
                        "error_declaration": p.declare,
                    },
                )
            )
        if not p.store:
            continue
        ledger = [{"event_id": e.event_id, "battery_id": e.battery_id} for e in p.lifecycle]
        rows.append(
            {
                "event_id": p.event_id,
                "capture_id": capture_id,
                "type": p.event.get("type", ""),
                "event_time": parse_time(p.event["eventTime"]),
                "record_time": created,
                "actor": principal.org,
                "digest": p.digest,
                "event_hash": p.event_hash,
                "battery_ids": sorted(set(p.battery_ids)),
                "ledger_events": ledger,
                "error_declaration": p.event.get("errorDeclaration"),
                "body": p.event,
            }
        )
        messages.append(
            _message(
                CAPTURED,
                f"{principal.org}@{p.event_id}#captured",
                p.event_id,
                {
                    "event_id": p.event_id,
                    "capture_id": capture_id,
                    "record_time": p.event["recordTime"],
                    "actor": principal.org,
                    "actor_role": principal.role.value,
                    "battery_ids": sorted(set(p.battery_ids)),
                    "ledger_event_ids": [le["event_id"] for le in ledger],
                    "context": context,
                    "event": p.event,
                },
            )
        )
    await repo.insert_events(session, rows)
    await repo.declare(session, declarations)
    await enqueue(session, SCHEMA, messages)


def _message(ctype: str, id_seed: str, key: str, data: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        topic=TOPIC_EPCIS,
        key=key,
        payload=envelope(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, id_seed)), source=SOURCE, type=ctype, subject=key, data=data
        ),
    )


async def capture_job(session: AsyncSession, capture_id: str, principal: Principal) -> dict[str, Any]:
    """A capture job as its poster (or a ministry, operator or admin) may see it; 404 if unknown or not theirs."""
    job = await repo.get_capture(session, capture_id) if _is_uuid(capture_id) else None
    if job is None or not access.may_read_capture_job(principal, job["actor"]):
        raise EpcisException(
            "NoSuchNameException",
            f"No capture job '{capture_id[:80]}' is visible to you.",
            status=404,
            code="unknown-capture",
        )
    return job


async def capture_jobs(session: AsyncSession, principal: Principal, limit: int) -> list[dict[str, Any]]:
    """The latest capture jobs the principal may see (its own; every one for those who see every job)."""
    every = principal.role in access.SEES_EVERY_CAPTURE_JOB
    return await repo.list_captures(session, None if every else principal.org, limit)
