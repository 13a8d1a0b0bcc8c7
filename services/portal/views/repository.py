"""Reads of the pre-aggregated figures: a few hundred rows, whatever the number of events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.models import Battery
from services.portal.views.models import CurrentCount, FlowStat
from shared.db import row_dict

batteries = Battery.__table__
current_counts = CurrentCount.__table__
flow_stats = FlowStat.__table__


async def flows(
    session: AsyncSession, metrics: Sequence[str], *, start: date | None, end: date | None, region: str | None
) -> list[dict[str, Any]]:
    q = select(flow_stats).where(flow_stats.c.metric.in_(list(metrics)))
    if start is not None:
        q = q.where(flow_stats.c.month >= start)
    if end is not None:
        q = q.where(flow_stats.c.month <= end)
    if region is not None:
        q = q.where(flow_stats.c.region == region)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def counts(
    session: AsyncSession, *, region: str | None, states: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    q = select(current_counts).where(current_counts.c.n != 0)
    if region is not None:
        q = q.where(current_counts.c.region == region)
    if states is not None:
        q = q.where(current_counts.c.state.in_(list(states)))
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def waiting_since_before(session: AsyncSession, cutoff: datetime, *, region: str | None) -> dict[str, int]:
    """Batteries removed (not collected) or collected (not graded) since before `cutoff`, by state."""
    q = (
        select(batteries.c.state, func.count())
        # literally the partial index's predicate, so the planner uses it
        .where(text("state IN ('removed', 'collected')"), batteries.c.state_since < cutoff)
        .group_by(batteries.c.state)
    )
    if region is not None:
        q = q.where(batteries.c.region == region)
    return {state: int(n) for state, n in (await session.execute(q)).all()}


async def certificates(
    session: AsyncSession,
    *,
    until: date,
    after: date | None = None,
    region: str | None,
    states: Sequence[str] | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """Batteries (not recycled or disposed) whose latest KC 10031 certificate is valid until a day in
    [`after`, `until`], the soonest first."""
    b = batteries.c
    q = (
        select(
            b.id.label("battery_id"),
            b.state,
            b.status,
            b.region,
            b.certificate_number,
            b.certificate_body,
            b.certificate_valid_until,
        )
        .where(b.certificate_valid_until.is_not(None), b.certificate_valid_until <= until)
        .where(b.state.not_in(["recycled", "disposed"]))
        .order_by(b.certificate_valid_until, b.id)
        .limit(limit)
    )
    if after is not None:
        q = q.where(b.certificate_valid_until >= after)
    if states is not None:
        q = q.where(b.state.in_(list(states)))
    if region is not None:
        q = q.where(b.region == region)
    return [dict(r) for r in (await session.execute(q)).mappings()]
