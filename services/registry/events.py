"""What the registry publishes on battery.registry.v1 (through its outbox)."""

from __future__ import annotations

import uuid
from typing import Any

from shared.contract.streams import SOURCE_REGISTRY, TOPIC_REGISTRY, envelope, registry_type
from shared.outbox import OutboxMessage

#: Facts that happen once per key: their message IDs are derived from what they are about, so a republish
#: from the tables (`services/registry/republish.py`) sends each with the ID it first had (consumers dedupe).
ONCE = {"participant.registered": "id", "model.registered": "id", "battery.alias_added": "value"}
#: What a battery's registration message carries of its model (and the model's `passport` declaration, both when
#: registered and when republished from the tables).
MODEL_FACTS = (
    "id",
    "kind",
    "chemistry",
    "rated_capacity_ah",
    "nominal_voltage_v",
    "rated_energy_kwh",
    "mass_kg",
    "manufacturer",
)


def registry_event_id(kind: str, key: str, data: dict[str, Any]) -> str:
    """The message ID of a once-only fact (uuid5 of the kind and its subject); a random one for the others
    (a participant is suspended and reactivated any number of times, each time a new message)."""
    field = ONCE.get(kind)
    if field is None:
        return str(uuid.uuid4())
    subject = data.get(field, key)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://batterytrace.kr/registry/{kind}/{subject}"))


def registry_message(
    kind: str, key: str, data: dict[str, Any], *, event_id: str | None = None, time: str | None = None
) -> OutboxMessage:
    """`kind` like 'battery.registered' → CloudEvent type 'kr.battery.registry.battery.registered.v1'; `time` as
    `envelope` takes it (one registration request's batteries share theirs)."""
    return OutboxMessage(
        topic=TOPIC_REGISTRY,
        key=key,
        payload=envelope(
            id=event_id or registry_event_id(kind, key, data),
            source=SOURCE_REGISTRY,
            type=registry_type(kind),
            subject=key,
            data=data,
            time=time,
        ),
    )
