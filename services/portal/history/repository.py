"""Reads for histories, composition and search (each an indexed lookup, no scans)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.tables import aliases, batteries, events, handlers, participants
from shared.db import row_dict


async def get_battery(session: AsyncSession, battery_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(batteries).where(batteries.c.id == battery_id))).mappings().first()
    return row_dict(row) if row else None


async def resolve_alias(session: AsyncSession, value: str) -> str | None:
    """An alias (GS1 Digital Link, EPC, VIN) from the registry, else the VIN the battery was installed in."""
    found = (await session.execute(select(aliases.c.battery_id).where(aliases.c.value == value))).scalar()
    if found is None:
        found = (
            await session.execute(select(batteries.c.id).where(batteries.c.vin == value).order_by(batteries.c.id))
        ).scalar()
    return found


async def aliases_of(session: AsyncSession, battery_id: str) -> list[dict[str, Any]]:
    q = select(aliases.c.scheme, aliases.c.value).where(aliases.c.battery_id == battery_id).order_by(aliases.c.value)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def timeline(session: AsyncSession, battery_id: str) -> list[dict[str, Any]]:
    q = select(events).where(events.c.battery_id == battery_id).order_by(events.c.sequence)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def handled(session: AsyncSession, org: str, battery_id: str) -> bool:
    q = select(exists().where(handlers.c.org == org, handlers.c.battery_id == battery_id))
    return bool((await session.execute(q)).scalar())


async def participant(session: AsyncSession, pid: str) -> dict[str, Any] | None:
    row = (await session.execute(select(participants).where(participants.c.id == pid))).mappings().first()
    return row_dict(row) if row else None


_ASSEMBLY = ("ASSEMBLED", "DISASSEMBLED")


async def children_at(session: AsyncSession, parent_ids: Sequence[str], at: datetime) -> dict[str, str]:
    """{child: parent} for the batteries inside `parent_ids` at time `at`: a battery is inside the parent
    of its last ASSEMBLED (not followed by a DISASSEMBLED) that occurred by then."""
    if not parent_ids:
        return {}
    # Two indexed steps: who was ever assembled into these parents (ix_events_parent), then each one's
    # last assembly event by then (primary key). One joined statement let the planner scan the table.
    candidates = (
        (await session.execute(select(events.c.battery_id).where(events.c.parent_id.in_(list(parent_ids))).distinct()))
        .scalars()
        .all()
    )
    if not candidates:
        return {}
    last = (
        select(events.c.battery_id, events.c.type, events.c.parent_id)
        .where(
            events.c.battery_id.in_(list(candidates)),
            events.c.type.in_(_ASSEMBLY),
            events.c.occurred_at <= at,
        )
        .order_by(events.c.battery_id, events.c.sequence.desc())
        .distinct(events.c.battery_id)
    )
    rows = (await session.execute(last)).all()
    wanted = set(parent_ids)
    return {r.battery_id: r.parent_id for r in rows if r.type == "ASSEMBLED" and r.parent_id in wanted}


async def parent_at(session: AsyncSession, battery_id: str, at: datetime) -> str | None:
    q = (
        select(events.c.type, events.c.parent_id)
        .where(events.c.battery_id == battery_id, events.c.type.in_(_ASSEMBLY), events.c.occurred_at <= at)
        .order_by(events.c.sequence.desc())
        .limit(1)
    )
    row = (await session.execute(q)).first()
    return row.parent_id if row is not None and row.type == "ASSEMBLED" else None


async def summaries(session: AsyncSession, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    q = select(
        batteries.c.id, batteries.c.kind, batteries.c.model_id, batteries.c.manufacturer, batteries.c.state
    ).where(batteries.c.id.in_(list(ids)))
    return {r["id"]: row_dict(r) for r in (await session.execute(q)).mappings()}


async def state_at(session: AsyncSession, battery_id: str, at: datetime) -> dict[str, Any] | None:
    q = (
        select(events.c.sequence, events.c.state_after, events.c.custodian_after)
        .where(events.c.battery_id == battery_id, events.c.occurred_at <= at)
        .order_by(events.c.sequence.desc())
        .limit(1)
    )
    row = (await session.execute(q)).mappings().first()
    return row_dict(row) if row else None


async def search(
    session: AsyncSession,
    *,
    state: str | None,
    manufacturer: str | None,
    chemistry: str | None,
    region: str | None,
    vin: str | None,
    handler_org: str | None,
    after: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    q = select(batteries).order_by(batteries.c.id).limit(limit)
    for column, value in (
        (batteries.c.state, state),
        (batteries.c.manufacturer, manufacturer),
        (batteries.c.chemistry, chemistry),
        (batteries.c.region, region),
    ):
        if value is not None:
            q = q.where(column == value)
    if vin is not None:
        by_alias = select(aliases.c.battery_id).where(aliases.c.value == vin, aliases.c.scheme == "vin")
        q = q.where(or_(batteries.c.vin == vin, batteries.c.id.in_(by_alias)))
    if handler_org is not None:
        q = q.where(exists().where(and_(handlers.c.org == handler_org, handlers.c.battery_id == batteries.c.id)))
    if after is not None:
        q = q.where(batteries.c.id > after)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]
