"""The registry service: master data of the battery lifecycle history system. Participants, battery models, and
every cell, module and pack with its aliases. Every change is published to `battery.registry.v1`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from services.registry.amendments.router import router as amendments_router
from services.registry.batteries.router import RAW_BODIES
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
    app = create_service_app(
        name="registry",
        title="batterytrace registry",
        description=__doc__,
        settings=settings,
        routers=[participants_router, catalog_router, batteries_router, amendments_router, recalls_router],
        schema=SCHEMA,
        publishes=[TOPIC_REGISTRY],
    )
    app.openapi = _with_schemas(app, RAW_BODIES)  # type: ignore[method-assign]
    return app


def _with_schemas(app: FastAPI, models: tuple[type[BaseModel], ...]) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with the schemas of bodies a route validates itself (named by `$ref` in its
    `openapi_extra`), which FastAPI leaves out of the components because no parameter declares them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, nested in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, nested)
                schemas.setdefault(model.__name__, schema)
        assert app.openapi_schema is not None
        return app.openapi_schema

    return openapi


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory services.registry.app:app`."""
    return create_app()
