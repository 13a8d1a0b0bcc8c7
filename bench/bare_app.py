"""The bare FastAPI limit (bench/limits.py): one endpoint validating an event-shaped body with pydantic, no
middleware, no database. `uvicorn --factory bench.bare_app:create_app`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI, status
from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: UUID
    battery_id: Annotated[str, Field(min_length=1, max_length=64)]
    type: Annotated[str, Field(min_length=1, max_length=32)]
    occurred_at: datetime
    location: dict[str, str] = {}
    data: dict[str, Any] = {}


class Accepted(BaseModel):
    event_id: UUID
    battery_id: str


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=status.HTTP_201_CREATED, response_model=Accepted)
    async def post_event(body: Event) -> dict[str, Any]:
        return {"event_id": body.event_id, "battery_id": body.battery_id}

    return app
