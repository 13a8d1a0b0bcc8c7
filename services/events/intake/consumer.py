"""Consumes battery.registry.v1: every registered battery starts its ledger with MANUFACTURED; every participant
message (registered, suspended, reactivated) updates the participant projection (services/events/participants)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.lifecycle.service import start_ledgers
from services.events.participants import projection as participants
from services.events.settings import EventsSettings
from shared.contract.streams import BATTERY_REGISTERED as REGISTERED
from shared.contract.streams import PARTICIPANT_TYPES, TOPIC_REGISTRY
from shared.kafka import BatchHandler, ConsumerSpec, PoisonMessage

REQUIRED = ("id", "kind", "model_id", "manufacturer", "manufactured_at")


def _decode(rec: ConsumerRecord[bytes, bytes]) -> tuple[str, dict[str, Any]] | None:
    """(CloudEvent type, checked data), or None for a type this consumer does not use."""
    try:
        ce = orjson.loads(rec.value or b"")
        ctype = ce["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PoisonMessage(f"not a CloudEvent: {exc}") from None
    if ctype not in PARTICIPANT_TYPES and ctype != REGISTERED:
        return None
    data = ce.get("data")
    if ctype == REGISTERED:
        if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
            raise PoisonMessage(f"{REGISTERED} lacks one of {REQUIRED}")
        return ctype, data
    if not isinstance(data, dict) or participants.row(data) is None:
        raise PoisonMessage(f"{ctype} lacks a valid id, role or status")
    return ctype, data


def handler(sessionmaker: async_sessionmaker[AsyncSession]) -> BatchHandler:
    async def handle(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        decoded = [d for d in (_decode(r) for r in records) if d is not None]
        batteries = [data for ctype, data in decoded if ctype == REGISTERED]
        rows = [participants.row(data) for ctype, data in decoded if ctype in PARTICIPANT_TYPES]
        if not batteries and not rows:
            return
        async with sessionmaker() as session, session.begin():
            await participants.upsert(session, [r for r in rows if r is not None])
            if batteries:
                await start_ledgers(session, batteries)

    return handle


def consumer(settings: EventsSettings) -> ConsumerSpec:
    """The events service's one consumer: the registry stream, in the events group."""
    return ConsumerSpec(
        name="events.registry", group=settings.consumer_group, topics=(TOPIC_REGISTRY,), handler=handler
    )
