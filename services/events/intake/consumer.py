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
from services.events.recalls import repository as recalls
from services.events.settings import EventsSettings
from shared.contract.recalls import Campaign
from shared.contract.streams import BATTERY_REGISTERED as REGISTERED
from shared.contract.streams import PARTICIPANT_TYPES, RECALL_REGISTERED, TOPIC_REGISTRY
from shared.kafka import BatchHandler, ConsumerSpec, PoisonMessage

REQUIRED = ("id", "kind", "model_id", "manufacturer", "manufactured_at")


def _decode(rec: ConsumerRecord[bytes, bytes]) -> tuple[str, dict[str, Any]] | None:
    """(CloudEvent type, checked data), or None for a type this consumer does not use."""
    try:
        ce = orjson.loads(rec.value or b"")
        ctype = ce["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PoisonMessage(f"not a CloudEvent: {exc}") from None
    if ctype not in PARTICIPANT_TYPES and ctype not in (REGISTERED, RECALL_REGISTERED):
        return None
    data = ce.get("data")
    if ctype == RECALL_REGISTERED:
        try:
            return ctype, Campaign.model_validate(data).model_dump(mode="json")
        except ValueError as exc:
            raise PoisonMessage(f"{RECALL_REGISTERED}: invalid campaign: {exc}") from None
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
        campaigns = [data for ctype, data in decoded if ctype == RECALL_REGISTERED]
        if not batteries and not rows and not campaigns:
            return
        async with sessionmaker() as session, session.begin():
            await participants.upsert(session, [r for r in rows if r is not None])
            await recalls.upsert_campaigns(session, campaigns)
            # serial numbers, for recall campaigns that name serial ranges
            await recalls.upsert_serials(
                session, {b["id"]: b["serial_number"] for b in batteries if isinstance(b.get("serial_number"), str)}
            )
            if batteries:
                await start_ledgers(session, batteries)

    return handle


def consumer(settings: EventsSettings) -> ConsumerSpec:
    """The events service's one consumer: the registry stream, in the events group."""
    return ConsumerSpec(
        name="events.registry", group=settings.consumer_group, topics=(TOPIC_REGISTRY,), handler=handler
    )
