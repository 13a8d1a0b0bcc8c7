"""Capturing lifecycle events: validate, lock, apply each event through the state machine (`machine`), store
and publish. The rules themselves live in `machine` and `rules`; the queries in `repository`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.lifecycle import machine
from services.events.lifecycle import repository as repo
from services.events.lifecycle.machine import (
    BatteryState,
    DeclaredEvent,
    Event,
    LedgerRow,
    Poster,
    Receiver,
    Refusal,
    Transition,
)
from services.events.lifecycle.plausibility import Facts, Tolerances
from services.events.lifecycle.rules import DESIGNATED_BODIES
from services.events.lifecycle.schemas import DATA_ADAPTERS, EventIn, EventResult
from services.events.recalls import service as recalls
from services.events.settings import EventsSettings
from services.events.vins import service as vins
from services.events.vins.service import VinKey
from shared.auth import Principal, Role
from shared.contract.lifecycle import EventType, canonical_json, ts
from shared.contract.streams import SOURCE_EVENTS, TOPIC_LIFECYCLE, envelope, lifecycle_type
from shared.db import pooled
from shared.participants import ParticipantFacts
from shared.problems import Problem, Unavailable, validation_errors


class RegistryLookup(Protocol):
    async def battery(self, battery_id: str) -> dict[str, Any] | None: ...


class ParticipantLookup(Protocol):
    async def get(self, org: str) -> ParticipantFacts | None: ...


@dataclass(frozen=True, slots=True)
class CaptureRules:
    """What a capture decides by besides the events: the key of VIN pseudonyms, how far ahead of the server's clock
    an `occurred_at` may be, the plausibility margins, the KC 10031 inspection bodies, and how long the poster of a
    final-state event may declare it in error itself. Made once per app from the events settings (`from_settings`);
    the defaults are the rules' own."""

    vin_key: VinKey
    max_ahead: timedelta = machine.MAX_AHEAD
    tolerances: Tolerances = field(default_factory=Tolerances)
    designated_bodies: Sequence[str] = DESIGNATED_BODIES
    correction_window: timedelta = machine.CORRECTION_WINDOW

    @classmethod
    def from_settings(cls, settings: EventsSettings, vin_key: VinKey) -> CaptureRules:
        return cls(
            vin_key,
            max_ahead=timedelta(seconds=settings.occurred_at_max_ahead_s),
            tolerances=settings.plausibility_tolerances(),
            designated_bodies=tuple(settings.kc_designated_bodies),
            correction_window=timedelta(days=settings.correction_window_days),
        )


class EventProblem(Problem):
    """One event's failure (status and code as the single-event API would answer)."""


class BatchProblem(Problem):
    code, title = "batch-rejected", "Batch rejected"


def _genesis(battery: Mapping[str, Any], recorded_at: datetime) -> Transition:
    manufactured_at = battery["manufactured_at"]
    if isinstance(manufactured_at, str):
        manufactured_at = datetime.fromisoformat(manufactured_at)
    return machine.genesis(
        battery_id=battery["id"],
        kind=battery["kind"],
        model_id=battery["model_id"],
        manufacturer=battery["manufacturer"],
        manufactured_at=manufactured_at,
        site=battery.get("manufacturing_site"),
        recorded_at=recorded_at,
        facts=Facts.from_registry(battery),
    )


