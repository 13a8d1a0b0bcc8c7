"""CloudEvents 1.0 envelope (structured JSON mode) used on every topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field


class CloudEvent(BaseModel):
    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


def envelope(*, id: str, source: str, type: str, subject: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvent as a JSON-ready dict (what the outbox stores)."""
    return {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def manufactured_event_id(battery_id: str) -> str:
    """The deterministic ID of a battery's registration message and of its MANUFACTURED ledger event: part
    of the published contract, so the registry, the events service (stream or read-through) and any
    consumer agree on it without importing each other."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://batterytrace.kr/battery/{battery_id}/manufactured"))
