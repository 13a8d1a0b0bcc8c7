"""What the registry publishes on battery.registry.v1 (through its outbox)."""

from __future__ import annotations

import uuid
from typing import Any

from shared.contract.streams import SOURCE_REGISTRY, TOPIC_REGISTRY, envelope, registry_type
from shared.outbox import OutboxMessage


def registry_message(kind: str, key: str, data: dict[str, Any], *, event_id: str | None = None) -> OutboxMessage:
    """`kind` like 'battery.registered' → CloudEvent type 'kr.battery.registry.battery.registered.v1'."""
    return OutboxMessage(
        topic=TOPIC_REGISTRY,
        key=key,
        payload=envelope(
            id=event_id or str(uuid.uuid4()),
            source=SOURCE_REGISTRY,
            type=registry_type(kind),
            subject=key,
            data=data,
        ),
    )