def genesis_from_registry(battery: Mapping[str, Any], recorded_at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state row and the MANUFACTURED ledger row for a registered battery."""
    first = _genesis(battery, recorded_at)
    return first.state.as_row(), first.row.as_row()


def lifecycle_message(row: dict[str, Any], kind: str, manufacturer: str) -> tuple[str, str, dict[str, Any]]:
    """The stream's record of a ledger row (`row`: the row as stored) of a battery of this kind and maker."""
    data = {
        **row,
        "occurred_at": ts(row["occurred_at"]),
        "recorded_at": ts(row["recorded_at"]),
        "kind": kind,
        "manufacturer": manufacturer,
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
    firsts = [_genesis(b, now) for b in unique.values()]
    inserted = await repo.insert_genesis(session, [t.state.as_row() for t in firsts])
    fresh = [t for t in firsts if t.state.battery_id in inserted]
    # The stream's registration (its model nested) is the whole record: it completes facts a read-through began.
    complete = {t.state.battery_id: t.state.facts.as_json() for t in firsts if t.state.facts.complete}
    await repo.fill_facts(session, {bid: f for bid, f in complete.items() if bid not in inserted})
    if fresh:
        rows = [t.row.as_row() for t in fresh]
        await repo.write(
            session,
            rows,
            [],
            [lifecycle_message(r, t.state.kind, t.state.manufacturer) for r, t in zip(rows, fresh, strict=True)],
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


def _digest(ev: EventIn, data: Mapping[str, Any], actor: str) -> str:
    """Digest of what a client sent (for idempotent retries by event ID)."""
    sent = {
        "battery_id": ev.battery_id,
        "type": ev.type.value,
        "occurred_at": ts(ev.occurred_at),
        "location": ev.location.model_dump(mode="json"),
        "data": data,
        "actor": actor,
    }
    return hashlib.sha256(canonical_json(sent)).hexdigest()


def _prepare(ev: EventIn, poster: Poster, vin_key: VinKey, plain_vins: dict[str, str]) -> Event | Refusal:
    """The event with its type's data validated, if the type is postable and the poster's role may post it.
    A VIN is replaced by its keyed pseudonym before anything is digested or stored (its plain form goes to
    `plain_vins`, pseudonym → VIN, for the erasable table)."""
    refusal = machine.postable(ev.type)
    if refusal is not None:
        return refusal
    try:
        data = DATA_ADAPTERS[ev.type].validate_python(ev.data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        errs = validation_errors(exc.errors(), prefix=("data",))
        return machine.invalid(f"{errs[0]['field']}: {errs[0]['message']} (for {ev.type.value})", *errs)
    if ev.type is EventType.INSTALLED and "vin" in data:
        plain = data["vin"]
        data["vin"] = vin_key.pseudonym(plain)
        plain_vins[data["vin"]] = plain
    refusal = machine.authorize(ev.type, poster, data)
    if refusal is not None:
        return refusal
    return Event(
        type=ev.type,
        event_id=ev.event_id,
        battery_id=ev.battery_id,
        occurred_at=ev.occurred_at,
        location=ev.location.model_dump(mode="json", exclude_none=True),
        data=data,
        expected_sequence=ev.expected_sequence,
        request_digest=_digest(ev, data, poster.org),
    )


async def capture(
    session: AsyncSession,
    events: Sequence[EventIn],
    principal: Principal,
    registry: RegistryLookup,
    rules: CaptureRules,
    *,
    receivers: ParticipantLookup | None = None,
) -> list[EventResult]:
    """Apply events in order, all or nothing, by `rules`. Raises EventProblem (one event) or BatchProblem.
    `receivers`: the participant directory TRANSFERRED's receivers are checked against (None: not checked)."""
    batch = len(events) > 1
    poster = Poster(principal.org, principal.role, principal.is_authority)
    failures: dict[int, Refusal] = {}
    plain_vins: dict[str, str] = {}

    # 1. Per-type data, and the poster's role.
    prepared: list[Event] = []
    for i, posted in enumerate(events):
        outcome = _prepare(posted, poster, rules.vin_key, plain_vins)
        if isinstance(outcome, Refusal):
            failures[i] = outcome
        else:
            prepared.append(outcome)
    _raise_if(failures, batch)

    # 2. Hold the poster's event IDs (one poster's concurrent posts of one ID on two batteries: the second waits
    # and then finds the first), then lock every battery involved (and assembly parents), starting ledgers the registry knows about.
    await repo.lock_event_ids(session, poster.org, sorted({ev.event_id for ev in prepared}))
    ids = {ev.battery_id for ev in prepared}
    ids |= {ev.data["parent_id"] for ev in prepared if "parent_id" in ev.data}
    states = await repo.lock_states(session, sorted(ids))
    missing = ids - states.keys()
    if missing:
        found = [b for b in [await registry.battery(bid) for bid in sorted(missing)] if b is not None]
        if found:
            await start_ledgers(session, found)
            states = await repo.lock_states(session, sorted(ids))

    # 3. Retries: the same event ID again from the same poster (after the locks, so a concurrent twin has
    # committed by now). Event IDs are the poster's own: another participant's use of one is no concern here.
    existing = await repo.find_events(session, poster.org, [ev.event_id for ev in prepared])
    results: dict[int, EventResult] = {}
    seen_in_batch: dict[str, Event] = {}
    for i, ev in enumerate(prepared):
        prior = existing.get(ev.event_id)
        if prior is not None:
            if prior["request_digest"] != ev.request_digest:
                failures[i] = machine.id_conflict(ev.event_id)
            else:
                results[i] = EventResult.of(prior)
            continue
        twin = seen_in_batch.get(ev.event_id)
        if twin is not None and twin.request_digest != ev.request_digest:
            failures[i] = machine.id_conflict(ev.event_id)
        seen_in_batch.setdefault(ev.event_id, ev)

    # Events declared in error (ERROR_DECLARED): the ledger's, and (below) those applied earlier in this batch.
    declarations = [ev for ev in prepared if ev.type is EventType.ERROR_DECLARED]
    found_declared = (
        await repo.find_declarable(
            session,
            sorted({ev.data["declared_event_id"] for ev in declarations}),
            sorted({ev.battery_id for ev in declarations}),
            poster.org,
        )
        if declarations
        else []
    )
    known = [DeclaredEvent.from_row(row) for row in found_declared]
    # What a declaration corrects: the battery's ledger (its state is locked, so it is whole) and the assembly
    # parents its events name, for the state fold (machine.correct).
    corrected_ledgers: dict[str, list[dict[str, Any]]] = {}
    parents: dict[str, BatteryState] = {}
    if declarations:  # (the hot path without any declaration makes neither query)
        corrected_ledgers = await repo.ledgers(session, sorted({ev.battery_id for ev in declarations}))
        parent_ids = {
            r["data"]["parent_id"]
            for rows_ in corrected_ledgers.values()
            for r in rows_
            if r["type"] in (EventType.ASSEMBLED.value, EventType.DISASSEMBLED.value)
        }
        if parent_ids:
            found_parents = await repo.get_states(session, sorted(parent_ids))
            parents = {b: BatteryState.from_row(s) for b, s in found_parents.items()}

    # Who TRANSFERRED hands batteries to, as the participant directory knows them.
    found_receivers: dict[str, Receiver] = {}
    if receivers is not None:
        for org in sorted({ev.data["to"] for ev in prepared if ev.type is EventType.TRANSFERRED}):
            facts = await receivers.get(org)
            found_receivers[org] = Receiver(org, Role(facts.role) if facts else None, facts.active if facts else False)

    # Recall removals: a named campaign is known and covers the battery; where one covers it, it is named.
    removals = [(i, ev) for i, ev in enumerate(prepared) if recalls.is_recall_removal(ev) and i not in results]
    failures.update(
        await recalls.refusals(session, removals, states, recalls.batch_vins(prepared, removals, plain_vins))
    )
    _raise_if(failures, batch)

    # 4. The state machine, in order, on the batch's working states.
    now = datetime.now(UTC)
    work = {bid: BatteryState.from_row(s) for bid, s in states.items()}
    rows: list[LedgerRow] = []
    stored: list[dict[str, Any]] = []  # the rows as stored and published (each converted once)
    messages: list[tuple[str, str, dict[str, Any]]] = []
    applied: dict[str, EventResult] = {}
    failed_batteries: set[str] = set()
    for i, ev in enumerate(prepared):
        if i in results or i in failures:
            continue
        if ev.event_id in applied:  # the same event twice in one batch: once in effect
            results[i] = applied[ev.event_id]
            continue
        if ev.battery_id in failed_batteries:
            failures[i] = machine.depends_on_failed(ev.battery_id)
            continue
        declared = machine.resolve_declared(ev, poster, known) if ev.type is EventType.ERROR_DECLARED else None
        step = (
            declared
            if isinstance(declared, Refusal)
            else machine.apply(
                work.get(ev.battery_id),
                poster,
                ev,
                recorded_at=now,
                parent=work.get(ev.data["parent_id"]) if "parent_id" in ev.data else None,
                declared=declared,
                max_ahead=rules.max_ahead,
                receiver=found_receivers.get(ev.data["to"]) if ev.type is EventType.TRANSFERRED else None,
                tolerances=rules.tolerances,
                designated_bodies=rules.designated_bodies,
                corrections=_corrections(ev, corrected_ledgers, rows, work, parents, rules.correction_window),
            )
        )
        if isinstance(step, Refusal):
            failures[i] = step
            failed_batteries.add(ev.battery_id)
            continue
        new, row = step.state, step.row
        work[ev.battery_id] = new
        rows.append(row)
        stored.append(row.as_row())
        known.append(DeclaredEvent(row.event_id, row.battery_id, row.type, row.actor))
        messages.append(lifecycle_message(stored[-1], new.kind, new.manufacturer))
        acc = EventResult.of(stored[-1])
        applied[ev.event_id] = acc
        results[i] = acc
    _raise_if(failures, batch)

    if rows:
        changed = sorted({r.battery_id for r in rows})
        await repo.write(session, stored, [work[b].as_row() for b in changed], messages)
        installed = {r.data["vin"] for r in rows if r.type is EventType.INSTALLED and "vin" in r.data}
        await vins.record(session, {p: v for p, v in plain_vins.items() if p in installed})
    return [results[i] for i in range(len(prepared))]


#: Optimistic attempts of a single event before it takes the locking path (`capture`).
OPTIMISTIC_ATTEMPTS = 3
#: What an optimistic attempt may lose to a concurrent writer: nothing is written, it is tried again.
_LOST_RACE = (
    asyncpg.UniqueViolationError,  # the poster's twin with the same event ID committed first
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def _optimistic(ev: Event, plain_vins: Mapping[str, str]) -> bool:
    """Whether one event needs nothing but its battery's state (and the poster's events by ID) to be decided, and
    writes nothing but its ledger row, state and message: what `capture_one` captures without a transaction."""
    return not (
        ev.type is EventType.ERROR_DECLARED or "parent_id" in ev.data or recalls.is_recall_removal(ev) or plain_vins
    )


async def capture_one(
    pool: asyncpg.Pool,
    sessionmaker: async_sessionmaker[AsyncSession],
    event: EventIn,
    principal: Principal,
    registry: RegistryLookup,
    rules: CaptureRules,
    *,
    receivers: ParticipantLookup | None = None,
) -> EventResult:
    """One event, as `capture` records it, in two statements on the statement pool where it can: read the battery's
    state and the poster's event with this ID (one snapshot), decide, then write the ledger row, state and message
    in one statement that writes only if the state row is still the version read (else nothing, and it is tried
    again). Anything else (a battery not started yet, a declaration, an assembly, a recall removal, an installation
    with a VIN, a race lost `OPTIMISTIC_ATTEMPTS` times) takes `capture`'s locking transaction."""
    poster = Poster(principal.org, principal.role, principal.is_authority)
    plain_vins: dict[str, str] = {}
    ev = _prepare(event, poster, rules.vin_key, plain_vins)
    if isinstance(ev, Refusal):
        _raise_if({0: ev}, False)
    assert isinstance(ev, Event)
    if _optimistic(ev, plain_vins):
        receiver = None
        if receivers is not None and ev.type is EventType.TRANSFERRED:
            facts = await receivers.get(ev.data["to"])
            receiver = Receiver(ev.data["to"], Role(facts.role) if facts else None, facts.active if facts else False)
        for _ in range(OPTIMISTIC_ATTEMPTS):
            async with pooled(pool) as conn:
                found, version, prior = await repo.read_one(conn, ev.battery_id, poster.org, ev.event_id)
                if prior is not None:
                    if prior["request_digest"] != ev.request_digest:
                        _raise_if({0: machine.id_conflict(ev.event_id)}, False)
                    return EventResult.of(prior)
                if found is None or version is None:
                    break  # perhaps registered but not arrived yet: the locking path reads it through
                state = BatteryState.from_row(found)
                step = machine.apply(
                    state,
                    poster,
                    ev,
                    recorded_at=datetime.now(UTC),
                    max_ahead=rules.max_ahead,
                    receiver=receiver,
                    tolerances=rules.tolerances,
                    designated_bodies=rules.designated_bodies,
                )
                if isinstance(step, Refusal):
                    _raise_if({0: step}, False)
                assert isinstance(step, Transition)
                stored = step.row.as_row()
                message = lifecycle_message(stored, step.state.kind, step.state.manufacturer)
                try:
                    if await repo.append_one(conn, stored, step.state.as_row(), message, version=version):
                        return EventResult.of(stored)
                except _LOST_RACE:
                    pass
    async with sessionmaker() as session, session.begin():
        (result,) = await capture(session, [event], principal, registry, rules, receivers=receivers)
    return result


def _corrections(
    ev: Event,
    ledgers: Mapping[str, Sequence[Mapping[str, Any]]],
    batch_rows: Sequence[LedgerRow],
    work: Mapping[str, BatteryState],
    parents: Mapping[str, BatteryState],
    window: timedelta,
) -> machine.Corrections | None:
    """An ERROR_DECLARED's battery's ledger as it stands at this point of the batch (stored rows, then the batch's)."""
    if ev.type is not EventType.ERROR_DECLARED or ev.battery_id not in ledgers or not ledgers[ev.battery_id]:
        return None
    ledger = [LedgerRow.from_row(r) for r in ledgers[ev.battery_id]]
    ledger += [r for r in batch_rows if r.battery_id == ev.battery_id]
    return machine.Corrections(ledger, {**parents, **work}, window)


def _problem(refusal: Refusal) -> EventProblem:
    return EventProblem(
        refusal.detail,
        status=refusal.status,
        code=refusal.code,
        title=refusal.title,
        errors=refusal.errors,
        **refusal.extra,
    )


class RegistrationPending(Unavailable):
    code, title = "registration-pending", "Registration not yet received"  # machine.REGISTRATION_PENDING


def _raise_if(failures: Mapping[int, Refusal], batch: bool) -> None:
    """Refusals become the one problem the client gets: the event's own, or the batch's listing each. A pending
    registration is the whole request's (503, Retry-After: retrying all of it is safe), whatever else failed."""
    if not failures:
        return
    pending = next((r for r in failures.values() if r.code == machine.REGISTRATION_PENDING), None)
    if pending is not None:
        raise RegistrationPending(pending.detail, errors=pending.errors)
    if not batch:
        raise _problem(next(iter(failures.values())))
    ordered = sorted(failures.items())
    first_index, first = ordered[0]
    status = first.status if all(r.status == first.status for _, r in ordered) else 422
    raise BatchProblem(
        f"{len(ordered)} of the batch's events failed; nothing was stored. First (index {first_index}): {first.detail}",
        status=status,
        errors=[
            {
                "index": i,
                "status": r.status,
                "code": r.code,
                "detail": r.detail,
                **({"errors": [dict(e) for e in r.errors]} if r.errors else {}),
                **r.extra,
            }
            for i, r in ordered
        ],
    )
