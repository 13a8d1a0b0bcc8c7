"""Consumes battery.registry.v1: every registered battery starts its ledger with MANUFACTURED."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.lifecycle.service import start_ledgers
from services.events.settings import EventsSettings
from shared.contract.streams import BATTERY_REGISTERED as REGISTERED
from shared.contract.streams import TOPIC_REGISTRY
from shared.kafka import BatchHandler, ConsumerSpec, PoisonMessage

REQUIRED = ("id", "kind", "model_id", "manufacturer", "manufactured_at")


def _decode(rec: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
    try:
        ce = orjson.loads(rec.value or b"")
        ctype = ce["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PoisonMessage(f"not a CloudEvent: {exc}") from None
    if ctype != REGISTERED:
        return None
    data = ce.get("data")
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
        raise PoisonMessage(f"{REGISTERED} lacks one of {REQUIRED}")
    return data


def handler(sessionmaker: async_sessionmaker[AsyncSession]) -> BatchHandler:
    async def handle(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        batteries = [b for b in (_decode(r) for r in records) if b is not None]
        if not batteries:
            return
        async with sessionmaker() as session, session.begin():
            await start_ledgers(session, batteries)

    return handle


def consumer(settings: EventsSettings) -> ConsumerSpec:
    """The events service's one consumer: the registry stream, in the events group."""
    return ConsumerSpec(
        name="events.registry", group=settings.consumer_group, topics=(TOPIC_REGISTRY,), handler=handler
    )
