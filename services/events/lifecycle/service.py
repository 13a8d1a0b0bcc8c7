"""The lifecycle rules: state machine, custody, ordering, idempotency, hash chain. No SQL here."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle import repository as repo
from services.events.lifecycle.rules import ASSEMBLY_PAIRS, Custody, allowed_events, rule_for
from services.events.lifecycle.schemas import DATA_ADAPTERS, EventIn
from shared.auth import Principal
from shared.contract.lifecycle import GENESIS, EventType, State, canonical_json, event_hash, ts
from shared.contract.streams import SOURCE_EVENTS, TOPIC_LIFECYCLE, envelope, lifecycle_type, manufactured_event_id
from shared.problems import Problem, field_error, validation_errors


class RegistryLookup(Protocol):
    async def battery(self, battery_id: str) -> dict[str, Any] | None: ...


class EventProblem(Problem):
    """One event's failure (status and code as the single-event API would answer)."""


class BatchProblem(Problem):
    code, title = "batch-rejected", "Batch rejected"


@dataclass
class Accepted:
    event_id: str
    battery_id: str
    sequence: int
    hash: str
    state: str
    custodian: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "battery_id": self.battery_id,
            "sequence": self.sequence,
            "hash": self.hash,
            "state": self.state,
            "custodian": self.custodian,
        }


def _illegal(state: dict[str, Any], etype: EventType, why: str) -> EventProblem:
    current = State(state["state"])
    allowed = [e.value for e in allowed_events(current, state.get("grade"))]
    return EventProblem(
        f"{etype.value} is not allowed for battery {state['battery_id']} in state '{current.value}'{why}. "
        f"Allowed next events: {', '.join(allowed) or 'none (final state)'}.",
        status=409,
        code="illegal-transition",
        title="Illegal transition",
        current_state=current.value,
        allowed_events=allowed,
    )


