"""Authorization matrix: every (role, ministry) x every endpoint of every service, generated from the
routes themselves, so a new endpoint without a declared policy fails this test.

"Allowed" means the request gets past authentication and authorization: 2xx, or 404/409/422 for the
dummy input. Denied means 401 (no token) or 403. Row-level rules are part of the policy: the fixture
battery was made by LGES, so only LGES (and authorities) pass the ledger's legitimate-interest check.

The relation matrix (issue 12): every role x every relation the ledger can prove (none, manufacturer,
custodian now, custodian before, consignee, poster-only, certifier of it) x every endpoint that shows one
battery (found from the routes) x field group (public, certification, condition, commercial): whether that
group is shown, asserted against an expectation written here independently of shared.access."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.portal.app import create_app as create_portal
from services.portal.settings import PortalSettings
from tests.access_world import BATTERY_URI, RELATION_ORGS, access_world, event_list
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
#: Who reads every battery (issue 12: certifiers only what they certified, tests/attacks/test_access.py).
SEES_ALL = MINISTRY_ANY | {"admin", "operator"}
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
    # the model's own manufacturer only (an admin passes the role check, then is not the manufacturer: 403)
    ("registry", "PUT", "/v1/models/{model_id}/passport"): {"manufacturer"},
    ("registry", "POST", "/v1/batteries"): {"manufacturer", "admin"},
    ("registry", "GET", "/v1/batteries"): AUTHENTICATED,  # non-authorities see only their own
    ("registry", "POST", "/v1/batteries/bulk"): {"manufacturer", "admin"},
    ("registry", "GET", "/v1/batteries/{battery_id}"): EVERYONE,  # public fields without a token
    ("registry", "POST", "/v1/batteries/{battery_id}/aliases"): {"manufacturer", "oem", "admin"},
    ("registry", "POST", "/v1/batteries/{battery_id}/amendments"): {"manufacturer", "admin"} | MINISTRY_ANY,
    ("registry", "GET", "/v1/batteries/{battery_id}/amendments"): EVERYONE,  # commercial facts' values: full record
    ("registry", "GET", "/v1/resolve"): EVERYONE,
    ("events", "POST", "/v1/events"): AUTHENTICATED,
    ("events", "POST", "/v1/events/batch"): AUTHENTICATED,
    ("events", "GET", "/v1/batteries/{battery_id}/events"): SEES_ALL | {"manufacturer"},
    ("events", "GET", "/v1/batteries/{battery_id}/state"): SEES_ALL | {"manufacturer"},
    ("events", "GET", "/v1/batteries/{battery_id}/verify"): EVERYONE,
    ("events", "GET", "/v1/batteries/{battery_id}/proof-bundle"): SEES_ALL | {"manufacturer"},
    ("events", "GET", "/v1/log/checkpoint"): EVERYONE,
    ("events", "GET", "/v1/log/key"): EVERYONE,
    ("events", "GET", "/v1/log/proof/inclusion"): EVERYONE,
    ("events", "GET", "/v1/log/proof/consistency"): EVERYONE,
    ("events", "POST", "/v1/log/cosignatures"): MINISTRY_ANY | {"certifier", "admin"},
    ("events", "POST", "/epcis/capture"): AUTHENTICATED,
    ("events", "GET", "/epcis/capture/{capture_id}"): AUTHENTICATED,
    ("events", "GET", "/epcis/capture"): AUTHENTICATED,  # one's own capture jobs
    ("events", "OPTIONS", "/epcis/capture"): EVERYONE,  # GS1 discovery
    ("events", "OPTIONS", "/epcis/capture/{capture_id}"): EVERYONE,
    ("events", "GET", "/epcis/context/batterytrace.jsonld"): EVERYONE,
    ("portal", "GET", "/v1/batteries/{battery_id}/history"): SEES_ALL | {"manufacturer"},
    ("portal", "GET", "/v1/batteries"): AUTHENTICATED,
    **{("portal", "GET", f"/v1/views/{m.lower()}"): {f"ministry:{m}", "admin"} for m in MINISTRIES},
    ("portal", "GET", "/v1/passports/{battery_id}"): EVERYONE,
    ("portal", "GET", "/v1/passports/{battery_id}/jws"): EVERYONE,
    ("portal", "GET", "/v1/passports/{battery_id}/catenax"): EVERYONE,
    ("portal", "GET", "/v1/passports/by-id/{passport_id}"): EVERYONE,
    ("portal", "GET", "/v1/passports/by-id/{passport_id}/catenax"): EVERYONE,
    ("portal", "GET", "/.well-known/jwks.json"): EVERYONE,
    # the GS1 Digital Link resolver and the QR codes: public by design (what a scanned code opens)
    ("portal", "GET", "/01/{gtin}"): EVERYONE,
    ("portal", "GET", "/01/{gtin}/21/{serial}"): EVERYONE,
    ("portal", "GET", "/01/{gtin}/{rest}"): EVERYONE,
    ("portal", "GET", "/.well-known/gs1resolver"): EVERYONE,
    ("portal", "GET", "/v1/batteries/{battery_id}/digital-link/qr.svg"): EVERYONE,
    ("portal", "GET", "/v1/batteries/{battery_id}/digital-link/qr.png"): EVERYONE,
    ("portal", "GET", "/v1/log/checkpoints/latest"): EVERYONE,
    ("portal", "GET", "/epcis/events"): AUTHENTICATED,
    # EPCIS named queries and subscriptions: any signed-in participant, each its own (others' answer 404)
    **{
        ("portal", m, p): AUTHENTICATED
        for m, p in (
            ("GET", "/epcis/queries"),
            ("POST", "/epcis/queries"),
            ("GET", "/epcis/queries/{name}"),
            ("DELETE", "/epcis/queries/{name}"),
            ("GET", "/epcis/queries/{name}/events"),
            ("GET", "/epcis/queries/{name}/subscriptions"),
            ("POST", "/epcis/queries/{name}/subscriptions"),
            ("GET", "/epcis/queries/{name}/subscriptions/{sid}"),
            ("DELETE", "/epcis/queries/{name}/subscriptions/{sid}"),
        )
    },
    ("portal", "GET", "/epcis/events/{event_id}"): AUTHENTICATED,
    ("portal", "GET", "/epcis"): AUTHENTICATED,
    ("portal", "GET", "/epcis/"): AUTHENTICATED,
    ("portal", "GET", "/epcis/eventTypes"): AUTHENTICATED,
    ("portal", "GET", "/epcis/{name}"): AUTHENTICATED,  # EPCs, bizSteps, ... of the events one may read
    ("portal", "GET", "/epcis/{resource}/{value}"): AUTHENTICATED,
    ("portal", "GET", "/epcis/{resource}/{value}/events"): AUTHENTICATED,
    ("portal", "OPTIONS", "/epcis"): EVERYONE,  # GS1 discovery
    ("portal", "OPTIONS", "/epcis/{rest}"): EVERYONE,
    ("portal", "GET", "/v1/ops/consumer"): EVERYONE,
    ("portal", "GET", "/v1/ops/streams"): {"operator", "admin"},
    # vehicles, VINs and recalls (issue 13 items 1 and 8, issue 14 item 3)
    ("portal", "GET", "/v1/vehicles/{vin}"): AUTHENTICATED,  # who may not read a vehicle gets 404, as if unknown
    ("portal", "GET", "/v1/views/molit/recalls"): {"ministry:MOLIT", "admin"},
    ("events", "GET", "/v1/vins/{pseudonym}"): MINISTRY_ANY | {"admin"},
    ("events", "POST", "/v1/vins/{pseudonym}/erasure"): {"admin"},
    ("registry", "POST", "/v1/recalls"): {"ministry:MOLIT", "admin"},
    ("registry", "GET", "/v1/recalls"): AUTHENTICATED,
    ("registry", "GET", "/v1/recalls/{campaign_id}"): AUTHENTICATED,
}

SAMPLE = {
    "battery_id": "KR-AUTHZ-1",
    "participant_id": "LGES",
    "model_id": "NCM-PACK-77",
    "capture_id": "00000000-0000-0000-0000-000000000000",
    "event_id": "00000000-0000-0000-0000-000000000000",
    "vin": "KMHEM41AP6A000001",
    "pseudonym": "0" * 64,
    "campaign_id": "MOLIT-2026-001",
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


async def _checkpointed(events: Any) -> bool:
    return (await events.get("/v1/log/checkpoint")).status_code == 200


@pytest.fixture
async def services(make_settings, token):
    async with stack(make_settings, token, streams=True, log_checkpoint_interval_s=0.2) as s:
        await s.battery("KR-AUTHZ-1")
        # the log's endpoints answer 503 until the first checkpoint is signed
        await eventually(lambda: _checkpointed(s.events), timeout_s=30)
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


# ---- the relation matrix (issue 12) ----

MATRIX_ROLES = (*ROLES, "ministry")
GROUPS = ("public", "certification", "condition", "commercial")
HANDLES = {"manufacturer", "custodian_now", "custodian_before", "consignee"}
LEGITIMATE_ROLES = {"dismantler", "collector", "assessor", "remanufacturer", "repurposer", "recycler"}
#: (service, path) of every GET that shows one battery's data, and how the matrix reads it. A new one must
#: be added here (test_every_battery_endpoint_is_in_the_relation_matrix).
BATTERY_ENDPOINTS = {
    ("registry", "/v1/batteries/{battery_id}"),
    ("registry", "/v1/batteries/{battery_id}/amendments"),
    ("events", "/v1/batteries/{battery_id}/events"),
    ("events", "/v1/batteries/{battery_id}/state"),
    ("events", "/v1/batteries/{battery_id}/proof-bundle"),
    ("portal", "/v1/batteries/{battery_id}/history"),
    ("portal", "/v1/passports/{battery_id}"),
    ("portal", "/v1/passports/{battery_id}/jws"),
    ("portal", "/v1/passports/{battery_id}/catenax"),
    ("portal", "/epcis/events"),  # filtered to the battery's EPC
}
#: Public by design: hashes and sequence numbers only; the QR code of the battery's public Digital Link.
PUBLIC_BATTERY_ENDPOINTS = {
    ("events", "/v1/batteries/{battery_id}/verify"),
    ("portal", "/v1/batteries/{battery_id}/digital-link/qr.svg"),
    ("portal", "/v1/batteries/{battery_id}/digital-link/qr.png"),
}


def expected_groups(role: str, relation: str) -> set[str]:
    """What of a battery a (role, relation) reads, as issue 12 states it."""
    if role in ("ministry", "admin", "operator") or relation == "manufacturer":
        return set(GROUPS)
    if relation in HANDLES:
        return {"public", "certification", "condition"}
    if relation == "certifier" and role == "certifier":
        return {"public", "certification"}
    return {"public"}


def expected_passport_level(role: str, relation: str) -> str:
    if role == "manufacturer" and relation == "manufacturer":
        return "manufacturer"
    if role in ("ministry", "admin"):
        return "authority"
    if (role in LEGITIMATE_ROLES and relation in HANDLES) or (role == "certifier" and relation == "certifier"):
        return "legitimate_interest"
    return "public"


def matrix_token(token, role: str, relation: str) -> dict[str, str]:
    org = RELATION_ORGS[relation]
    return token(org, role, ministry="MOLIT") if role == "ministry" else token(org, role)


def _routes(app: FastAPI) -> set[str]:
    return {p for m, p in api_routes(app) if m == "GET"}


@pytest.fixture
async def relation_world(make_settings, token, infra, topic_prefix):
    async with access_world(make_settings, token, infra, topic_prefix) as world:
        yield world


def _jws_payload(compact: str) -> dict[str, Any]:
    import base64
    import json

    part = compact.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _passport_shown(p: dict[str, Any], serial: str) -> set[str]:
    shown = {"public"}
    ext = p["extensions"]
    if "kr.batterytrace.condition" in ext:
        shown.add("certification")  # the safety inspection result
    if "kr.batterytrace.lifecycle" in ext:
        shown.add("condition")  # custody, incidents
    if "batteryMaterials" in p["aspects"]["materialComposition"] or serial in str(p):
        shown.add("commercial")
    return shown


async def shown_by(world: dict[str, Any], path: str, headers: dict[str, str]) -> set[str] | str:
    """The field groups an endpoint shows of R1 (a string: the answer's status when it is a refusal)."""
    serial = world["serial"]
    if path == "/v1/batteries/{battery_id}":
        r = await world["registry"].get("/v1/batteries/R1", headers=headers)
        body = r.json()
        return {"public"} | ({"commercial"} if "serial_number" in body or "materials_kg" in body else set())
    if path == "/v1/batteries/{battery_id}/amendments":
        if not world.get("amended"):  # R1's material content amended once, by its manufacturer
            body = {"changes": {"materials_kg": {"lithium": 7.9}}, "reason": "re-weighed"}
            made = await world["registry"].post("/v1/batteries/R1/amendments", json=body, headers=world["maker"])
            assert made.status_code == 201, made.text
            world["amended"] = True
        r = await world["registry"].get("/v1/batteries/R1/amendments", headers=headers)
        assert r.status_code == 200, r.text
        changed = {k for a in r.json()["items"] for k in a["changes"]}
        return {"public"} | ({"commercial"} if "materials_kg" in changed else set())
    if path == "/v1/batteries/{battery_id}/history":
        r = await world["portal"].get("/v1/batteries/R1/history", headers=headers)
        if r.status_code != 200:
            return f"{r.status_code} {r.json().get('code')}"
        h = r.json()
        types = {e["type"] for e in h["timeline"]}
        shown = {"public"}
        if "SAFETY_INSPECTED" in types:
            shown.add("certification")
        if "INSTALLED" in types and h["current"]["custodian"] is not None:
            shown.add("condition")
        reg = h["registry"]
        if reg.get("serial_number") is not None or reg.get("materials_kg") is not None or serial in r.text:
            shown.add("commercial")
        return shown
    if path == "/v1/passports/{battery_id}":
        r = await world["portal"].get("/v1/passports/R1", headers=headers)
        return _passport_shown(r.json(), serial)
    if path == "/v1/passports/{battery_id}/jws":
        r = await world["portal"].get("/v1/passports/R1/jws", headers=headers)
        assert r.status_code == 200, r.text
        return _passport_shown(_jws_payload(r.text.strip().strip('"')), serial)
    if path == "/v1/passports/{battery_id}/catenax":
        r = await world["portal"].get("/v1/passports/R1/catenax", headers=headers)
        assert r.status_code == 200, r.text
        cx = r.json()
        shown = {"public"}
        if "dynamic" in cx.get("performance", {}) or "thirdPartyAssurance" in cx.get("conformity", {}):
            shown.add("certification")  # condition and safety certificates: the legitimate-interest level
        if serial in r.text or "composition" in cx.get("materials", {}):
            shown.add("commercial")
        return shown
    if path == "/epcis/events":
        r = await world["portal"].get("/epcis/events", params={"MATCH_anyEPC": BATTERY_URI + "R1"}, headers=headers)
        assert r.status_code == 200, r.text
        text = r.text
        kinds = [str(e) for e in event_list(r.json())]
        shown = {"public"}
        if any("SAFETY_INSPECTED" in k or "safety" in k.lower() for k in kinds):
            shown.add("certification")
        if any("KMHEM41AP6A000009" in k for k in kinds):  # the INSTALLED event by the OEM
            shown.add("condition")
        if serial in text:
            shown.add("commercial")
        return shown
    raise AssertionError(f"no reader for {path}")


async def test_every_battery_endpoint_is_in_the_relation_matrix(services) -> None:
    """Generated from the routes: every GET with a battery in its path is in the matrix or public by design."""
    found = {(svc, p) for svc, client in services.items() for p in _routes(client.app) if "{battery_id}" in p}
    assert found - BATTERY_ENDPOINTS - PUBLIC_BATTERY_ENDPOINTS == set(), "a new battery endpoint needs a reader"
    assert {e for e in BATTERY_ENDPOINTS if "{battery_id}" in e[1]} <= found


async def test_relation_matrix_portal_and_registry(relation_world, token) -> None:
    """role x relation x (registry, history, passports, EPCIS query) x field group."""
    failures = []
    cells = 0
    endpoints = sorted(p for svc, p in BATTERY_ENDPOINTS if svc in ("registry", "portal"))
    for role in MATRIX_ROLES:
        for relation in RELATION_ORGS:
            headers = matrix_token(token, role, relation)
            groups = expected_groups(role, relation)
            for path in endpoints:
                shown = await shown_by(relation_world, path, headers)
                if path == "/v1/passports/{battery_id}/catenax":  # no lifecycle extension in the aspect
                    level = expected_passport_level(role, relation)
                    want = {"public"}
                    if level != "public":
                        want.add("certification")
                    if level in ("authority", "manufacturer"):
                        want.add("commercial")
                elif path.startswith("/v1/passports"):
                    level = expected_passport_level(role, relation)
                    want = {"public"}
                    if level != "public":
                        want.add("certification")
                    if level in ("authority", "manufacturer"):
                        want |= {"condition", "commercial"}
                    assert want <= set(GROUPS)
                    if "commercial" in want and "commercial" not in groups:
                        failures.append(f"{role}/{relation}: passport level {level} beyond its field groups")
                elif path in ("/v1/batteries/{battery_id}", "/v1/batteries/{battery_id}/amendments"):
                    want = groups & {"public", "commercial"}
                elif path == "/epcis/events":  # EPCIS events carry no commercial facts
                    want = {"public"} | ({"certification", "condition"} if "condition" in groups else set())
                    if relation == "certifier":
                        want.add("certification")  # its own event, which every poster reads back
                else:  # the history: refused without a relation, else its groups
                    want = groups if groups != {"public"} else None  # type: ignore[assignment]
                cells += len(GROUPS)
                if want is None:
                    if shown != "403 not-handled":
                        failures.append(f"{role}/{relation} {path}: expected 403 not-handled, got {shown}")
                elif shown != want:
                    failures.append(f"{role}/{relation} {path}: expected {sorted(want)}, got {shown}")
    assert not failures, "\n".join(failures)
    assert cells == len(MATRIX_ROLES) * len(RELATION_ORGS) * len(endpoints) * len(GROUPS)


#: The ledger's organisations for the same relations (tests.events_helpers.ORGS; the consignee is named by
#: an appended REMOVED-style row, as the custody rules' `data.consignee` records it).
LEDGER_RELATION_ORGS = {
    "none": "SDI",
    "manufacturer": "LGES",
    "custodian_now": "REPUR-1",
    "custodian_before": "HMC",
    "consignee": "COL-7",
    "poster_only": "KOTSA",
    "certifier": "KTL",
}


async def test_relation_matrix_ledger(make_settings, token, db_url) -> None:
    """role x relation x (ledger timeline, state) x field group, on a battery walked through the API."""
    import asyncpg

    from shared.db import asyncpg_dsn
    from tests.test_events_lifecycle import reach

    async with stack(make_settings, token, log_checkpoint_interval_s=0.2) as s:
        bid = await reach(s, "repurposed")  # LGES -> HMC (installed) -> ... -> REPUR-1; KTL certified it
        await s.ok(bid, "INCIDENT", "inspector")  # KOTSA
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            await conn.execute(
                "INSERT INTO events.ledger (battery_id, sequence, event_id, type, occurred_at, recorded_at, actor, "
                "actor_role, location, data, state_after, custodian_after, prev_hash, hash, request_digest) "
                "SELECT battery_id, sequence + 1, gen_random_uuid(), 'INCIDENT', occurred_at, recorded_at, actor, "
                "actor_role, location, jsonb_build_object('kind', 'swelling', 'consignee', 'COL-7'), state_after, "
                "custodian_after, hash, hash, request_digest FROM events.ledger WHERE battery_id = $1 "
                "ORDER BY sequence DESC LIMIT 1",
                bid,
            )
        finally:
            await conn.close()
        await eventually(lambda: _checkpointed(s.events), timeout_s=30)
        failures = []
        cells = 0
        for role in MATRIX_ROLES:
            for relation, org in LEDGER_RELATION_ORGS.items():
                headers = token(org, role, ministry="MOLIT") if role == "ministry" else token(org, role)
                groups = expected_groups(role, relation)
                readable = groups != {"public"}
                timeline = await s.events.get(f"/v1/batteries/{bid}/events", params={"limit": 100}, headers=headers)
                state = await s.events.get(f"/v1/batteries/{bid}/state", headers=headers)
                bundle = await s.events.get(f"/v1/batteries/{bid}/proof-bundle", headers=headers)
                cells += 3 * len(GROUPS)
                if readable and bundle.status_code == 200:
                    bundle_types = [e["event"]["type"] for e in bundle.json()["events"]]
                    timeline_types = [e["type"] for e in timeline.json()["items"]]
                    if bundle_types != timeline_types:  # the bundle shows exactly what the timeline shows
                        failures.append(f"{role}/{relation} bundle shows {bundle_types}, timeline {timeline_types}")
                elif readable:
                    failures.append(f"{role}/{relation} proof-bundle: expected 200, got {bundle.status_code}")
                if not readable:
                    for name, r in (("timeline", timeline), ("state", state), ("proof-bundle", bundle)):
                        if (r.status_code, r.json().get("code")) != (403, "not-handled"):
                            failures.append(f"{role}/{relation} {name}: expected 403, got {r.status_code}")
                    continue
                if timeline.status_code != 200 or state.status_code != 200:
                    failures.append(f"{role}/{relation}: expected 200, got {timeline.status_code}/{state.status_code}")
                    continue
                types = {e["type"] for e in timeline.json()["items"]}
                shown = {"public"} | ({"certification"} if "SAFETY_INSPECTED" in types else set())
                if "INSTALLED" in types:
                    shown.add("condition")
                if "serial_number" in timeline.text or "materials_kg" in timeline.text:
                    shown.add("commercial")
                want = groups - {"commercial"}  # the ledger holds no commercial facts
                if shown != want:
                    failures.append(f"{role}/{relation} timeline: expected {sorted(want)}, got {sorted(shown)}")
        assert not failures, "\n".join(failures)
        assert cells == len(MATRIX_ROLES) * len(LEDGER_RELATION_ORGS) * 3 * len(GROUPS)
