"""One test per failure the API fuzzer (tests/test_fuzz.py) found, so that each stays fixed without the fuzzer."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, OperationalError

from services.portal.app import create_app as create_portal
from services.portal.settings import PortalSettings
from shared.problems import install_problem_handlers
from tests.conftest import serve
from tests.events_helpers import stack
from tests.factories import battery_body, create_models, register

PROBLEM = "application/problem+json"


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


async def test_resolve_answers_a_battery_id_with_scheme_battery_id(registry, token) -> None:
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    await register(registry, maker, battery_id="KR-RES-1")
    r = await registry.get("/v1/resolve", params={"alias": "KR-RES-1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"battery_id": "KR-RES-1", "scheme": "battery_id", "value": "KR-RES-1"}


async def test_ledger_reads_of_ids_with_url_characters_are_404_not_500(make_settings, token) -> None:
    async with stack(make_settings, token) as s:
        await s.battery("KR-URL-1")
        admin = token("root", "admin")
        for path in ("%02x", "KR-URL-1%3Fx", "KR-URL-1%23x"):  # a control character; '?' and '#' in the ID
            for leaf in ("state", "events", "verify"):
                r = await s.events.get(f"/v1/batteries/{path}/{leaf}", headers=admin)
                assert r.status_code == 404, (path, leaf, r.text)
                assert r.headers["content-type"] == PROBLEM


async def test_optional_token_is_documented_as_optional(registry, make_settings) -> None:
    registry_doc = registry.app.openapi()
    portal_doc = create_portal(make_settings(PortalSettings)).openapi()
    for doc, path in ((registry_doc, "/v1/batteries/{battery_id}"), (portal_doc, "/v1/passports/{battery_id}")):
        assert {} in doc["paths"][path]["get"]["security"], path
    assert registry_doc["paths"]["/v1/batteries"]["get"]["security"] == [{"HTTPBearer": []}]


async def test_jsonld_context_documents_its_media_type(make_settings, token) -> None:
    async with stack(make_settings, token) as s:
        doc = s.events.app.openapi()
        content = doc["paths"]["/epcis/context/batterytrace.jsonld"]["get"]["responses"]["200"]["content"]
        r = await s.events.get("/epcis/context/batterytrace.jsonld")
        assert r.headers["content-type"].split(";")[0] in content


@pytest.mark.parametrize(
    "params",
    [
        {"since": "not a time"},
        {"since": "2026-01-01T00:00:00"},
        {"cursor": cursor_of("x")},
        {"cursor": cursor_of(2**63)},
    ],
)
async def test_audit_rejects_bad_since_and_cursor_with_422(registry, token, params) -> None:
    r = await registry.get("/v1/audit", params=params, headers=token("root", "admin"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("path", ["/v1/models", "/v1/batteries/bulk"])  # the bulk body is read by our own code
async def test_undecodable_body_is_a_documented_400(registry, token, path) -> None:
    r = await registry.post(
        path,
        content=b"\xf6'\x8d",
        headers={**token("LGES", "manufacturer"), "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    assert "400" in registry.app.openapi()["paths"][path]["post"]["responses"]


async def test_nul_characters_are_422_not_500(registry, token) -> None:
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    r = await registry.post("/v1/batteries", json=battery_body(model_id="NCM\x00"), headers=maker)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    r = await registry.post("/v1/batteries", json=battery_body(serial_number="S\x00"), headers=maker)
    assert r.status_code == 422, r.text
    r = await registry.get("/v1/participants", params={"region": "KR\x00"}, headers=maker)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("path", ["/v1/participants", "/v1/batteries"])
async def test_list_cursors_of_the_wrong_type_are_422(registry, token, path) -> None:
    for value in (5, {"a": 1}, [1]):
        r = await registry.get(path, params={"cursor": cursor_of(value)}, headers=token("root", "admin"))
        assert r.status_code == 422, (value, r.text)
        assert r.headers["content-type"] == PROBLEM


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (DBAPIError("SELECT", {}, _PgError("22021")), 422),  # a NUL character
        (DBAPIError("SELECT", {}, _PgError("22003")), 422),  # numeric value out of range
        (OperationalError("SELECT", {}, _PgError("57P01")), 503),  # the server is shutting down
        (DBAPIError("SELECT", {}, _PgError("42883")), 500),  # our own bad SQL stays a 500
    ],
)
async def test_database_errors_map_to_422_503_or_500(raised, status) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise raised

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM


async def test_times_are_iso_text_not_unix_timestamps(registry, make_settings, token) -> None:
    admin = token("root", "admin")
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    for value in (0, "0"):
        r = await registry.post("/v1/batteries", json=battery_body(manufactured_at=value), headers=maker)
        assert r.status_code == 422, r.text
    assert (await registry.get("/v1/audit", params={"since": "0"}, headers=admin)).status_code == 422
    async with serve(create_portal(make_settings(PortalSettings))) as portal:
        for path, params in (
            ("/v1/batteries/KR-X/history", {"at": "6.103515625e-05"}),
            ("/v1/views/molit", {"from": "0"}),
            ("/epcis/events", {"GE_recordTime": "0"}),
        ):
            r = await portal.get(path, params=params, headers=admin)
            # EPCIS answers the standard's exception: 400 QueryParameterException
            assert r.status_code == (400 if path.startswith("/epcis/") else 422), (path, r.text)
            assert r.headers["content-type"] == PROBLEM
        r = await portal.get("/v1/views/molit", params={"from": "2026-01-01"}, headers=admin)
        assert r.status_code == 200, r.text


async def test_every_endpoint_that_needs_a_token_documents_401_and_403(make_settings) -> None:
    from services.events.app import create_app as create_events
    from services.events.settings import EventsSettings
    from services.registry.app import create_app as create_registry
    from services.registry.settings import RegistrySettings

    apps = (
        create_registry(make_settings(RegistrySettings)),
        create_events(make_settings(EventsSettings)),
        create_portal(make_settings(PortalSettings)),
    )
    for app in apps:
        for path, ops in app.openapi()["paths"].items():
            for method, op in ops.items():
                if op.get("security") and {} not in op["security"]:
                    assert {"401", "403"} <= set(op["responses"]), (app.title, method, path)


async def test_times_before_1990_are_422(registry, token) -> None:
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    r = await registry.post("/v1/batteries", json=battery_body(manufactured_at="0001-01-23T00:01:00Z"), headers=maker)
    assert r.status_code == 422, r.text
    assert "1990" in r.text


def test_ledger_timestamps_have_four_digit_years() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from shared.contract.lifecycle import ts

    assert ts(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05.000000Z"
    # unchanged for every year the ledger holds, so existing hash chains still verify
    now = datetime(2026, 3, 2, 9, 0, 0, 120, tzinfo=timezone(timedelta(hours=9)))
    assert ts(now) == now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") == "2026-03-02T00:00:00.000120Z"