def genesis_from_registry(battery: dict[str, Any], recorded_at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state row and the MANUFACTURED ledger row for a registered battery."""
    bid = battery["id"]
    manufactured_at = battery["manufactured_at"]
    if isinstance(manufactured_at, str):
        manufactured_at = datetime.fromisoformat(manufactured_at)
    row: dict[str, Any] = {
        "event_id": manufactured_event_id(bid),
        "battery_id": bid,
        "sequence": 1,
        "type": EventType.MANUFACTURED.value,
        "occurred_at": manufactured_at,
        "recorded_at": recorded_at,
        "actor": battery["manufacturer"],
        "actor_role": "manufacturer",
        "location": {"site": battery.get("manufacturing_site")},
        "data": {"model_id": battery["model_id"], "kind": battery["kind"]},
        "state_after": State.manufactured.value,
        "custodian_after": battery["manufacturer"],
        "prev_hash": GENESIS,
    }
    row["hash"] = event_hash(GENESIS, row)
    row["request_digest"] = row["hash"]
    state = {
        "battery_id": bid,
        "kind": battery["kind"],
        "model_id": battery["model_id"],
        "manufacturer": battery["manufacturer"],
        "state": State.manufactured.value,
        "custodian": battery["manufacturer"],
        "sequence": 1,
        "last_hash": row["hash"],
        "last_event_at": manufactured_at,
        "grade": None,
        "safety_inspection": None,
        "parent_id": None,
    }
    return state, row


def lifecycle_message(row: dict[str, Any], state: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    data = {
        **row,
        "occurred_at": ts(row["occurred_at"]),
        "recorded_at": ts(row["recorded_at"]),
        "kind": state["kind"],
        "manufacturer": state["manufacturer"],
    }
    data.pop("request_digest", None)
    return (
        TOPIC_LIFECYCLE,
        row["battery_id"],
        envelope(
            id=row["event_id"],
            source=SOURCE_EVENTS,
            type=lifecycle_type(row["type"]),
            subject=row["battery_id"],
            data=data,
        ),
    )


async def start_ledgers(session: AsyncSession, batteries: Sequence[dict[str, Any]]) -> int:
    """Begin the ledgers of registered batteries (idempotent: existing ones are left alone)."""
    now = datetime.now(UTC)
    unique = {b["id"]: b for b in batteries}  # a redelivered registration may repeat in one batch
    pairs = [genesis_from_registry(b, now) for b in unique.values()]
    inserted = await repo.insert_genesis(session, [s for s, _ in pairs])
    fresh = [(s, r) for s, r in pairs if s["battery_id"] in inserted]
    if fresh:
        await repo.write(
            session,
            [r for _, r in fresh],
            [],
            [lifecycle_message(r, s) for s, r in fresh],
            update_states=False,
        )
    return len(fresh)


async def current_state(session: AsyncSession, battery_id: str, registry: RegistryLookup) -> dict[str, Any] | None:
    """The battery's state, starting its ledger from the registry if its registration is still in flight."""
    state = await repo.get_state(session, battery_id)
    if state is None:
        battery = await registry.battery(battery_id)
        if battery is not None:
            await start_ledgers(session, [battery])
            state = await repo.get_state(session, battery_id)
    return state


@dataclass
class _Item:
    index: int
    event: EventIn
    data: dict[str, Any] = field(default_factory=dict)
    digest: str = ""


def request_digest(fields: dict[str, Any]) -> str:
    """Digest of what a client sent (for idempotent retries by event ID)."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def _digest(ev: EventIn, data: dict[str, Any], principal: Principal) -> str:
    return request_digest(
        {
            "battery_id": ev.battery_id,
            "type": ev.type.value,
            "occurred_at": ts(ev.occurred_at),
            "location": ev.location.model_dump(mode="json"),
            "data": data,
            "actor": principal.org,
        }
    )


async def capture(
    session: AsyncSession,
    events: Sequence[EventIn],
    principal: Principal,
    registry: RegistryLookup,
) -> list[Accepted]:
    """Apply events in order, all or nothing. Raises EventProblem (one event) or BatchProblem."""
    batch = len(events) > 1
    items: list[_Item] = []
    failures: dict[int, Problem] = {}

    # 1. Per-type data, and the poster's role.
    for i, ev in enumerate(events):
        item = _Item(i, ev)
        items.append(item)
        if ev.type is EventType.MANUFACTURED:
            failures[i] = EventProblem(
                "MANUFACTURED is recorded when the battery is registered at the registry.",
                status=422,
                code="validation-error",
                title="Invalid request",
                errors=[field_error("type", "postable", "MANUFACTURED cannot be posted")],
            )
            continue
        try:
            item.data = DATA_ADAPTERS[ev.type].validate_python(ev.data).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            errs = validation_errors(exc.errors(), prefix=("data",))
            failures[i] = EventProblem(
                f"{errs[0]['field']}: {errs[0]['message']} (for {ev.type.value})",
                status=422,
                code="validation-error",
                title="Invalid request",
                errors=errs,
            )
            continue
        rule = rule_for(ev.type)
        if principal.role not in rule.roles:
            failures[i] = EventProblem(
                f"Role '{principal.role.value}' may not post {ev.type.value}; allowed roles: "
                f"{', '.join(sorted(r.value for r in rule.roles))}.",
                status=403,
                code="forbidden",
                title="Not allowed",
            )
            continue
        item.digest = _digest(ev, item.data, principal)
    _raise_if(failures, batch)

    # 2. Lock every battery involved (and assembly parents), starting ledgers the registry knows about.
    ids = {it.event.battery_id for it in items}
    ids |= {it.data["parent_id"] for it in items if "parent_id" in it.data}
    states = await repo.lock_states(session, sorted(ids))
    missing = ids - states.keys()
    if missing:
        found = [b for b in [await registry.battery(bid) for bid in sorted(missing)] if b is not None]
        if found:
            await start_ledgers(session, found)
            states = await repo.lock_states(session, sorted(ids))

    # 3. Retries: the same event ID again (after the locks, so a concurrent twin has committed by now).
    existing = await repo.find_events(session, [it.event.event_id for it in items])
    results: dict[int, Accepted] = {}
    seen_in_batch: dict[str, _Item] = {}
    for it in items:
        prior = existing.get(it.event.event_id)
        if prior is not None:
            if prior["request_digest"] != it.digest:
                failures[it.index] = _conflict(it.event.event_id)
            else:
                results[it.index] = Accepted(
                    it.event.event_id,
                    prior["battery_id"],
                    prior["sequence"],
                    prior["hash"],
                    prior["state_after"],
                    prior["custodian_after"],
                )
            continue
        twin = seen_in_batch.get(it.event.event_id)
        if twin is not None and twin.digest != it.digest:
            failures[it.index] = _conflict(it.event.event_id)
        seen_in_batch.setdefault(it.event.event_id, it)

    # Events declared in error (ERROR_DECLARED): the ledger's, and (below) those applied earlier in this batch.
    declared_ids = [it.data["declared_event_id"] for it in items if it.event.type is EventType.ERROR_DECLARED]
    known = await repo.find_events(session, declared_ids) if declared_ids else {}

    # 4. The state machine, in order, on working copies of the states.
    now = datetime.now(UTC)
    work = {bid: dict(s) for bid, s in states.items()}
    ledger_rows: list[dict[str, Any]] = []
    messages: list[tuple[str, str, dict[str, Any]]] = []
    applied: dict[str, Accepted] = {}
    failed_batteries: set[str] = set()
    for it in items:
        if it.index in results or it.index in failures:
            continue
        ev = it.event
        if ev.event_id in applied:  # the same event twice in one batch: once in effect
            results[it.index] = applied[ev.event_id]
            continue
        if ev.battery_id in failed_batteries:
            failures[it.index] = EventProblem(
                f"Not applied: an earlier event for battery {ev.battery_id} in this batch failed.",
                status=409,
                code="depends-on-failed-item",
                title="Not applied",
            )
            continue
        try:
            row, new_state = _apply(it, work, principal, now, known)
        except EventProblem as problem:
            failures[it.index] = problem
            failed_batteries.add(ev.battery_id)
            continue
        work[ev.battery_id] = new_state
        ledger_rows.append(row)
        known.setdefault(ev.event_id, row)
        messages.append(lifecycle_message(row, new_state))
        acc = Accepted(
            ev.event_id, ev.battery_id, row["sequence"], row["hash"], row["state_after"], row["custodian_after"]
        )
        applied[ev.event_id] = acc
        results[it.index] = acc
    _raise_if(failures, batch)

    if ledger_rows:
        changed = {r["battery_id"] for r in ledger_rows}
        await repo.write(session, ledger_rows, [work[b] for b in sorted(changed)], messages)
    return [results[i] for i in range(len(items))]


def _conflict(event_id: str) -> EventProblem:
    return EventProblem(
        f"Event ID {event_id} was already used for different content.",
        status=409,
        code="event-id-conflict",
        title="Event ID conflict",
        errors=[field_error("event_id", "unique-content", "already used for different content")],
    )


def _raise_if(failures: dict[int, Problem], batch: bool) -> None:
    if not failures:
        return
    if not batch:
        raise next(iter(failures.values()))
    ordered = sorted(failures.items())
    first_index, first = ordered[0]
    status = first.status if all(p.status == first.status for _, p in ordered) else 422
    if status == 403:
        status = 403
    raise BatchProblem(
        f"{len(ordered)} of the batch's events failed; nothing was stored. First (index {first_index}): {first.detail}",
        status=status,
        errors=[
            {
                "index": i,
                "status": p.status,
                "code": p.code,
                "detail": p.detail,
                **({"errors": p.errors} if p.errors else {}),
                **p.extra,
            }
            for i, p in ordered
        ],
    )


def _apply(
    it: _Item,
    work: dict[str, dict[str, Any]],
    principal: Principal,
    now: datetime,
    known: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ev = it.event
    state = work.get(ev.battery_id)
    if state is None:
        raise EventProblem(
            f"No battery '{ev.battery_id}' is registered.", status=404, code="unknown-battery", title="Not found"
        )
    if ev.expected_sequence is not None and ev.expected_sequence != state["sequence"]:
        raise EventProblem(
            f"expected_sequence {ev.expected_sequence} but battery {ev.battery_id} is at {state['sequence']}.",
            status=409,
            code="sequence-conflict",
            title="Sequence conflict",
            current_sequence=state["sequence"],
        )
    current = State(state["state"])
    rule = rule_for(ev.type)
    if ev.type is EventType.ERROR_DECLARED:
        _check_declaration(it, (known or {}).get(it.data["declared_event_id"]), principal)
    if current not in rule.sources:
        raise _illegal(state, ev.type, "")
    if rule.grade is not None and current is State.graded and state.get("grade") != rule.grade.value:
        raise _illegal(state, ev.type, f" (graded '{state.get('grade')}', not '{rule.grade.value}')")
    if ev.type is EventType.INSTALLED and current is State.repurposed:
        si = state.get("safety_inspection") or {}
        if si.get("result") != "pass":
            raise _illegal(state, ev.type, " (a repurposed battery needs a passing SAFETY_INSPECTED first)")
    if ev.occurred_at < state["last_event_at"]:
        raise EventProblem(
            f"occurred_at {ev.occurred_at.isoformat()} precedes the battery's last event "
            f"({state['last_event_at'].isoformat()}).",
            status=422,
            code="validation-error",
            title="Invalid request",
            errors=[field_error("occurred_at", "not-before-last-event", "precedes the battery's last event")],
        )

    new = dict(state)
    custodian = state["custodian"]
    if rule.custody is Custody.custodian and custodian != principal.org:
        raise _not_custodian(ev, custodian)
    if rule.custody is Custody.receiver:
        if custodian != principal.org:
            raise _not_custodian(ev, custodian)
        if it.data["to"] == custodian:
            raise EventProblem(
                "data.to is already the custodian.",
                status=422,
                code="validation-error",
                title="Invalid request",
                errors=[field_error("data.to", "other-than-custodian", "already the custodian")],
            )
        custodian = it.data["to"]
    if rule.custody is Custody.becomes:
        custodian = principal.org
    if rule.custody is Custody.parent:
        parent_id = it.data["parent_id"]
        parent = work.get(parent_id)
        if parent is None:
            raise EventProblem(
                f"No parent battery '{parent_id}' is registered.",
                status=404,
                code="unknown-battery",
                title="Not found",
                errors=[field_error("data.parent_id", "known-battery", "not registered")],
            )
        if parent["custodian"] != principal.org:
            raise EventProblem(
                f"{ev.type.value} needs custody of the parent {parent_id}; its custodian is {parent['custodian']}.",
                status=409,
                code="not-custodian",
                title="Not the custodian",
                custodian=parent["custodian"],
            )
        if ev.type is EventType.ASSEMBLED:
            if parent_id == ev.battery_id or (state["kind"], parent["kind"]) not in ASSEMBLY_PAIRS:
                raise EventProblem(
                    f"A {state['kind']} cannot be assembled into a {parent['kind']} "
                    "(allowed: cell→module, module→pack, cell→pack).",
                    status=422,
                    code="validation-error",
                    title="Invalid request",
                    errors=[field_error("data.parent_id", "assembly-pairing", "kind pairing not allowed")],
                )
            if State(parent["state"]) in {State.recycled, State.disposed}:
                raise _illegal(parent, ev.type, " (the parent is in a final state)")
            new["parent_id"] = parent_id
        else:
            if state.get("parent_id") != parent_id:
                raise EventProblem(
                    f"{ev.battery_id} is not a current component of {parent_id}.",
                    status=409,
                    code="not-a-component",
                    title="Not a component",
                    errors=[field_error("data.parent_id", "current-parent", "not the battery's current parent")],
                )
            new["parent_id"] = None
        custodian = principal.org

    if rule.target is not None:
        new["state"] = rule.target.value
    if ev.type is EventType.GRADED:
        new["grade"] = it.data["grade"]
    if ev.type in (EventType.REMANUFACTURED, EventType.REPURPOSED):
        new["safety_inspection"] = None  # a new passport: its safety inspection starts afresh
    if ev.type is EventType.SAFETY_INSPECTED:
        new["safety_inspection"] = {**it.data, "at": ts(ev.occurred_at), "event_id": ev.event_id}
    new["custodian"] = custodian
    new["sequence"] = state["sequence"] + 1
    new["last_event_at"] = ev.occurred_at

    row: dict[str, Any] = {
        "event_id": ev.event_id,
        "battery_id": ev.battery_id,
        "sequence": new["sequence"],
        "type": ev.type.value,
        "occurred_at": ev.occurred_at,
        "recorded_at": now,
        "actor": principal.org,
        "actor_role": principal.role.value,
        "location": ev.location.model_dump(mode="json", exclude_none=True),
        "data": it.data,
        "state_after": new["state"],
        "custodian_after": custodian,
        "prev_hash": state["last_hash"],
        "request_digest": it.digest,
    }
    row["hash"] = event_hash(state["last_hash"], row)
    new["last_hash"] = row["hash"]
    return row, new


def _check_declaration(it: _Item, declared: dict[str, Any] | None, principal: Principal) -> None:
    """The declared event exists, belongs to this battery, is not itself a declaration, and the poster is its
    actor or an authority."""
    declared_id = it.data["declared_event_id"]
    field = "data.declared_event_id"
    if declared is None:
        raise EventProblem(
            f"No event {declared_id} is in the ledger.",
            status=404,
            code="unknown-event",
            title="Not found",
            errors=[field_error(field, "known-event", "not in the ledger")],
        )
    if declared["battery_id"] != it.event.battery_id:
        raise EventProblem(
            f"Event {declared_id} belongs to battery {declared['battery_id']}, not {it.event.battery_id}.",
            status=422,
            code="validation-error",
            title="Invalid request",
            errors=[field_error(field, "same-battery", "belongs to another battery")],
        )
    if declared["type"] == EventType.ERROR_DECLARED.value:
        raise EventProblem(
            "An error declaration cannot itself be declared in error; declare the original event again.",
            status=422,
            code="validation-error",
            title="Invalid request",
            errors=[field_error(field, "not-a-declaration", "is an error declaration")],
        )
    if declared["actor"] != principal.org and not principal.is_authority:
        raise EventProblem(
            f"Only the event's actor ({declared['actor']}) or an authority may declare it in error.",
            status=403,
            code="forbidden",
            title="Not allowed",
        )


def _not_custodian(ev: EventIn, custodian: str) -> EventProblem:
    return EventProblem(
        f"{ev.type.value} needs custody of {ev.battery_id}; its custodian is {custodian}.",
        status=409,
        code="not-custodian",
        title="Not the custodian",
        custodian=custodian,
    )


def new_event_id() -> str:
    return str(uuid.uuid4())
