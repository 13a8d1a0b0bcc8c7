"""VINs as personal data: the key that pseudonymises them, keeping the plain VIN erasable, and erasure.

A posted INSTALLED's `data.vin` is replaced by its keyed pseudonym before anything is digested, hashed,
stored or published; the plain VIN goes to `events.vins` (and, for the portal, to the compacted
`battery.vins.v1`) in the same transaction. An admin erasure drops it from both (a tombstone on the topic,
the outbox's copies deleted) and records who, when and why; the ledger, its hashes, the transparency log
and every proof are untouched, since none of them ever held the VIN."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.events.models import SCHEMA
from services.events.vins import repository as repo
from shared.auth import Principal
from shared.contract.streams import SOURCE_VINS, TOPIC_VINS, VIN_RECORDED, envelope
from shared.outbox import OutboxMessage, enqueue
from shared.problems import NotFound
from shared.vin import pseudonym

log = logging.getLogger("batterytrace.events.vins")


@dataclass(frozen=True, slots=True)
class VinKey:
    """The HMAC key of VIN pseudonyms (held by the events service only)."""

    key: bytes

    def pseudonym(self, vin: str) -> str:
        return pseudonym(self.key, vin)

    @classmethod
    def from_file(cls, path: Path | None) -> VinKey:
        """From a key file (64 hex digits); unset: a key made for this process only (tests; pseudonyms then
        change with every restart)."""
        if path is None:
            log.warning("no VIN pseudonym key configured: pseudonyms are keyed for this process only")
            return cls(secrets.token_bytes(32))
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < 32:
            raise ValueError(f"the VIN pseudonym key in {path} has {len(key)} bytes; at least 32 are needed")
        return cls(key)


def generate_key_file(path: Path) -> Path:
    """A new key file (once; an existing one is kept, so pseudonyms stay stable)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path


def recorded_message(pseudonym: str, vin: str) -> OutboxMessage:
    return OutboxMessage(
        TOPIC_VINS,
        pseudonym,
        envelope(
            id=f"vin/{pseudonym}",
            source=SOURCE_VINS,
            type=VIN_RECORDED,
            subject=pseudonym,
            data={"pseudonym": pseudonym, "vin": vin},
        ),
    )


async def record(session: AsyncSession, vins: Mapping[str, str]) -> None:
    """Keep the plain VINs of newly seen pseudonyms, and publish them for the portal (same transaction)."""
    fresh = await repo.record(session, vins)
    await enqueue(session, SCHEMA, [recorded_message(p, vins[p]) for p in fresh])


async def read(session: AsyncSession, pseudonym: str) -> dict[str, Any]:
    found = (await repo.get(session, [pseudonym])).get(pseudonym)
    if found is None:
        raise NotFound(f"No VIN is known under the pseudonym {pseudonym}.", code="unknown-vin")
    return found | {"erased": found["erased_at"] is not None}


async def erase(session: AsyncSession, pseudonym: str, reason: str, principal: Principal) -> dict[str, Any]:
    """Erase the plain VIN behind `pseudonym` (idempotent: erasing again changes nothing and answers the first
    erasure). The ledger keeps the pseudonym, so every chain, proof and checkpoint still verifies."""
    erased = await repo.erase(session, pseudonym, principal.org, reason)
    if erased is None:
        raise NotFound(f"No VIN is known under the pseudonym {pseudonym}.", code="unknown-vin")
    scrubbed = await repo.scrub_outbox(session, TOPIC_VINS, pseudonym)
    await enqueue(session, SCHEMA, [OutboxMessage(TOPIC_VINS, pseudonym, None)])  # the tombstone
    await repo.audit(
        session,
        actor=principal.org,
        role=principal.role.value,
        path=f"/v1/vins/{pseudonym}/erasure",
        details={"action": "vin-erasure", "pseudonym": pseudonym, "reason": reason, "outbox_rows_deleted": scrubbed},
    )
    return erased | {"erased": True}
