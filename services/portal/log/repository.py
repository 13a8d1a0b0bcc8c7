"""Queries of the portal's checkpoint read model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.log.models import CheckpointCosigner, SeenCheckpoint
from services.portal.log.projection import Checkpoint

CHECKPOINTS = SeenCheckpoint.__table__
COSIGNERS = CheckpointCosigner.__table__


async def lock(session: AsyncSession) -> None:
    """One writer at a time (a rebuild's replay and the live consumer): the first key seen is then one key."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('portal.log_checkpoints'))"))


async def first_log_key(session: AsyncSession) -> str | None:
    """The log key of the first checkpoint received (the one kept when no key is configured)."""
    first = await session.scalar(
        select(CHECKPOINTS.c.log_key).order_by(CHECKPOINTS.c.received_at, CHECKPOINTS.c.tree_size).limit(1)
    )
    return None if first is None else str(first)


async def store(session: AsyncSession, cp: Checkpoint) -> str:
    """Store a checkpoint (its note replaced only by one with more signatures) and its cosigners (added, never
    removed: an older message delivered again changes nothing). Returns the root stored for its tree size."""
    row = {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "origin": cp.origin,
        "log_key": cp.log_key,
        "note": cp.note,
        "signatures": cp.signatures,
        "published_at": cp.published_at,
    }
    statement = insert(CHECKPOINTS).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=[CHECKPOINTS.c.tree_size],
        set_={"note": statement.excluded.note, "signatures": statement.excluded.signatures},
        where=(CHECKPOINTS.c.signatures < statement.excluded.signatures)
        & (CHECKPOINTS.c.root_hash == statement.excluded.root_hash),
    )
    await session.execute(statement)
    if cp.cosigners:
        rows = [{"tree_size": cp.tree_size, "witness": w, "signature": line} for w, line in cp.cosigners]
        await session.execute(insert(COSIGNERS).values(rows).on_conflict_do_nothing())
    stored = await session.scalar(select(CHECKPOINTS.c.root_hash).where(CHECKPOINTS.c.tree_size == cp.tree_size))
    return str(stored)


async def latest(session: AsyncSession) -> tuple[dict[str, Any], list[str]] | None:
    """The newest checkpoint (largest tree) and the witnesses that cosigned it, by name."""
    row = (await session.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.tree_size.desc()).limit(1))).first()
    if row is None:
        return None
    witnesses = await session.scalars(
        select(COSIGNERS.c.witness).where(COSIGNERS.c.tree_size == row.tree_size).order_by(COSIGNERS.c.witness)
    )
    return dict(row._mapping), list(witnesses)
