"""The EPCIS gateway: one base URL (`/epcis`) for the whole EPCIS 2.0 REST binding, routed in front of the
services as an ingress would (`routes.py`): capture to the events service, queries to the portal. A reverse
proxy and nothing more: requests and answers stream through unchanged (httpx, no buffering), so each service
keeps its own limits, authentication and errors. Hop-by-hop headers are dropped and `X-Forwarded-*` set; a
client's own `X-Forwarded-*` headers are replaced, never passed on.

WebSocket subscriptions (`GET /epcis/queries/{name}/events` upgraded) are proxied too: the gateway opens the same
WebSocket to the service (`websockets`), with the client's headers and subprotocols; a handshake the service
refuses is refused to the client with the service's own status and problem body; once both are open, messages
pass both ways unchanged and a close on either side closes the other with its code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import websockets
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection

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


def _forward_headers(request: HTTPConnection) -> list[tuple[bytes, bytes]]:
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


#: WebSocket handshake headers the client library sets itself for the upstream connection (plus hop-by-hop).
WS_OWN = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
}


async def ws_proxy(websocket: WebSocket) -> None:
    raw_path: bytes = websocket.scope.get("raw_path") or websocket.url.path.encode()
    path = raw_path.decode("latin-1")
    name = upstream_of(path)
    if name is None:
        problem = _problem(
            404, "Not found", f"No EPCIS resource at {websocket.url.path}.", "not-found", "NoSuchNameException"
        )
        await websocket.send_denial_response(problem)
        return
    base: str = websocket.app.state.ws_bases[name]
    query = websocket.scope.get("query_string", b"").decode("latin-1")
    url = base + path + (f"?{query}" if query else "")
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in _forward_headers(websocket)
        if k.decode("latin-1").lower() not in WS_OWN
    ]
    settings: GatewaySettings = websocket.app.state.settings
    try:
        upstream = await websockets.connect(
            url,
            additional_headers=headers,
            subprotocols=websocket.scope.get("subprotocols") or None,
            open_timeout=settings.connect_timeout_s,
            max_size=settings.websocket_max_message_bytes,
            compression=None,
            proxy=None,
            user_agent_header=None,
        )
    except websockets.InvalidStatus as exc:  # the service refused the handshake: its answer, as it gave it
        answer = exc.response
        kept = {
            k: v
            for k, v in answer.headers.raw_items()
            if k.lower() in ("content-type", "www-authenticate", "retry-after")
        }
        await websocket.send_denial_response(
            Response(bytes(answer.body or b""), status_code=answer.status_code, headers=kept)
        )
        return
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        log.warning("gateway: %s WebSocket unreachable (%s)", name, exc.__class__.__name__)
        await websocket.send_denial_response(
            _problem(502, "Bad gateway", f"The {name} service is unreachable; retry shortly.", "upstream-unavailable")
        )
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream)


async def _pump(client: WebSocket, upstream: ClientConnection) -> None:
    """Messages both ways until one side closes; then the other is closed with that side's code."""

    async def down() -> None:  # service → client
        try:
            async for message in upstream:
                if isinstance(message, str):
                    await client.send_text(message)
                else:
                    await client.send_bytes(message)
        except websockets.ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await client.close(code=1011 if code == 1006 else code, reason=upstream.close_reason or "")

    async def up() -> None:  # client → service
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000) or 1000, reason=message.get("reason") or "")
                return
            data = message.get("text") if message.get("text") is not None else message.get("bytes")
            if data is not None:
                await upstream.send(data)

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
    ws_bases = {name: "ws" + url.removeprefix("http").rstrip("/") for name, url in upstreams.items()}

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
        WebSocketRoute("/{path:path}", ws_proxy),
    ]

    async def unrouted(request: Request, exc: Exception) -> Response:
        # A path no route matches (e.g. one with an encoded newline, which `{path:path}` does not match).
        status = getattr(exc, "status_code", 404)
        return _problem(status, "Not found", "No EPCIS resource at this path.", "not-found", "NoSuchNameException")

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: unrouted, 405: unrouted})
    app.state.settings = settings
    app.state.ws_bases = ws_bases
    return app


def app() -> Starlette:
    """uvicorn factory: `uvicorn --factory services.gateway.app:app`."""
    logging.basicConfig(level=GatewaySettings().log_level)
    return create_app()
