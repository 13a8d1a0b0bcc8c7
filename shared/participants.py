"""Participants are real: a verified token speaks for a registered, active participant holding the token's role.

Every service answers "who is this org?" from its own participant directory: the registry from its table, the
events service and the portal from their projections of `battery.registry.v1`. All three tables are
`<schema>.participants` with the columns `id`, `role`, `ministry`, `status`, so one `TableDirectory` serves
all three. Answers are cached for `participants_ttl_s` (default 20 s): a suspension reaches every service
through the stream and then through the cache, within a minute.

The bootstrap admin (`bootstrap_admin_org`, role admin) is admitted without a directory entry: it registers
the first participants. `participants_unchecked_for_unit_tests` turns the whole check off (and the receiver
check of TRANSFERRED); only unit-level test fixtures set it, never dev, the system tests or the attack tests.

Also here: the Korean business registration number (사업자등록번호) check digit, a pure rule."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from shared.problems import Unauthorized


class ParticipantStatus(StrEnum):
    active = "active"
    suspended = "suspended"


@dataclass(frozen=True, slots=True)
class ParticipantFacts:
    """What a directory knows of one participant: enough to admit its tokens and to receive custody."""

    id: str
    role: str
    ministry: str | None
    status: ParticipantStatus

    @property
    def active(self) -> bool:
        return self.status is ParticipantStatus.active


# ---- the Korean business registration number (사업자등록번호) ----

_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)


def business_number_check_digit(first9: str) -> int:
    """The check digit of a business registration number from its first nine digits (국세청 rule)."""
    digits = [int(c) for c in first9]
    total = sum(d * w for d, w in zip(digits, _BRN_WEIGHTS, strict=True))
    total += (digits[8] * 5) // 10
    return (10 - total % 10) % 10


def valid_business_number(value: str) -> bool:
    """Ten digits (dashes `123-45-67890` allowed) whose last digit is the check digit of the first nine."""
    digits = value.replace("-", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    return business_number_check_digit(digits[:9]) == int(digits[9])


def normalise_business_number(value: str) -> str:
    return value.replace("-", "")


# ---- directories ----

Lookup = Callable[[str], Awaitable[ParticipantFacts | None]]


class TableDirectory:
    """Participants read from `<schema>.participants`, each answer (found or not) cached for `ttl_s`."""

    def __init__(self, engine: AsyncEngine, schema: str, *, ttl_s: float, max_entries: int = 50_000) -> None:
        self._engine = engine
        self._sql = text(f"SELECT id, role, ministry, status FROM {schema}.participants WHERE id = :id")
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: dict[str, tuple[float, ParticipantFacts | None]] = {}

    async def get(self, org: str) -> ParticipantFacts | None:
        now = time.monotonic()
        hit = self._cache.get(org)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._engine.connect() as conn:
            row = (await conn.execute(self._sql, {"id": org})).mappings().first()
        facts = (
            ParticipantFacts(
                id=row["id"], role=row["role"], ministry=row["ministry"], status=ParticipantStatus(row["status"])
            )
            if row
            else None
        )
        if len(self._cache) >= self._max:
            self._cache.clear()
        # Not found is remembered briefly: a participant registered a moment ago is admitted soon.
        self._cache[org] = (now + (self._ttl_s if facts else min(self._ttl_s, 2.0)), facts)
        return facts

    def forget(self, org: str) -> None:
        """Drop one cached answer (the owning service calls it after changing that participant)."""
        self._cache.pop(org, None)


def directory(request: HTTPConnection) -> TableDirectory | None:
    """The service's participant directory (made on first use), or None when the check is turned off."""
    app = request.app
    settings: Any = app.state.settings
    if settings.participants_unchecked_for_unit_tests:
        return None
    found: TableDirectory | None = getattr(app.state, "participants", None)
    if found is None:
        found = TableDirectory(app.state.engine, app.state.schema, ttl_s=settings.participants_ttl_s)
        app.state.participants = found
    return found


async def check_participant(request: HTTPConnection, org: str, role: str, ministry: str | None) -> None:
    """401 unless the verified token's org is a registered, active participant with the token's role (and
    ministry); the configured bootstrap admin passes without an entry."""
    found = directory(request)
    if found is None:
        return
    settings: Any = request.app.state.settings
    if role == "admin" and org == settings.bootstrap_admin_org:
        return
    facts = await found.get(org)
    if facts is None:
        raise Unauthorized(f"'{org}' is not a registered participant.", code="unknown-participant")
    if not facts.active:
        raise Unauthorized(f"Participant '{org}' is suspended.", code="participant-suspended")
    if facts.role != role or (facts.ministry or None) != (ministry or None):
        raise Unauthorized(
            f"Participant '{org}' is registered as '{facts.role}', not '{role}'.", code="participant-role-mismatch"
        )
