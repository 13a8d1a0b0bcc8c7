"""The EPCIS gateway: one base URL routed as an ingress would (capture → events, queries → portal), requests and
answers passed through unchanged; a path the binding does not define never reaches a service; a client's own
X-Forwarded-* headers are replaced."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway.app import create_app
from services.gateway.routes import BASE, ROUTES, upstream_of
from services.gateway.settings import GatewaySettings
from tests.conftest import eventually
from tests.events_helpers import stack
from tests.portal_helpers import portal_app, portal_settings
from tests.test_epcis_capture import battery, doc, obj


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/epcis/capture", "events"),
        ("/epcis/capture/8c1d0f0e-3b1e-4a57-9a57-0d9f5f2f1a11", "events"),
        ("/epcis/context/batterytrace.jsonld", "events"),
        ("/epcis", "portal"),
        ("/epcis/", "portal"),
        ("/epcis/events", "portal"),
        ("/epcis/events/urn%3Auuid%3A1", "portal"),
        ("/epcis/eventTypes/ObjectEvent/events", "portal"),
        ("/epcis/epcs/urn%3Aepc%3Aid%3Asgtin%3A1.2.3/events", "portal"),
        ("/epcis/bizSteps/shipping/events", "portal"),
        ("/epcis/bizLocations/x/events", "portal"),
        ("/epcis/readPoints/x/events", "portal"),
        ("/epcis/dispositions/active/events", "portal"),
        ("/epcis/queries", "portal"),
        ("/epcis/queries/q1/subscriptions", "portal"),
        ("/epcis/nextPageToken/abc", "portal"),
        ("/epcis/captures", None),
        ("/epcis//capture", None),
        ("/epcis/capture/../../v1/events", None),  # dot segments: the client would resolve them to /v1/events
        ("/epcis/events/%2E%2E/%2e%2e/metrics", None),
        ("/epcis/../epcis/capture", None),
        ("/epcis/./capture", None),
        ("/epcis/events/..", None),
        ("/epcisx/capture", None),
        ("/v1/events", None),
        ("/", None),
    ],
)
def test_routes(path: str, service: str | None) -> None:
    assert upstream_of(path) == service


def test_every_route_goes_to_a_known_service() -> None:
    assert set(ROUTES.values()) == {"events", "portal"}


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": {k: v for k, v in request.headers.items()},
            "body": body.decode(),
        },
        headers={"x-upstream": "echo", "connection": "close-me"},
    )


@contextlib.asynccontextmanager
async def gateway(transports: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(events_url="http://events", portal_url="http://portal"), transports=transports)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            yield client


async def test_requests_pass_through_unchanged_with_forwarded_headers_replaced() -> None:
    echo = Starlette(routes=[Route("/{p:path}", _echo, methods=["GET", "POST"])])
    transports = {n: httpx.ASGITransport(app=echo) for n in ("events", "portal")}
    async with gateway(transports) as gw:
        r = await gw.post(
            "/epcis/capture?x=1&x=2",
            content=b'{"a": 1}',
            headers={"x-forwarded-for": "6.6.6.6", "authorization": "Bearer t", "content-type": "application/json"},
        )
        assert r.status_code == 200 and r.headers["x-upstream"] == "echo"
        assert "connection" not in r.headers or r.headers["connection"] != "close-me"
        seen = r.json()
        assert seen["path"] == "/epcis/capture" and seen["query"] == "x=1&x=2" and seen["body"] == '{"a": 1}'
        assert seen["headers"]["authorization"] == "Bearer t"
        assert seen["headers"]["x-forwarded-for"] != "6.6.6.6"
        assert seen["headers"]["content-length"] == "8"
        r = await gw.get("/epcis/epcs/urn%3Aepc%3Aid%3Asgtin%3A1.2.3/events")
        assert r.json()["path"] == "/epcis/epcs/urn%3Aepc%3Aid%3Asgtin%3A1.2.3/events"  # encoding kept


async def test_unrouted_path_is_404_problem_and_reaches_no_service() -> None:
    calls: list[str] = []

    async def count(request: Request) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({})

    app = Starlette(routes=[Route("/{p:path}", count, methods=["GET", "POST", "DELETE"])])
    async with gateway({n: httpx.ASGITransport(app=app) for n in ("events", "portal")}) as gw:
        for path in ("/v1/events", "/epcis/admin", "/epcis//capture", "/", "/epcis/events/a%0Ab"):
            r = await gw.get(path)
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", path
    assert calls == []


async def test_a_service_that_is_down_is_a_502_problem() -> None:
    app = create_app(GatewaySettings(events_url="http://127.0.0.1:9", portal_url="http://127.0.0.1:9"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
            r = await gw.get("/epcis/events")
            assert r.status_code == 502 and r.json()["code"] == "upstream-unavailable"
            r = await gw.get("/readyz")
            assert r.status_code == 503 and set(r.json()["checks"]) == {"events", "portal"}


async def test_capture_and_query_under_one_base(make_settings, token) -> None:
    """A standard client's round trip through the gateway: capture (events), the capture job by its Location,
    then the event from the query (portal), all under http://gw/epcis."""
    async with (
        stack(make_settings, token, streams=True) as s,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        transports = {"events": httpx.ASGITransport(app=s.events.app), "portal": httpx.ASGITransport(app=portal.app)}  # type: ignore[attr-defined]
        async with gateway(transports) as gw:
            bid = await s.battery()
            ev = obj([battery(bid)], None, "2026-11-02T10:30:00+09:00")
            headers = s.as_role("manufacturer")
            r = await gw.post(
                "/epcis/capture", content=orjson.dumps(doc(ev)), headers=headers | {"content-type": "application/json"}
            )
            assert r.status_code == 202, r.text
            location = r.headers["location"]
            assert location.startswith("/epcis/capture/")
            job = await gw.get(location, headers=headers)
            assert job.status_code == 200 and job.json()["success"], job.text

            async def found() -> bool:
                q = await gw.get("/epcis/events", params={"EQ_eventID": ev["eventID"]}, headers=headers)
                found = (
                    q.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"] if q.status_code == 200 else []
                )
                return [e["eventID"] for e in found] == [ev["eventID"]]

            await eventually(found, timeout_s=30)


DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _ingress_table() -> dict[str, str]:
    (ingress,) = [
        d for d in yaml.safe_load_all((DEPLOY / "k8s/base/ingress.yaml").read_text()) if d["kind"] == "Ingress"
    ]
    out: dict[str, str] = {}
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            first = p["path"][len(BASE) :].lstrip("/")
            assert p["pathType"] == ("Exact" if first == "" else "Prefix"), p
            out[first] = p["backend"]["service"]["name"]
    return out


def _nginx_table() -> dict[str, str]:
    text = (DEPLOY / "ingress/epcis.nginx.conf").read_text()
    out: dict[str, str] = {}
    for m in re.finditer(r"location ~ \^/epcis/\(([\w|]+)\)\(/\|\$\) \{\s*proxy_pass http://(\w+):8000;", text):
        out.update(dict.fromkeys(m[1].split("|"), m[2]))
    for m in re.finditer(r"location = /epcis/? \{ proxy_pass http://(\w+):8000; \}", text):
        out[""] = m[1]
    return out


def test_k8s_ingress_and_compose_proxy_route_the_gateways_table() -> None:
    assert _ingress_table() == ROUTES
    assert _nginx_table() == ROUTES
