"""Every query of named queries and subscriptions (`portal.epcis_queries`, `portal.epcis_subscriptions`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.epcis.models import EpcisEvent
from services.portal.subscriptions.models import NamedQuery, Subscription
from shared.db import row_dict

Q = NamedQuery.__table__
S = Subscription.__table__
E = EpcisEvent.__table__
#: NOTIFY channel the EPCIS view's consumer signals after each commit that stored events.
CHANNEL = "bt_epcis_events"


async def add_query(session: AsyncSession, owner: str, name: str, query: dict[str, Any], now: datetime) -> bool:
    """False when the owner has a query of that name already."""
    stmt = (
        pg_insert(Q)
        .values(owner=owner, name=name, query=query, created_at=now)
        .on_conflict_do_nothing()
        .returning(Q.c.name)
    )
    return (await session.execute(stmt)).first() is not None


async def queries(session: AsyncSession, owner: str, after: str | None, limit: int) -> list[dict[str, Any]]:
    stmt = select(Q.c.name, Q.c.query).where(Q.c.owner == owner)
    if after is not None:
        stmt = stmt.where(Q.c.name > after)
    rows = await session.execute(stmt.order_by(Q.c.name).limit(limit))
    return [row_dict(r) for r in rows.mappings()]


async def query(session: AsyncSession, owner: str, name: str) -> dict[str, Any] | None:
    row = (await session.execute(select(Q).where(Q.c.owner == owner, Q.c.name == name))).mappings().first()
    return None if row is None else row_dict(row)


async def delete_query(session: AsyncSession, owner: str, name: str) -> bool:
    """Its subscriptions go with it (ON DELETE CASCADE)."""
    stmt = delete(Q).where(Q.c.owner == owner, Q.c.name == name).returning(Q.c.name)
    return (await session.execute(stmt)).first() is not None


async def last_seq(session: AsyncSession) -> int:
    return int((await session.execute(select(func.coalesce(func.max(E.c.seq), 0)))).scalar_one())


async def add_subscription(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(S).values(**values))


async def subscriptions(
    session: AsyncSession, owner: str, name: str, after: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = select(S).where(S.c.owner == owner, S.c.query_name == name)
    if after is not None:
        stmt = stmt.where(S.c.id > after)
    rows = await session.execute(stmt.order_by(S.c.id).limit(limit))
    return [row_dict(r) for r in rows.mappings()]


async def subscription(session: AsyncSession, owner: str, name: str, sid: str) -> dict[str, Any] | None:
    stmt = select(S).where(S.c.owner == owner, S.c.query_name == name, S.c.id == sid)
    row = (await session.execute(stmt)).mappings().first()
    return None if row is None else row_dict(row)


async def delete_subscription(session: AsyncSession, owner: str, name: str, sid: str) -> bool:
    stmt = delete(S).where(S.c.owner == owner, S.c.query_name == name, S.c.id == sid).returning(S.c.id)
    return (await session.execute(stmt)).first() is not None


async def claim_due(session: AsyncSession, now: datetime, lease_until: datetime, limit: int) -> list[dict[str, Any]]:
    """Subscriptions due now and not leased by another process, leased to this one (SKIP LOCKED: processes
    never wait for each other)."""
    due = (
        select(S.c.id)
        .where(S.c.due_at <= now, (S.c.lease_until.is_(None)) | (S.c.lease_until < now))
        .order_by(S.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = update(S).where(S.c.id.in_(due.scalar_subquery())).values(lease_until=lease_until).returning(S)
    return [row_dict(r) for r in (await session.execute(stmt)).mappings()]


async def delivered(
    session: AsyncSession,
    sid: str,
    *,
    after_seq: int,
    last_record_time: datetime | None,
    last_event_id: str | None,
    notified_at: datetime | None,
    due_at: datetime,
    next_run_at: datetime | None,
    claimed_due: datetime,
) -> None:
    """A batch acknowledged (or nothing to send): the watermark moves, the retry count resets. A wake-up that
    came while it was delivered (`due_at` changed from `claimed_due`) is kept: those events go out at once."""
    values: dict[str, Any] = {
        "after_seq": after_seq,
        "attempts": 0,
        "last_error": None,
        "due_at": case((S.c.due_at == claimed_due, due_at), else_=func.least(S.c.due_at, due_at)),
        "next_run_at": next_run_at,
        "lease_until": None,
    }
    if last_event_id is not None:
        values |= {"last_record_time": last_record_time, "last_event_id": last_event_id}
    if notified_at is not None:
        values["last_notified_at"] = notified_at
    await session.execute(update(S).where(S.c.id == sid).values(**values))


async def failed(session: AsyncSession, sid: str, *, attempts: int, error: str, due_at: datetime) -> None:
    """A delivery failed: retried at `due_at`, the watermark unchanged."""
    stmt = (
        update(S)
        .where(S.c.id == sid)
        .values(attempts=attempts, last_error=error[:500], due_at=due_at, lease_until=None)
    )
    await session.execute(stmt)


async def wake_streams(session: AsyncSession, now: datetime) -> None:
    """Streaming subscriptions waiting for events (not backing off) are due now; one being delivered (leased)
    is marked too, so its delivery's end keeps it due (`delivered`)."""
    stmt = (
        update(S)
        .where(S.c.stream.is_(True), S.c.attempts == 0, (S.c.due_at > now) | S.c.lease_until.is_not(None))
        .values(due_at=now)
    )
    await session.execute(stmt)


async def release(session: AsyncSession, sids: Sequence[str]) -> None:
    """Leases given up (a process stopping): those subscriptions are due again at once."""
    await session.execute(update(S).where(S.c.id.in_(list(sids))).values(lease_until=None))


async def notify(session: AsyncSession) -> None:
    """Wake the dispatchers (sent at commit: listeners see the events when it arrives)."""
    await session.execute(select(func.pg_notify(CHANNEL, "")))


def ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [str(r["id"]) for r in rows]
