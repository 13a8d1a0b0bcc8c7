from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.catalog import passport
from services.registry.catalog import repository as repo
from services.registry.catalog.passport import PassportDeclaration
from services.registry.catalog.schemas import BatteryModelIn
from services.registry.events import registry_message
from services.registry.models import SCHEMA
from shared.auth import Principal
from shared.contract.lifecycle import canonical_json
from shared.outbox import enqueue
from shared.problems import Conflict, Forbidden, NotFound


def model_facts(row: dict[str, Any]) -> dict[str, Any]:
    """The model's facts as published (JSON-ready)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


async def create_model(session: AsyncSession, body: BatteryModelIn, principal: Principal) -> dict[str, Any]:
    passport.check(body.passport)
    row = await repo.insert_model(session, {**body.model_dump(mode="json"), "manufacturer": principal.org})
    if row is None:
        raise Conflict(f"Battery model '{body.id}' exists already.", code="duplicate-model")
    await enqueue(session, SCHEMA, [registry_message("model.registered", body.id, model_facts(row))])
    return row


async def get_model(session: AsyncSession, model_id: str) -> dict[str, Any]:
    found = await repo.get_models(session, [model_id])
    if model_id not in found:
        raise NotFound(f"No battery model '{model_id}'.")
    return found[model_id]


async def declare_passport(
    session: AsyncSession, model_id: str, body: PassportDeclaration, principal: Principal
) -> dict[str, Any]:
    """The model's manufacturer states (or restates) its passport declaration; the portal's passports of every
    battery of the model follow. The model's facts are republished whole (`model.registered`, last one wins)."""
    model = await get_model(session, model_id)
    if model["manufacturer"] != principal.org:
        raise Forbidden("Only the model's manufacturer may declare its passport data.", code="not-the-manufacturer")
    passport.check(body)
    row = await repo.set_passport(session, model_id, body.model_dump(mode="json"))
    if row is None:  # deleted meanwhile: models are never deleted, so this is a race with nothing
        raise NotFound(f"No battery model '{model_id}'.")
    # Its own message ID (the declaration's digest): the registration's ID is derived from the model alone, and a
    # consumer that has it would take a restatement under that ID for a re-sent registration and drop it.
    declared = hashlib.sha256(canonical_json(row["passport"])).hexdigest()
    event_id = str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"https://batterytrace.kr/registry/model.passport/{model_id}/{declared}")
    )
    await enqueue(
        session, SCHEMA, [registry_message("model.registered", model_id, model_facts(row), event_id=event_id)]
    )
    return row
