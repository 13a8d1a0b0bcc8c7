"""Authorization matrix: every (role, ministry) x every endpoint of every service, generated from the
routes themselves, so a new endpoint without a declared policy fails this test.

"Allowed" means the request gets past authentication and authorization: 2xx, or 404/409/422 for the
dummy input. Denied means 401 (no token) or 403. Row-level rules are part of the policy: the fixture
battery was made by LGES, so only LGES (and authorities) pass the ledger's legitimate-interest check."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.portal.app import create_app as create_portal
from services.portal.settings import PortalSettings
from tests.conftest import eventually, serve
from tests.events_helpers import stack

MINISTRIES = ("MOTIE", "MOLIT", "MCEE", "KATS")
ROLES = (
    "manufacturer",
    "oem",
    "inspector",
    "dismantler",
    "collector",
    "assessor",
    "remanufacturer",
    "repurposer",
    "certifier",
    "recycler",
    "operator",
    "admin",
)
PRINCIPALS = ["anonymous", *ROLES, *(f"ministry:{m}" for m in MINISTRIES)]
EVERYONE = set(PRINCIPALS)
AUTHENTICATED = EVERYONE - {"anonymous"}
MINISTRY_ANY = {f"ministry:{m}" for m in MINISTRIES}
AUTHORITY = MINISTRY_ANY | {"certifier", "admin"}
SEES_ALL = AUTHORITY | {"operator"}
EVENT_POSTERS = AUTHENTICATED - {"admin", "operator"}  # role checks per type are in the lifecycle tests

# (service, method, path) -> principals allowed. Internal endpoints (health, metrics, positions) are
# unauthenticated by design and must not be routed from outside the cluster (deploy/README.md).
POLICY: dict[tuple[str, str, str], set[str]] = {
    **{
        (svc, "GET", p): EVERYONE
        for svc in ("registry", "events", "portal")
        for p in ("/healthz", "/readyz", "/metrics", "/v1/ops/positions")
    },
    # Only the services that publish have an outbox.
    **{(svc, "GET", "/v1/ops/outbox"): EVERYONE for svc in ("registry", "events")},
    **{(svc, "GET", "/v1/audit"): {"admin"} for svc in ("registry", "events", "portal")},
    ("registry", "POST", "/v1/participants"): {"admin"},
    ("registry", "POST", "/v1/participants/{participant_id}/suspend"): {"admin"},
    ("registry", "POST", "/v1/participants/{participant_id}/reactivate"): {"admin"},
    ("registry", "GET", "/v1/participants"): AUTHENTICATED,
    ("registry", "GET", "/v1/participants/{participant_id}"): AUTHENTICATED,
    ("registry", "POST", "/v1/models"): {"manufacturer", "admin"},
    ("registry", "GET", "/v1/models/{model_id}"): EVERYONE,
    ("registry", "POST", "/v1/batteries"): {"manufacturer", "admin"},
    ("registry", "GET", "/v1/batteries"): AUTHENTICATED,  # non-authorities see only their own
    ("registry", "POST", "/v1/batteries/bulk"): {"manufacturer", "admin"},
    ("registry", "GET", "/v1/batteries/{battery_id}"): EVERYONE,  # public fields without a token
    ("registry", "POST", "/v1/batteries/{battery_id}/aliases"): {"manufacturer", "oem", "admin"},
    ("registry", "GET", "/v1/resolve"): EVERYONE,
    ("events", "POST", "/v1/events"): AUTHENTICATED,
    ("events", "POST", "/v1/events/batch"): AUTHENTICATED,
    ("events", "GET", "/v1/batteries/{battery_id}/events"): SEES_ALL | {"manufacturer"},
    ("events", "GET", "/v1/batteries/{battery_id}/state"): SEES_ALL | {"manufacturer"},
    ("events", "GET", "/v1/batteries/{battery_id}/verify"): EVERYONE,
    ("events", "POST", "/epcis/capture"): AUTHENTICATED,
    ("events", "GET", "/epcis/capture/{capture_id}"): AUTHENTICATED,
    ("events", "GET", "/epcis/context/batterytrace.jsonld"): EVERYONE,
    ("portal", "GET", "/v1/batteries/{battery_id}/history"): SEES_ALL | {"manufacturer"},
    ("portal", "GET", "/v1/batteries"): AUTHENTICATED,
    **{("portal", "GET", f"/v1/views/{m.lower()}"): {f"ministry:{m}", "admin"} for m in MINISTRIES},
    ("portal", "GET", "/v1/passports/{battery_id}"): EVERYONE,
    ("portal", "GET", "/v1/passports/{battery_id}/jws"): EVERYONE,
    ("portal", "GET", "/.well-known/jwks.json"): EVERYONE,
    ("portal", "GET", "/epcis/events"): AUTHENTICATED,
    ("portal", "GET", "/epcis/events/{event_id}"): AUTHENTICATED,
    ("portal", "GET", "/v1/ops/consumer"): EVERYONE,
    ("portal", "GET", "/v1/ops/streams"): {"operator", "admin"},
}

SAMPLE = {
    "battery_id": "KR-AUTHZ-1",
    "participant_id": "LGES",
    "model_id": "NCM-PACK-77",
    "capture_id": "00000000-0000-0000-0000-000000000000",
    "event_id": "00000000-0000-0000-0000-000000000000",
}
UI_PREFIX = "/ui"


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, including routers hidden from the OpenAPI document."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for r in routes:
            original = getattr(r, "original_router", None)
            if original is not None:
                walk(original.routes)
            elif isinstance(r, APIRoute):
                for m in r.methods - {"HEAD"}:
                    found.add((m, re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path)))

    walk(app.router.routes)
    return sorted((m, p) for m, p in found if not p.startswith(UI_PREFIX))


def headers_for(principal: str, token) -> dict[str, str]:
    if principal == "anonymous":
        return {}
    if principal.startswith("ministry:"):
        code = principal.split(":")[1]
        return token(code, "ministry", ministry=code)
    org = {"manufacturer": "LGES", "admin": "root", "operator": "ops"}.get(principal, principal.upper())
    return token(org, principal)


@pytest.fixture
async def services(make_settings, token):
    async with stack(make_settings, token, streams=True) as s:
        await s.battery("KR-AUTHZ-1")
        async with serve(create_portal(make_settings(PortalSettings))) as portal:

            async def in_portal() -> bool:
                r = await portal.get("/v1/batteries/KR-AUTHZ-1/history", headers=token("root", "admin"))
                return r.status_code == 200

            await eventually(in_portal, timeout_s=30)
            yield {"registry": s.registry, "events": s.events, "portal": portal}


async def test_every_endpoint_has_a_policy(services) -> None:
    declared = {(svc, m, p) for svc, m, p in POLICY}
    served = {(svc, m, p) for svc, client in services.items() for m, p in api_routes(client.app)}
    assert served - declared == set(), "new endpoints need a line in POLICY"
    assert declared - served == set(), "POLICY names endpoints that no longer exist"


async def test_authorization_matrix(services, token) -> None:
    failures = []
    cells = 0
    for svc, client in services.items():
        for method, path in api_routes(client.app):
            url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "X"), path)
            allowed = POLICY[(svc, method, path)]
            for principal in PRINCIPALS:
                cells += 1
                r = await client.request(
                    method,
                    url,
                    headers=headers_for(principal, token),
                    json={} if method in ("POST", "PUT", "PATCH") else None,
                )
                denied = r.status_code in (401, 403)
                if principal in allowed and (denied or r.status_code >= 500):
                    failures.append(f"{principal} {method} {svc}{path}: expected allowed, got {r.status_code}")
                if principal not in allowed:
                    expected = 401 if principal == "anonymous" else 403
                    if r.status_code != expected:
                        failures.append(f"{principal} {method} {svc}{path}: expected {expected}, got {r.status_code}")
    assert not failures, "\n".join(failures)
    assert cells >= 700  # the matrix's size, reported in the closing note
