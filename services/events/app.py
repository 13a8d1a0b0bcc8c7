"""The events service: lifecycle capture, the hash-chained ledger, the outbox to battery.lifecycle.v1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.events.epcis.resolver import AliasResolver
from services.events.epcis.router import router as epcis_router
from services.events.epcis.service import TOPIC_EPCIS
from services.events.intake.consumer import registry_handler
from services.events.intake.registry_client import RegistryClient
from services.events.ledger.router import router as ledger_router
from services.events.ledger.verifier import ChainVerifier
from services.events.lifecycle.router import router as lifecycle_router
from services.events.models import SCHEMA
from shared.app import create_service_app
from shared.kafka import ConsumerLoop
from shared.settings import TOPIC_LIFECYCLE, TOPIC_REGISTRY, EventsSettings


def create_app(
    settings: EventsSettings | None = None, registry_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or EventsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.registry = RegistryClient(settings.registry_url, registry_transport)
        app.state.epcis_resolver = AliasResolver(settings.registry_url, registry_transport)
        consumer = None
        if settings.consumers_enabled:
            consumer = ConsumerLoop.for_service(
                settings,
                topics=[settings.topic(TOPIC_REGISTRY)],
                group_id=settings.consumer_group,
                handler=registry_handler(app.state.sessionmaker),
                name="events.registry",
                engine=app.state.engine,
                schema=SCHEMA,
            )
            consumer.start()
        app.state.consumers = [consumer] if consumer else []
        verifier = ChainVerifier(
            app.state.engine, interval_s=settings.verify_interval_s, rate_per_s=settings.verify_rate_per_s
        )
        app.state.ledger_verifier = verifier
        if settings.verifier_enabled:
            verifier.start()
        try:
            yield
        finally:
            await verifier.stop()
            if consumer:
                await consumer.stop()
            await app.state.registry.close()
            await app.state.epcis_resolver.close()

    return create_service_app(
        name="events",
        title="batterytrace events",
        description=(
            "Lifecycle events of every battery: posted over HTTP by recyclers, collectors, assessors and the "
            "other participants, checked against the state machine and custody rules, appended to a "
            "hash-chained ledger, and published to `battery.lifecycle.v1` through a transactional outbox. "
            "Errors are RFC 9457 problem+json."
        ),
        settings=settings,
        routers=[lifecycle_router, ledger_router, epcis_router],
        schema=SCHEMA,
        extra_lifespan=lifespan,
        publishes=[TOPIC_LIFECYCLE, TOPIC_EPCIS],
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory services.events.app:app`."""
    return create_app()
