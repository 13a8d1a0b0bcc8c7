"""Applies the registry's participant messages (registered, suspended, reactivated) to the projection: each
carries the participant's whole current record, so the last one applied wins (one key, one partition, in order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.participants.models import Participant
from shared.participants import ParticipantStatus

participants = Participant.__table__
FIELDS = ("id", "role", "ministry", "status")


def row(data: dict[str, Any]) -> dict[str, Any] | None:
    """The projected row of one message's data; None if it lacks what the projection needs."""
    if not isinstance(data.get("id"), str) or not isinstance(data.get("role"), str):
        return None
    status = data.get("status") or ParticipantStatus.active.value
    if status not in ParticipantStatus.__members__:
        return None
    return {"id": data["id"], "role": data["role"], "ministry": data.get("ministry"), "status": status}


async def upsert(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    latest = list({r["id"]: r for r in rows}.values())  # one upsert may not touch a row twice
    if not latest:
        return
    stmt = pg_insert(participants).values(latest)
    stmt = stmt.on_conflict_do_update(
        index_elements=[participants.c.id],
        set_={
            "role": stmt.excluded.role,
            "ministry": stmt.excluded.ministry,
            "status": stmt.excluded.status,
            "updated_at": func.now(),
        },
    )
    await session.execute(stmt)
