"""The one read the UI needs beyond the portal's history repository: a GS1 Digital Link by its path."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.models import Alias

aliases = Alias.__table__


async def digital_link_by_path(session: AsyncSession, path: str) -> str | None:
    """The battery whose Digital Link alias ends with `/<path>` (e.g. `01/<GTIN>/21/<serial>`), when exactly
    one does. A suffix match cannot use the primary key: callers try the exact URL first."""
    escaped = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    q = (
        select(aliases.c.battery_id)
        .where(aliases.c.scheme == "gs1_digital_link", aliases.c.value.like(f"%/{escaped}", escape="\\"))
        .limit(2)
    )
    found = (await session.execute(q)).scalars().all()
    return found[0] if len(found) == 1 else None
