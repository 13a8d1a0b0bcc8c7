from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.catalog.models import BatteryModel
from shared.db import row_dict

battery_models = BatteryModel.__table__


async def insert_model(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any] | None:
    stmt = pg_insert(battery_models).values(**values).on_conflict_do_nothing().returning(battery_models)
    row = (await session.execute(stmt)).mappings().first()
    return row_dict(row) if row else None


async def get_models(session: AsyncSession, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = (await session.execute(select(battery_models).where(battery_models.c.id.in_(list(ids))))).mappings()
    return {r["id"]: row_dict(r) for r in rows}


async def set_passport(session: AsyncSession, model_id: str, passport: dict[str, Any] | None) -> dict[str, Any] | None:
    stmt = update(battery_models).where(battery_models.c.id == model_id).values(passport=passport)
    row = (await session.execute(stmt.returning(battery_models))).mappings().first()
    return row_dict(row) if row else None
