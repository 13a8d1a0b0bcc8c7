"""The portal service: the integrated portal of the battery lifecycle history system. Its read models are built
only from the Kafka streams `battery.registry.v1` and `battery.lifecycle.v1` (idempotent on event ID, so they can
be rebuilt by replaying the streams): a battery's whole history, search, the ministries' views and battery
passports in the Battery Pass 1.2 aspects layout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from services.portal.epcis import consumer as epcis_consumer
from services.portal.epcis.router import router as epcis_router
from services.portal.history.router import router as history_router
from services.portal.ingest import consumer as ingest_consumer
from services.portal.log import consumer as log_consumer
from services.portal.log.router import router as log_router
from services.portal.models import SCHEMA
from services.portal.passports.router import router as passports_router
from services.portal.recalls.router import router as recalls_router
from services.portal.resolver.router import router as resolver_router
from services.portal.settings import PortalSettings
from services.portal.subscriptions.delivery import Dispatcher
from services.portal.subscriptions.router import router as subscriptions_router
from services.portal.ui.router import router as ui_router
from services.portal.vehicles.router import router as vehicles_router
from services.portal.views.router import router as views_router
from shared.app import create_service_app
from shared.auth import Principal, Role, require_role
from shared.problems import PROBLEM_RESPONSES
from shared.streams import stream_report

Operator = Annotated[Principal, Depends(require_role(Role.operator))]


@contextlib.asynccontextmanager
async def _subscriptions(app: FastAPI) -> AsyncIterator[None]:
    """The EPCIS subscription dispatcher (webhook delivery; wakes the WebSocket subscriptions of this process)."""
    s: PortalSettings = app.state.settings
    if not s.subscriptions_enabled:
        yield
        return
    dispatcher = Dispatcher(s, app.state.engine, app.state.sessionmaker)
    await dispatcher.start()
    app.state.subscriptions = dispatcher
    try:
        yield
    finally:
        await dispatcher.stop()


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    app = create_service_app(
        name="portal",
        title="batterytrace portal",
        description=__doc__,
        settings=settings,
        # subscriptions before the EPCIS router: its `/epcis/{resource}/{value}/events` would take `/epcis/queries/...`
        routers=[
            history_router,
            views_router,
            passports_router,
            subscriptions_router,
            epcis_router,
            resolver_router,
            vehicles_router,
            recalls_router,
            log_router,
        ],
        schema=SCHEMA,
        consumes=[  # publishes nothing
            ingest_consumer.consumer(settings),
            epcis_consumer.consumer(settings),
            log_consumer.consumer(settings),
        ],
        extra_lifespan=_subscriptions,
        openapi_tags=[
            {"name": "history", "description": "Whole histories and search (bearer token)."},
            {"name": "views", "description": "Each ministry's figures (that ministry's token only)."},
            {"name": "vehicles", "description": "A vehicle's batteries over time (VINs are personal data)."},
            {"name": "passports", "description": "Battery passports by access level (public without a token)."},
            {"name": "log", "description": "The transparency log's newest checkpoint and its cosigners (public)."},
        ],
    )

    @app.get(
        "/v1/ops/streams",
        tags=["operations"],
        summary="Streams, consumer groups and lag (operators)",
        responses={code: PROBLEM_RESPONSES[code] for code in (401, 403)},
    )
    async def streams(_: Operator) -> dict[str, Any]:
        """The same report as `batterytrace streams --json`: topics and end offsets, consumer groups with
        committed offsets and lag, and each consumer's end-to-end lag from application positions."""
        s: PortalSettings = app.state.settings
        services = {"registry": s.registry_url, "events": s.events_url, "portal": s.self_url}
        return await stream_report(app.state.kafka, s.kafka_topic_prefix, services)

    app.include_router(ui_router)  # the web UI under /ui/
    return app


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory services.portal.app:app`."""
    return create_app()
