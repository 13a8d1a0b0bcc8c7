"""The registry service: participants, battery models, batteries and their aliases."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.amendments.router import router as amendments_router
from services.registry.batteries.router import router as batteries_router
from services.registry.catalog.router import router as catalog_router
from services.registry.models import SCHEMA
from services.registry.participants.router import router as participants_router
from services.registry.recalls.router import router as recalls_router
from services.registry.settings import RegistrySettings
from shared.app import create_service_app
from shared.contract.streams import TOPIC_REGISTRY


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    return create_service_app(
        name="registry",
        title="batterytrace registry",
        description=(
            "Master data of the battery lifecycle history system: participants, battery models, and every "
            "cell, module and pack with its aliases. Every change is published to `battery.registry.v1`. "
            "Errors are RFC 9457 problem+json."
        ),
        settings=settings,
        routers=[participants_router, catalog_router, batteries_router, amendments_router, recalls_router],
        schema=SCHEMA,
        publishes=[TOPIC_REGISTRY],
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory services.registry.app:app`."""
    return create_app()
