"""What the registry publishes on battery.registry.v1 (through its outbox)."""

from __future__ import annotations

import uuid
from typing import Any

from shared.envelope import envelope
from shared.outbox import OutboxMessage
from shared.settings import TOPIC_REGISTRY

SOURCE = "/batterytrace/registry"


def registry_message(kind: str, key: str, data: dict[str, Any], *, event_id: str | None = None) -> OutboxMessage:
    """`kind` like 'battery.registered' → CloudEvent type 'kr.battery.registry.battery.registered.v1'."""
    return OutboxMessage(
        topic=TOPIC_REGISTRY,
        key=key,
        payload=envelope(
            id=event_id or str(uuid.uuid4()),
            source=SOURCE,
            type=f"kr.battery.registry.{kind}.v1",
            subject=key,
            data=data,
        ),
    )
