"""The common shape of every service's ASGI app: settings, engine, auth, problems, logs, health, and the
relay, consumers and operations endpoints of what the service publishes and consumes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.routing import _IncludedRouter
from sqlalchemy import text

from shared.audit import AuditMiddleware, audit_router
from shared.auth import TokenVerifier
from shared.db import make_engine, make_sessionmaker, make_statement_pool
from shared.kafka import ConsumerLoop, ConsumerSpec, KafkaCluster, PositionStore, ensure_topics, kafka_reachable
from shared.limits import BodySizeLimit, IdentityFirst, RateLimit, RateLimiter
from shared.logs import RequestIdMiddleware, configure_logging
from shared.memdebug import install_from_env as install_memdebug
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, MetricsMiddleware, render, set_pool
from shared.outbox import OutboxRelay, applied_positions, outbox_stats, published_positions
from shared.problems import Problem, Unavailable, install_problem_handlers
from shared.settings import ServiceSettings

log = logging.getLogger("batterytrace.app")

ExtraLifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


#: Allocations between collections of the youngest generation while the app serves (Python's default: 700).
GC_YOUNG_THRESHOLD = 20_000

#: How long /readyz answers from its last check (seconds).
READY_TTL_S = 3.0


async def _check_dependencies(app: FastAPI) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # pragma: no cover - exercised in fault tests
        checks["database"] = f"down: {exc.__class__.__name__}"
    checks["kafka"] = "ok" if await kafka_reachable(app.state.kafka) else "down"
    return checks


async def _ready_checks(app: FastAPI) -> dict[str, str]:
    """The dependency checks, cached for READY_TTL_S on the app (one check at a time)."""
    lock: asyncio.Lock | None = getattr(app.state, "ready_lock", None)
    if lock is None:
        lock = app.state.ready_lock = asyncio.Lock()
    async with lock:
        cached: tuple[float, dict[str, str]] | None = getattr(app.state, "ready_cache", None)
        now = time.monotonic()
        if cached is not None and now - cached[0] < READY_TTL_S:
            return cached[1]
        checks = await _check_dependencies(app)
        app.state.ready_cache = (time.monotonic(), checks)
        return checks


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
        """The checks, from a cache of READY_TTL_S seconds: a flood of probes makes at most one database
        query and one broker connection per period (concurrent probes share the one check)."""
        checks = await _ready_checks(request.app)
        if any(v != "ok" for v in checks.values()):
            raise Unavailable("Not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)
        return {"status": "ready", "checks": checks}

    return router


def create_service_app(
    *,
    name: str,
    title: str,
    description: str | None,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    schema: str,
    publishes: Sequence[str] = (),
    consumes: Sequence[ConsumerSpec] = (),
    extra_lifespan: ExtraLifespan | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """A service's ASGI app. `description` (the service's module docstring) opens its OpenAPI document, which
    adds how errors are answered. `schema` is the service's database schema. `publishes` are the topics it
    writes through its outbox: it gets the relay, `/v1/ops/outbox`, the outbox metrics and "published"
    positions. `consumes` are its consumers: run in the lifespan when consumers are enabled, with
    "applied" positions and each one's status endpoint if it declares one. Nothing is mounted for
    what a service does not have."""
    configure_logging(name, settings.log_level, settings.log_json)
    install_memdebug()  # debug only: BT_TRACEMALLOC_DUMP

    @contextlib.asynccontextmanager
    async def _consumers(app: FastAPI) -> AsyncIterator[None]:
        positions = PositionStore(app.state.engine, schema)
        loops = {
            spec.name: ConsumerLoop.for_spec(
                spec, settings, app.state.sessionmaker, positions=positions, kafka=app.state.kafka
            )
            for spec in consumes
        }
        app.state.consumers = loops
        try:
            if settings.consumers_enabled and loops:
                topics = [t for loop in loops.values() for t in loop.topics]
                try:
                    await ensure_topics(app.state.kafka, topics, settings.kafka_partitions)
                except Exception as exc:  # the loops retry until the broker is back
                    log.warning("%s: could not ensure topics %s: %r", name, topics, exc)
                for loop in loops.values():
                    loop.start()
            yield
        finally:  # each finishes its batch in flight (stopping one never started does nothing)
            await asyncio.gather(*(loop.stop() for loop in loops.values()))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.database_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.statement_pool = await make_statement_pool(
            settings.database_url, max(2, settings.database_pool_size // 2)
        )
        app.state.verifier = verifier = TokenVerifier(settings)
        await verifier.start()  # a JWKS is fetched now and kept fresh in the background
        thresholds = gc.get_threshold()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if publishes and settings.relay_enabled:
                    relay = OutboxRelay(
                        engine,
                        schema,
                        bootstrap=app.state.kafka,
                        topic_prefix=settings.kafka_topic_prefix,
                        partitions=settings.kafka_partitions,
                        batch_size=settings.relay_batch_size,
                        idle_sleep_s=settings.relay_idle_sleep_s,
                        idle_max_s=settings.relay_idle_max_s,
                        standby_poll_s=settings.relay_standby_poll_s,
                        retention_s=settings.outbox_retention_days * 86_400,
                        prune_interval_s=settings.outbox_prune_interval_s,
                    )
                    relay.start()
                    app.state.relay = relay
                    stack.push_async_callback(relay.stop)
                await stack.enter_async_context(_consumers(app))
                if extra_lifespan is not None:
                    await stack.enter_async_context(extra_lifespan(app))
                # What startup made (modules, schemas, routes: some 180,000 objects) lives as long as the process.
                # Frozen out of the collector's generations, it is no longer walked by every full collection, which a
                # request making many objects triggers: a bulk registration spent a quarter of its CPU in them.
                gc.collect()
                gc.freeze()
                # A request makes thousands of short-lived objects: at the default threshold (700 allocations) the
                # youngest generation is collected several times per request, each walk finding almost nothing.
                gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
                yield
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()  # collectable again once the app is gone (tests start many apps in one process)
            await verifier.close()
            await app.state.statement_pool.close()
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=f"{(description or '').strip()}\n\nErrors are RFC 9457 problem+json.".lstrip(),
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
    )
    app.state.settings = settings
    app.state.kafka = KafkaCluster.from_settings(settings)  # every Kafka client of this app is made from it
    app.state.schema = schema
    app.state.service_name = name
    app.state.publishes, app.state.consumes = tuple(publishes), tuple(consumes)  # what deploy/ must provide for
    app.state.consumers = {}
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AuditMiddleware, schema=schema)
    app.add_middleware(
        BodySizeLimit,
        large_body_bytes=settings.large_body_bytes,
        large_bodies=settings.large_bodies_in_flight,
        large_body_wait_s=settings.large_body_wait_s,
    )
    app.state.rate_limiter = RateLimiter(
        rate=settings.rate_limit_per_s, burst=settings.rate_limit_burst, max_keys=settings.rate_limit_max_keys
    )
    app.add_middleware(RateLimit, limiter=app.state.rate_limiter)
    app.add_middleware(IdentityFirst)  # the token is verified before any body byte is read
    app.add_middleware(MetricsMiddleware, service=name)
    add_routes(app, health_router())
    add_routes(app, audit_router())
    for router in routers:
        add_routes(app, router)
    if publishes:
        add_routes(app, outbox_router(schema))
    if publishes or consumes:
        add_routes(app, positions_router(name, schema, publishes, has_consumers=bool(consumes)))
    for spec in consumes:
        if spec.status_path is not None:
            add_routes(app, consumer_status_router(spec))

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        if publishes:
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


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """`app.include_router(router)` with the router's routes placed on the app's own router. This FastAPI keeps an
    included router as a branch that each request is matched against twice, for every router before the one that
    answers (measured: a sixth of a registry GET's CPU, issue 16). The same routes in the same order: a route takes
    its router's tags, responses and dependencies when it is declared, and these routers have no prefix, lifespan or
    included routers of their own (those are still included)."""
    plain = not (router.prefix or router.on_startup or router.on_shutdown or router._low_priority_routes)
    if not plain or any(isinstance(r, _IncludedRouter) for r in router.routes):
        app.include_router(router)
        return
    app.router.routes.extend(router.routes)
    app.router._mark_routes_changed()


def outbox_router(schema: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/v1/ops/outbox", summary="Outbox backlog of this service")
    async def outbox_status(request: Request) -> dict[str, float]:
        return await outbox_stats(request.app.state.engine, schema)

    return router


def positions_router(name: str, schema: str, publishes: Sequence[str], *, has_consumers: bool) -> APIRouter:
    router = APIRouter(tags=["operations"])
    topics = list(publishes)

    @router.get(
        "/v1/ops/positions",
        summary="Stream positions: newest written/published by this service, newest applied by its consumers",
    )
    async def positions(request: Request) -> dict[str, Any]:
        """Positions are the producer's outbox IDs (Kafka header `bt-position`), so end-to-end lag can be
        told in events even where broker offsets are unreliable."""
        engine = request.app.state.engine
        return {
            "service": name,
            "published": await published_positions(engine, schema, topics) if topics else [],
            "applied": await applied_positions(engine, schema) if has_consumers else [],
        }

    return router


def consumer_status_router(spec: ConsumerSpec) -> APIRouter:
    router = APIRouter(tags=["operations"])
    assert spec.status_path is not None

    @router.get(spec.status_path, summary=f"The {spec.name} stream consumer")
    async def consumer_status(request: Request) -> dict[str, Any]:
        """Records applied and dead-lettered since the process started, and when the last batch committed."""
        loop: ConsumerLoop = request.app.state.consumers[spec.name]
        return loop.status()

    return router


__all__ = ["ConsumerSpec", "Problem", "create_service_app"]
