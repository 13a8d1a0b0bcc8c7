"""The common shape of every service's ASGI app: settings, engine, auth, problems, logs, health."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from shared.audit import AuditMiddleware, audit_router
from shared.auth import TokenVerifier
from shared.db import make_engine, make_sessionmaker, make_statement_pool
from shared.kafka import kafka_reachable
from shared.limits import BodySizeLimit, RateLimit
from shared.logs import RequestIdMiddleware, configure_logging
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, MetricsMiddleware, render, set_pool
from shared.outbox import OutboxRelay, applied_positions, outbox_stats, published_positions
from shared.problems import Problem, Unavailable, install_problem_handlers
from shared.settings import ServiceSettings

ExtraLifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: the database and Kafka are reachable",
        responses={503: {"description": "A dependency is down"}},
    )
    async def readyz(request: Request) -> dict[str, Any]:
        app = request.app
        checks: dict[str, str] = {}
        try:
            async with app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # pragma: no cover - exercised in fault tests
            checks["database"] = f"down: {exc.__class__.__name__}"
        settings: ServiceSettings = app.state.settings
        checks["kafka"] = "ok" if await kafka_reachable(settings.kafka_bootstrap_servers) else "down"
        if any(v != "ok" for v in checks.values()):
            raise Unavailable("Not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)
        return {"status": "ready", "checks": checks}

    return router


def create_service_app(
    *,
    name: str,
    title: str,
    description: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    schema: str,
    extra_lifespan: ExtraLifespan | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
    publishes: Sequence[str] = (),
) -> FastAPI:
    configure_logging(name, settings.log_level, settings.log_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.database_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.statement_pool = await make_statement_pool(
            settings.database_url, max(2, settings.database_pool_size // 2)
        )
        app.state.verifier = TokenVerifier(settings)
        relay = None
        if settings.relay_enabled:
            relay = OutboxRelay(
                engine,
                schema,
                bootstrap=settings.kafka_bootstrap_servers,
                topic_prefix=settings.kafka_topic_prefix,
                partitions=settings.kafka_partitions,
                batch_size=settings.relay_batch_size,
                idle_sleep_s=settings.relay_idle_sleep_s,
            )
            relay.start()
        app.state.relay = relay
        try:
            if extra_lifespan is not None:
                async with extra_lifespan(app):
                    yield
            else:
                yield
        finally:
            if relay is not None:
                await relay.stop()
            await app.state.statement_pool.close()
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
    )
    app.state.settings = settings
    app.state.schema = schema
    app.state.service_name = name
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AuditMiddleware, schema=schema)
    app.add_middleware(RateLimit, rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, service=name)
    app.include_router(health_router())
    app.include_router(audit_router())
    for router in routers:
        app.include_router(router)
    has_positions = schema in ("events", "portal")

    @app.get("/v1/ops/outbox", tags=["operations"], summary="Outbox backlog of this service")
    async def outbox_status() -> dict[str, float]:
        return await outbox_stats(app.state.engine, schema)

    @app.get(
        "/v1/ops/positions",
        tags=["operations"],
        summary="Stream positions: newest written/published by this service, newest applied by its consumers",
    )
    async def positions() -> dict[str, Any]:
        """Positions are the producer's outbox IDs (Kafka header `bt-position`), so end-to-end lag can be
        told in events even where broker offsets are unreliable."""
        return {
            "service": name,
            "published": await published_positions(app.state.engine, schema, list(publishes)),
            "applied": await applied_positions(app.state.engine, schema) if has_positions else [],
        }

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        try:
            stats = await outbox_stats(app.state.engine, schema)
            OUTBOX_BACKLOG.labels(name).set(stats["backlog"])
            OUTBOX_OLDEST_AGE.labels(name).set(stats["oldest_age_s"])
        except Exception:  # the scrape still answers when the database is down
            pass
        set_pool(name, app.state.engine)
        body, content_type = render()
        return Response(body, media_type=content_type)

    return app


__all__ = ["Problem", "create_service_app"]
