"""The events service: lifecycle events of every battery, posted over HTTP (or as EPCIS 2.0 documents) by
recyclers, collectors, assessors and the other participants, checked against the state machine and custody rules,
appended to a hash-chained ledger, and published to `battery.lifecycle.v1` through a transactional outbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.events.epcis.resolver import AliasResolver
from services.events.epcis.router import router as epcis_router
from services.events.intake import consumer as intake
from services.events.intake.registry_client import RegistryClient
from services.events.ledger.router import router as ledger_router
from services.events.ledger.verifier import ChainVerifier
from services.events.lifecycle.router import router as lifecycle_router
from services.events.lifecycle.service import CaptureRules
from services.events.log.router import router as log_router
from services.events.log.service import LogConfig, LogWorker, load_signer
from services.events.models import SCHEMA
from services.events.settings import EventsSettings
from services.events.vins.router import router as vins_router
from services.events.vins.service import VinKey
from shared.app import create_service_app
from shared.contract.streams import TOPIC_EPCIS, TOPIC_LIFECYCLE, TOPIC_LOG_CHECKPOINTS, TOPIC_VINS


def create_app(
    settings: EventsSettings | None = None, registry_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or EventsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.registry = RegistryClient(settings.registry_url, registry_transport)
        app.state.vin_key = VinKey.from_file(settings.vin_pseudonym_key_file)
        app.state.capture_rules = CaptureRules.from_settings(settings, app.state.vin_key)
        app.state.epcis_resolver = AliasResolver(settings.registry_url, registry_transport)
        verifier = ChainVerifier(
            app.state.engine,
            interval_s=settings.verify_interval_s,
            rate_per_s=settings.verify_rate_per_s,
            period_s=settings.verify_period_s,
        )
        app.state.ledger_verifier = verifier
        if settings.verifier_enabled:
            verifier.start()
        app.state.log_config = log_config = LogConfig.from_key_file(
            settings.log_signing_key_file,
            origin=settings.log_origin,
            checkpoint_interval_s=settings.log_checkpoint_interval_s,
            sequencer_interval_s=settings.log_sequencer_interval_s,
            witness_keys=tuple(settings.log_witness_keys),
        )
        app.state.log_signer = load_signer(log_config)
        log_worker = LogWorker(app.state.sessionmaker, log_config, app.state.log_signer)
        app.state.log_worker = log_worker
        if settings.log_enabled:
            log_worker.start()
        try:
            yield
        finally:
            await log_worker.stop()
            await verifier.stop()
            await app.state.registry.close()
            await app.state.epcis_resolver.close()

    return create_service_app(
        name="events",
        title="batterytrace events",
        description=__doc__,
        settings=settings,
        routers=[lifecycle_router, ledger_router, epcis_router, log_router, vins_router],
        schema=SCHEMA,
        publishes=[TOPIC_LIFECYCLE, TOPIC_EPCIS, TOPIC_LOG_CHECKPOINTS, TOPIC_VINS],
        consumes=[intake.consumer(settings)],
        extra_lifespan=lifespan,
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory services.events.app:app`."""
    return create_app()
