from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.events import registry_message
from services.registry.models import SCHEMA
from services.registry.participants import repository as repo
from services.registry.participants.schemas import ParticipantFilter, ParticipantIn
from shared.outbox import enqueue
from shared.pagination import split_page
from shared.participants import ParticipantStatus
from shared.problems import Conflict, NotFound


def _published(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


async def create_participant(session: AsyncSession, body: ParticipantIn) -> dict[str, Any]:
    row = await repo.insert_participant(session, body.model_dump(mode="json"))
    if row is None:
        raise Conflict(f"Participant '{body.id}' exists already.", code="duplicate-participant")
    await enqueue(session, SCHEMA, [registry_message("participant.registered", body.id, _published(row))])
    return row


async def set_status(session: AsyncSession, pid: str, status: ParticipantStatus) -> dict[str, Any]:
    """Suspend or reactivate: the whole record goes out as `participant.suspended` / `participant.reactivated`
    (every service's directory honours it within its cache TTL). Setting the status it has is a no-op."""
    current = await repo.get_participant(session, pid)
    if current is None:
        raise NotFound(f"No participant '{pid}'.")
    if current["status"] == status.value:
        return current
    row = await repo.set_status(session, pid, status.value)
    kind = "participant.suspended" if status is ParticipantStatus.suspended else "participant.reactivated"
    await enqueue(session, SCHEMA, [registry_message(kind, pid, _published(row))])
    return row


async def get_participant(session: AsyncSession, pid: str) -> dict[str, Any]:
    row = await repo.get_participant(session, pid)
    if row is None:
        raise NotFound(f"No participant '{pid}'.")
    return row


async def list_participants(
    session: AsyncSession, f: ParticipantFilter, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A page of participants, and whether more follow."""
    rows = await repo.list_participants(session, f, after, limit + 1)
    return split_page(rows, limit)
