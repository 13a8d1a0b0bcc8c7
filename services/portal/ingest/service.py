"""The portal's ingest: a fetched batch of both streams into the read models, one database transaction.

Idempotent: a registry message is claimed in `applied_events` first, and only the newly claimed ones change
anything. A lifecycle event is not claimed: its key is its place in its battery's timeline, the primary key of
`events`, whose insert keeps only the new ones (`inserted`), and everything it changes is gated on that or
recomputed from the whole timeline (a battery with a repeated event in the batch is refolded). The consumer
loop commits the offsets after this transaction, so a crash in between only replays messages that then change
nothing. What the rows become is decided in `projection.py`; the SQL is in `repository.py`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.portal.history.service import passport_id
from services.portal.ingest import projection
from services.portal.ingest import repository as repo
from services.portal.ingest.projection import Battery, Flows, Message, TimelineEvent
from services.portal.ingest.schemas import AliasAddedIn, AmendedIn, BatteryRegisteredIn, ModelIn, ParticipantIn
from services.portal.passports import repository as passports_repo
from services.portal.recalls import service as recalls
from services.portal.vehicles import service as vehicles
from shared.contract.lifecycle import LedgerRecord as LifecycleEventIn
from shared.kafka import BatchHandler, Records


def handler(sessionmaker: async_sessionmaker[AsyncSession]) -> BatchHandler:
    async def handle(records: Records) -> None:
        messages = projection.unique(projection.decode(r) for r in records)  # PoisonMessage for a bad one
        async with sessionmaker() as session, session.begin():
            await apply(session, messages)

    return handle


async def apply(session: AsyncSession, messages: Sequence[Message]) -> None:
    # VINs and their erasures: not claimed (a VIN erased and recorded again reuses its key); applied in order.
    await vehicles.apply_vins(session, [m for m in messages if m.stream == "vins"])
    messages = [m for m in messages if m.stream != "vins"]
    if not messages:
        return
    # Lifecycle events are deduplicated by `events`' primary key (insert_events), not claimed (module docstring).
    fresh = await repo.claim(session, [(m.stream, m.key) for m in messages if m.stream != "lifecycle"])
    messages = [m for m in messages if m.stream == "lifecycle" or (m.stream, m.key) in fresh]
    if not messages:
        return
    flows = Flows()
    participants, models, aliases = [], [], []
    registrations: dict[str, BatteryRegisteredIn] = {}
    amendments: dict[str, list[AmendedIn]] = {}
    events: list[LifecycleEventIn] = []
    for m in messages:
        body = m.body
        if isinstance(body, ParticipantIn):
            participants.append(body.model_dump())
        elif isinstance(body, ModelIn):
            models.append(body.model_dump())
        elif isinstance(body, AliasAddedIn):
            aliases.append(body.model_dump())
        elif isinstance(body, BatteryRegisteredIn):
            registrations[body.id] = body
        elif isinstance(body, AmendedIn):
            amendments.setdefault(body.battery_id, []).append(body)
        elif isinstance(body, LifecycleEventIn):
            events.append(body)
    await recalls.apply(session, messages)
    await repo.upsert_participants(session, _dedupe(participants, "id"))
    await repo.upsert_models(session, _dedupe(models, "id"))
    await repo.upsert_aliases(session, _dedupe(aliases, "value"))

    touched = sorted(set(registrations) | set(amendments) | {e.battery_id for e in events})
    if not touched:
        return
    before = await repo.lock_batteries(session, touched)
    await repo.insert_amendments(session, [a.model_dump() for found in amendments.values() for a in found])
    event_rows = [projection.event_row(e) for e in events]
    inserted = await repo.insert_events(session, event_rows)
    await repo.add_handlers(
        session,
        [(b.manufacturer, b.id) for b in registrations.values()]
        + [(org, e.battery_id) for e in events if (e.battery_id, e.sequence) in inserted for org in handlers_of(e)],
    )
    envelopes = {e.battery_id: e for e in events}  # the last one of each battery
    olds = {bid: Battery.of(before[bid]) for bid in touched}
    posted = projection.posted(event_rows, inserted)
    in_batch = Counter(e.battery_id for e in events)
    # A battery whose events in the batch only take its timeline on from the stored head is folded on from the
    # head (projection.continues); anything else (its registration, an amendment, a gap, a late or repeated
    # event, a declaration, its first envelope's kind and manufacturer) refolds its whole timeline.
    onward = {
        bid
        for bid, found in posted.items()
        if bid not in registrations
        and bid not in amendments
        and len(found) == in_batch[bid]
        and projection.continues(olds[bid].head, found)
        and projection.facts_after(olds[bid].facts, None, envelopes.get(bid)) == olds[bid].facts
    }
    timelines = await repo.events_of(session, [bid for bid in touched if bid not in onward])
    rows: list[dict[str, Any]] = []
    deltas: dict[tuple[str, ...], int] = {}
    marks: list[tuple[str, int, int | None]] = []
    proven: dict[str, set[str]] = {}
    new_lives: list[dict[str, Any]] = []
    for bid in touched:
        old = olds[bid]
        if bid in onward:
            new = projection.extend(old, posted[bid], flows)
        else:
            timeline = [TimelineEvent.of(r) for r in timelines[bid]]
            new = projection.advance(
                old, registrations.get(bid), timeline, envelopes.get(bid), inserted, flows, amendments.get(bid, ())
            )
            changed = projection.declared_marks(timeline)
            marks.extend((bid, seq, by) for seq, by in changed.items())
            if changed:
                proven[bid] = projection.proven_handlers(new, timeline)
        projection.count_deltas(deltas, old, new)
        rows.append(new.row())
        new_lives.extend(lives_begun(old, new))
    await repo.save_batteries(session, rows)
    await passports_repo.save_lives(session, new_lives)
    await repo.mark_declared(session, marks)
    await repo.keep_handlers(session, proven)
    await repo.add_counts(session, deltas)
    await repo.add_flows(session, flows.changes())


def lives_begun(old: Battery, new: Battery) -> list[dict[str, Any]]:
    """The passports (GET /v1/passports/by-id/...) of the lives the batch began: the first life of a battery new
    to the portal, and each one a REPURPOSED/REMANUFACTURED in effect added (the head's `life` counts them as
    `history.service.lives` does). A life a declaration took back keeps its row; the passport service answers
    404 for it."""
    first = old.head.life + 1 if old.facts.registered or old.head.sequence else 0
    return [
        {"passport_id": passport_id(new.id, n), "battery_id": new.id, "life": n}
        for n in range(first, new.head.life + 1)
    ]


def handlers_of(event: LifecycleEventIn) -> list[str]:
    """The organisations an event proves a relation for (shared.access): the battery's manufacturer, the
    custodian after it, the consignee it names. Its poster only through one of those: posting an INCIDENT
    or INSPECTED proves nothing."""
    found = [event.custodian_after]
    if event.manufacturer:
        found.append(event.manufacturer)
    consignee = event.data.get("consignee")
    if isinstance(consignee, str) and consignee:
        found.append(consignee)
    return found


def _dedupe(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The last version of each row wins (one upsert may not touch a row twice)."""
    return list({r[key]: r for r in rows}.values())
