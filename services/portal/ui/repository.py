"""The one read the UI needs beyond the portal's history repository: a GS1 Digital Link by its canonical key.
`/ui/dl/...` (QR codes printed before the resolver) parses its path with the resolver's parser
(`services.portal.resolver.gs1`: check digit verified, serial canonical) and answers the battery the
resolver's `/01/{gtin}/21/{serial}` would."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.models import DIGITAL_LINK_KEY, SCHEMA
from services.portal.resolver import gs1

#: The longest path the resolver parses (a Digital Link with its qualifiers is far shorter).
MAX_PATH = 512

_BY_KEY = text(
    f"SELECT battery_id FROM {SCHEMA}.aliases WHERE scheme = 'gs1_digital_link' AND {DIGITAL_LINK_KEY} = :key LIMIT 2"
)


def digital_link_key(path: str) -> str | None:
    """The canonical key (`<GTIN-14>/<serial>`) of a Digital Link path, or None when it names none."""
    if len(path) > MAX_PATH:
        return None
    at = f"/{path}".find("/01/")
    if at < 0:
        return None
    tail = f"/{path}"[at:].split("?", 1)[0].split("#", 1)[0]
    try:
        found = gs1.parse(tail)
    except gs1.DigitalLinkError:
        return None
    return found.key if found.serial is not None else None


async def digital_link_by_path(session: AsyncSession, path: str) -> str | None:
    """The battery whose Digital Link alias has the key this path names (`01/<GTIN>/21/<serial>`), when
    exactly one does: an exact look-up on an indexed key, never a pattern match over the aliases."""
    key = digital_link_key(path)
    if key is None:
        return None
    found = (await session.execute(_BY_KEY, {"key": key})).scalars().all()
    return found[0] if len(found) == 1 else None
