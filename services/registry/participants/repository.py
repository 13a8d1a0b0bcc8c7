from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.participants.models import Participant
from services.registry.participants.schemas import ParticipantFilter
from shared.db import row_dict
from shared.pagination import keyset

participants = Participant.__table__


async def insert_participant(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any] | None:
    """Insert; None if the ID exists already."""
    stmt = pg_insert(participants).values(**values).on_conflict_do_nothing().returning(participants)
    row = (await session.execute(stmt)).mappings().first()
    return row_dict(row) if row else None


async def get_participant(session: AsyncSession, pid: str) -> dict[str, Any] | None:
    row = (await session.execute(select(participants).where(participants.c.id == pid))).mappings().first()
    return row_dict(row) if row else None


async def list_participants(
    session: AsyncSession, f: ParticipantFilter, after: str | None, limit: int
) -> list[dict[str, Any]]:
    equal = (
        (participants.c.role, f.role),
        (participants.c.ministry, f.ministry),
        (participants.c.region, f.region or None),
    )
    q = keyset(select(participants), participants.c.id, after, limit, equal)
    return [row_dict(r) for r in (await session.execute(q)).mappings()]


async def set_status(session: AsyncSession, pid: str, status: str) -> dict[str, Any]:
    stmt = update(participants).where(participants.c.id == pid).values(status=status).returning(participants)
    return row_dict((await session.execute(stmt)).mappings().one())


async def prefixes_of(session: AsyncSession, pid: str) -> list[str]:
    """The GS1 company prefixes a participant owns (none if it is not registered)."""
    q = select(participants.c.gs1_company_prefixes).where(participants.c.id == pid)
    return list((await session.execute(q)).scalar_one_or_none() or [])
