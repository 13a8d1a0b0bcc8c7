"""Every query of the VIN domain (on the session's connection: the same transaction as the capture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.models import AuditLog, Outbox
from services.events.vins.models import Vin
from shared.db import qualified, raw_connection

VINS = qualified(Vin.__table__)
OUTBOX = qualified(Outbox.__table__)
AUDIT = qualified(AuditLog.__table__)


async def record(session: AsyncSession, vins: Mapping[str, str]) -> list[str]:
    """Keep the plain VINs of these pseudonyms. Returns the pseudonyms newly (or, after an erasure, again)
    recorded; a VIN already held is left alone."""
    if not vins:
        return []
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"INSERT INTO {VINS} (pseudonym, vin) SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT (pseudonym) DO UPDATE SET vin = excluded.vin, recorded_at = now(), erased_at = NULL, "
        f"erased_by = NULL, erasure_reason = NULL WHERE {VINS}.vin IS NULL RETURNING pseudonym",
        list(vins),
        list(vins.values()),
    )
    return sorted(r["pseudonym"] for r in rows)


async def get(session: AsyncSession, pseudonyms: Sequence[str]) -> dict[str, dict[str, Any]]:
    conn = await raw_connection(session)
    rows = await conn.fetch(f"SELECT * FROM {VINS} WHERE pseudonym = ANY($1::text[])", list(pseudonyms))
    return {r["pseudonym"]: dict(r) for r in rows}


async def erase(session: AsyncSession, pseudonym: str, by: str, reason: str) -> dict[str, Any] | None:
    """Drop the plain VIN (the row keeps who erased it, when and why). None if the pseudonym is unknown."""
    conn = await raw_connection(session)
    row = await conn.fetchrow(
        f"UPDATE {VINS} SET vin = NULL, erased_at = coalesce(erased_at, now()), erased_by = coalesce(erased_by, $2), "
        "erasure_reason = coalesce(erasure_reason, $3) WHERE pseudonym = $1 RETURNING *",
        pseudonym,
        by,
        reason,
    )
    return dict(row) if row else None


async def scrub_outbox(session: AsyncSession, topic: str, pseudonym: str) -> int:
    """Delete the outbox's copies of the pseudonym's VIN messages (sent rows are kept for republishing, so
    they would otherwise outlive the erasure)."""
    conn = await raw_connection(session)
    status: str = await conn.execute(f"DELETE FROM {OUTBOX} WHERE topic = $1 AND key = $2", topic, pseudonym)
    return int(status.split()[-1])


async def audit(session: AsyncSession, *, actor: str, role: str, path: str, details: dict[str, Any]) -> None:
    conn = await raw_connection(session)
    await conn.execute(
        f"INSERT INTO {AUDIT} (actor, role, method, path, query, status, details) "
        "VALUES ($1, $2, 'POST', $3, '', 200, $4::jsonb)",
        actor,
        role,
        path,
        orjson.dumps(details).decode(),
    )
