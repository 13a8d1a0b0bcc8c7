"""Prometheus metrics shared by every service (names follow Prometheus conventions)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "batterytrace_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "batterytrace_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge("batterytrace_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "batterytrace_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
RELAY_PUBLISHED = Counter("batterytrace_relay_published_total", "Outbox rows published to Kafka", ["service"])
RELAY_ERRORS = Counter("batterytrace_relay_errors_total", "Failed outbox publish attempts", ["service"])
RELAY_LEADER = Gauge("batterytrace_relay_leader", "1 while this process's relay holds its outbox's lock", ["service"])
PUBLISHED_POSITION = Gauge(
    "batterytrace_stream_published_position", "Newest outbox position published", ["service", "topic"]
)
APPLIED_POSITION = Gauge(
    "batterytrace_stream_applied_position", "Newest stream position applied by a consumer", ["group", "topic"]
)
CONSUMER_LAG = Gauge(
    "batterytrace_consumer_lag_messages",
    "Broker-reported lag (high watermark - position) per partition",
    ["group", "topic", "partition"],
)
CONSUMER_APPLIED = Counter("batterytrace_consumer_applied_total", "Stream records applied", ["group", "topic"])
DEAD_LETTERS = Counter("batterytrace_dead_letters_total", "Records sent to a dead-letter topic", ["group", "topic"])
DB_POOL_IN_USE = Gauge("batterytrace_db_pool_connections_in_use", "Checked-out database connections", ["service"])
DB_POOL_SIZE = Gauge("batterytrace_db_pool_size", "Database pool size", ["service"])
LEDGER_VERIFY_FAILURES = Gauge(
    "batterytrace_ledger_chain_broken_batteries", "Batteries whose hash chain failed the periodic check", ["service"]
)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, template).observe(time.perf_counter() - start)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


def set_pool(service: str, engine: Any) -> None:
    pool = engine.pool
    try:
        DB_POOL_IN_USE.labels(service).set(pool.checkedout())
        DB_POOL_SIZE.labels(service).set(pool.size())
    except AttributeError:  # pragma: no cover - a pool class without these
        pass
