from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.events import registry_message
from services.registry.models import SCHEMA
from services.registry.participants import repository as repo
from services.registry.participants.schemas import ParticipantIn
from shared.outbox import enqueue
from shared.pagination import split_page
from shared.problems import Conflict, NotFound


async def create_participant(session: AsyncSession, body: ParticipantIn) -> dict[str, Any]:
    row = await repo.insert_participant(session, body.model_dump(mode="json"))
    if row is None:
        raise Conflict(f"Participant '{body.id}' exists already.", code="duplicate-participant")
    data = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    await enqueue(session, SCHEMA, [registry_message("participant.registered", body.id, data)])
    return row


async def get_participant(session: AsyncSession, pid: str) -> dict[str, Any]:
    row = await repo.get_participant(session, pid)
    if row is None:
        raise NotFound(f"No participant '{pid}'.")
    return row


async def list_participants(
    session: AsyncSession,
    *,
    role: str | None,
    ministry: str | None,
    region: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of participants, and whether more follow."""
    rows = await repo.list_participants(
        session, role=role, ministry=ministry, region=region, after=after, limit=limit + 1
    )
    return split_page(rows, limit)
