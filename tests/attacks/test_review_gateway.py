"""Attacks on the EPCIS gateway's one rule: only the EPCIS binding's paths under `/epcis` reach a service.

| attack | answer |
|---|---|
| dot segments sent as they are (`curl --path-as-is`): `/epcis/capture/../../v1/events`, encoded `%2e%2e` | 404, no service reached |

httpx (the test client) resolves dot segments before sending, so these requests are sent to the gateway's ASGI app
as a raw HTTP client would put them on the wire: the request line's path as it is, in `raw_path`."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


async def _raw_request(app: Any, method: str, raw_path: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request to the ASGI app with the request line's path exactly `raw_path` (nothing resolved)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gw"), (b"content-type", b"application/json"), (b"content-length", b"2")],
        "client": ("198.51.100.7", 40000),
        "server": ("gw", 80),
        "state": {},
        "app": app,
    }
    sent: list[dict[str, Any]] = []
    bodies = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return bodies.pop(0) if bodies else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("POST", b"/epcis/capture/../../v1/events"),  # the events service's lifecycle API
        ("GET", b"/epcis/events/../../metrics"),  # the portal's Prometheus metrics
        ("GET", b"/epcis/events/../../v1/ops/positions"),
        ("GET", b"/epcis/queries/%2e%2e/%2E%2E/v1/ops/outbox"),
        ("GET", b"/epcis/./capture/../../healthz"),
    ],
)
async def test_dot_segments_never_leave_the_epcis_base(method: str, raw_path: bytes) -> None:
    reached: list[str] = []

    async def upstream(request: Request) -> JSONResponse:
        reached.append(request.scope["raw_path"].decode())
        return JSONResponse({"reached": True})

    service = Starlette(routes=[Route("/{p:path}", upstream, methods=["GET", "POST"])])
    transports = {n: httpx.ASGITransport(app=service) for n in ("events", "portal")}
    app = create_app(GatewaySettings(events_url="http://events", portal_url="http://portal"), transports=transports)
    async with app.router.lifespan_context(app):
        status, headers, body = await _raw_request(app, method, raw_path)
        assert status == 404 and headers["content-type"] == "application/problem+json", body
        assert orjson.loads(body)["code"] == "not-found"
        # the same request without the dot segments is routed: the refusal is the rule's, not the request's
        status, _, _ = await _raw_request(app, "GET", b"/epcis/events")
        assert status == 200
    assert reached == ["/epcis/events"]
