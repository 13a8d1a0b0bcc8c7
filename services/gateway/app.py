"""The EPCIS gateway: one base URL (`/epcis`) for the whole EPCIS 2.0 REST binding, routed in front of the
services as an ingress would (`routes.py`): capture to the events service, queries to the portal. A reverse
proxy and nothing more: requests and answers stream through unchanged (httpx, no buffering), so each service
keeps its own limits, authentication and errors. Hop-by-hop headers are dropped and `X-Forwarded-*` set; a
client's own `X-Forwarded-*` headers are replaced, never passed on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.gateway.routes import upstream_of
from services.gateway.settings import GatewaySettings

log = logging.getLogger("batterytrace.gateway")
#: RFC 9110 §7.6.1 connection-specific headers, never forwarded either way (plus the ones the proxy sets).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
    }
)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _problem(status: int, title: str, detail: str, code: str, exception: str | None = None) -> Response:
    """RFC 9457 problem+json; `exception`: as the EPCIS binding's exception (`epcisException:<name>`)."""
    kind = f"epcisException:{exception}" if exception else f"https://batterytrace.kr/problems/{code}"
    body = {"type": kind, "title": title, "status": status, "detail": detail, "code": code}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json")


def _forward_headers(request: Request) -> list[tuple[bytes, bytes]]:
    headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
    client = request.client.host if request.client else ""
    headers += [
        (b"x-forwarded-for", client.encode()),
        (b"x-forwarded-proto", request.url.scheme.encode()),
        (b"x-forwarded-host", request.headers.get("host", "").encode("latin-1")),
    ]
    return headers


async def proxy(request: Request) -> Response:
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1")
    name = upstream_of(path)
    if name is None:
        return _problem(
            404, "Not found", f"No EPCIS resource at {request.url.path}.", "not-found", "NoSuchNameException"
        )
    client: httpx.AsyncClient = request.app.state.clients[name]
    query = request.scope.get("query_string", b"")
    url = httpx.URL(path=path, query=query)
    has_body = request.method not in ("GET", "HEAD", "OPTIONS") or "content-length" in request.headers
    upstream_request = client.build_request(
        request.method,
        url,
        headers=_forward_headers(request),
        content=request.stream() if has_body else None,
    )
    try:
        answer = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException:
        return _problem(
            504, "Gateway timeout", f"The {name} service did not answer in time; retry.", "upstream-timeout"
        )
    except httpx.HTTPError as exc:
        log.warning("gateway: %s unreachable (%s)", name, exc.__class__.__name__)
        return _problem(
            502, "Bad gateway", f"The {name} service is unreachable; retry shortly.", "upstream-unavailable"
        )
    headers = [(k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
    response = StreamingResponse(
        answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = headers  # exactly the service's headers (content-length and encoding included)
    return response


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when every service behind it answers its own /healthz."""
    checks: dict[str, str] = {}
    for name, client in request.app.state.clients.items():
        try:
            r = await client.get("/healthz", timeout=2)
            checks[name] = "ok" if r.status_code == 200 else f"status {r.status_code}"
        except httpx.HTTPError as exc:
            checks[name] = exc.__class__.__name__
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


def create_app(settings: GatewaySettings | None = None, transports: dict[str, Any] | None = None) -> Starlette:
    """`transports`: per service, an httpx transport to use instead of the network (tests mount ASGI apps)."""
    settings = settings or GatewaySettings()
    upstreams = {"events": settings.events_url, "portal": settings.portal_url}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        limits = httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        )
        app.state.clients = {
            name: httpx.AsyncClient(
                base_url=url,
                timeout=timeout,
                limits=limits,
                transport=(transports or {}).get(name),
                follow_redirects=False,
                trust_env=False,
            )
            for name, url in upstreams.items()
        }
        try:
            yield
        finally:
            for c in app.state.clients.values():
                await c.aclose()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/{path:path}", proxy, methods=METHODS),
    ]

    async def unrouted(request: Request, exc: Exception) -> Response:
        # A path no route matches (e.g. one with an encoded newline, which `{path:path}` does not match).
        status = getattr(exc, "status_code", 404)
        return _problem(status, "Not found", "No EPCIS resource at this path.", "not-found", "NoSuchNameException")

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: unrouted, 405: unrouted})
    app.state.settings = settings
    return app


def app() -> Starlette:
    """uvicorn factory: `uvicorn --factory services.gateway.app:app`."""
    logging.basicConfig(level=GatewaySettings().log_level)
    return create_app()
