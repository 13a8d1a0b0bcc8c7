"""Attacks at the edge: identity before bodies, body sizes, token shapes, rate limits.

| attack | before | now |
|---|---|---|
| unauthenticated write with a large body | body read and parsed, then 401 (two 12 MB bodies: about +250 MB) | 401 from the headers; not one body chunk is read |
| forged token on a write | body read and parsed, then 401 | 401 naming the reason; the body is never read |
| body just over a small endpoint's legal size | accepted up to 32 MiB on every endpoint | 413 above twice the route's largest legal body |
| RS256 / ES256 header on the Ed25519 key | 500 | 401 `invalid-token`, reason `algorithm-not-allowed` |
| alg none, HS256 with the public key as secret | 401 | 401, reason `algorithm-not-allowed` |
| unknown `kid` (JWKS) | 401 (refetch per token) | 401, reason `unknown-kid` |
| garbage base64, a non-object header, a huge header | 401 or (huge) verified at any size | 401, reason `malformed` (over 8,192 chars refused undecoded) |
| missing or non-string claims (exp, sub, org, role) | 401 or 500 (`org` of any type) | 401, reason `claims` |
| expired, not yet valid, wrong audience, wrong issuer | 401 | 401, reasons `expired`, `not-yet-valid`, `audience`, `issuer` |
| a bad token in the UI's session cookie | 500 for an algorithm the key cannot verify | the sign-in page (401), never 500 |
| forged tokens naming a ministry's org flood the API | the ministry's budget spent (429 for the ministry) | charged to the forger's address; the ministry is served |
| many distinct callers fill the rate limiter | every bucket reset at 100,000 keys | the least recently used bucket evicted; a limited caller stays limited |
| several clients flood the events service with the largest legal bodies | memory grew with every body in flight | at most `large_bodies_in_flight` read at once: RSS under the bound in the README, small events served |
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.events.lifecycle.router import BATCH_EVENT_BYTES, BATCH_MAX_EVENTS, EVENT_BYTES
from services.registry.app import create_app as create_registry
from services.registry.batteries.router import BATTERY_BYTES, BULK_BATTERY_BYTES, BULK_MAX_BATTERIES
from services.registry.settings import RegistrySettings
from shared.auth import MAX_TOKEN_CHARS
from shared.limits import RateLimiter
from tests.conftest import serve
from tests.events_helpers import stack
from tests.factories import battery_body
from tests.portal_helpers import portal_app, portal_settings
from tests.test_security import _claims

PROBLEM = "application/problem+json"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _j(d: Any) -> str:
    return _b64(orjson.dumps(d))


def _key(infra: Any) -> Any:
    return serialization.load_pem_private_key(infra.private_key, None)


def _without(claim: str) -> dict[str, Any]:
    c = _claims()
    del c[claim]
    return c


def forged_token(infra: Any, case: str) -> str:
    """A token the way an attacker shapes it."""
    key, now = _key(infra), int(time.time())
    if case == "alg-none":
        return f"{_j({'alg': 'none', 'typ': 'JWT'})}.{_j(_claims(role='admin'))}."
    if case == "hs256-public-key-as-secret":
        signing = f"{_j({'alg': 'HS256', 'typ': 'JWT'})}.{_j(_claims(role='admin'))}"
        sig = hmac.new(infra.public_key.read_bytes(), signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(sig)}"
    if case == "rs256-header-on-ed25519-key":
        return jwt.encode(_claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    if case == "es256-header-on-ed25519-key":
        return jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), "ES256")
    if case == "alg-not-a-string":
        return f"{_j({'alg': 5, 'typ': 'JWT'})}.{_j(_claims())}.{_b64(b'sig')}"
    if case == "garbage-base64":
        return "!!!.@@@.###"
    if case == "header-not-an-object":
        return f"{_b64(b'[1, 2]')}.{_j(_claims())}.{_b64(b'sig')}"
    if case == "header-not-json":
        return f"{_b64(b'{alg')}.{_j(_claims())}.{_b64(b'sig')}"
    if case == "huge-header":
        return jwt.encode(_claims(), key, "EdDSA", headers={"pad": "A" * 20_000})
    if case == "other-key":
        return jwt.encode(_claims(), Ed25519PrivateKey.generate(), "EdDSA")
    if case.startswith("missing-"):
        return jwt.encode(_without(case.removeprefix("missing-")), key, "EdDSA")
    if case == "org-not-a-string":
        return jwt.encode(_claims(org={"id": "LGES"}), key, "EdDSA")
    if case == "role-unknown":
        return jwt.encode(_claims(role="superuser"), key, "EdDSA")
    if case == "exp-not-a-number":
        return jwt.encode(_claims(exp="tomorrow"), key, "EdDSA")
    if case == "expired":
        return jwt.encode(_claims(exp=now - 10), key, "EdDSA")
    if case == "not-yet-valid":
        return jwt.encode(_claims(nbf=now + 600), key, "EdDSA")
    if case == "wrong-audience":
        return jwt.encode(_claims(aud="someone-else"), key, "EdDSA")
    if case == "wrong-issuer":
        return jwt.encode(_claims(iss="evil"), key, "EdDSA")
    raise AssertionError(case)


#: Each attack and the reason the 401 names.
TOKEN_ATTACKS = {
    "alg-none": "algorithm-not-allowed",
    "hs256-public-key-as-secret": "algorithm-not-allowed",
    "rs256-header-on-ed25519-key": "algorithm-not-allowed",
    "es256-header-on-ed25519-key": "algorithm-not-allowed",
    "alg-not-a-string": "algorithm-not-allowed",
    "garbage-base64": "malformed",
    "header-not-an-object": "malformed",
    "header-not-json": "malformed",
    "huge-header": "malformed",
    "other-key": "signature",
    "missing-exp": "claims",
    "missing-sub": "claims",
    "missing-iat": "claims",
    "missing-org": "claims",
    "missing-role": "claims",
    "org-not-a-string": "claims",
    "role-unknown": "claims",
    "exp-not-a-number": "malformed",
    "expired": "expired",
    "not-yet-valid": "not-yet-valid",
    "wrong-audience": "audience",
    "wrong-issuer": "issuer",
}


class CountingBody:
    """A request body that counts how many of its chunks the server pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b" " * self.size


def assert_401(r: Any, reason: str | None, context: Any) -> None:
    assert r.status_code == 401, (context, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), context
    assert r.headers.get("www-authenticate") == "Bearer", context
    body = r.json()
    assert body["code"] in ("invalid-token", "token-expired", "unauthorized"), (context, body)
    if reason is not None:
        assert body.get("reason") == reason, (context, body)


@pytest.fixture
async def registry_app(make_settings: Any) -> AsyncIterator[Any]:
    async with serve(create_registry(make_settings(RegistrySettings, relay_enabled=False))) as client:
        yield client


# ---- tokens ----


async def test_every_token_shape_an_attacker_can_send_is_401_naming_its_reason(infra: Any, registry_app: Any) -> None:
    for case, reason in TOKEN_ATTACKS.items():
        headers = {"Authorization": f"Bearer {forged_token(infra, case)}"}
        assert_401(await registry_app.get("/v1/participants", headers=headers), reason, ("read", case))
        body = CountingBody(chunks=64)  # 4 MiB the server must never pull
        r = await registry_app.post(
            "/v1/batteries", content=body, headers=headers | {"content-type": "application/json"}
        )
        assert_401(r, reason, ("write", case))
        assert body.pulled == 0, (case, body.pulled)
    # Nothing was registered by any of them.
    r = await registry_app.get(
        "/v1/batteries",
        headers={"Authorization": f"Bearer {jwt.encode(_claims(role='operator'), _key(infra), 'EdDSA')}"},
    )
    assert r.status_code == 200 and r.json()["items"] == []


async def test_a_token_longer_than_the_cap_is_refused_before_decoding(infra: Any, registry_app: Any) -> None:
    token = forged_token(infra, "huge-header")
    assert len(token) > MAX_TOKEN_CHARS
    r = await registry_app.get("/v1/participants", headers={"Authorization": f"Bearer {token}"})
    assert_401(r, "malformed", "huge")
    assert str(MAX_TOKEN_CHARS) in r.json()["detail"]


@pytest.fixture
def jwks_server(infra: Any) -> Iterator[str]:
    """The infra's public key published as a JWKS under kid "k1" by a real HTTP server."""
    public = serialization.load_pem_public_key(infra.public_key.read_bytes())
    jwk = orjson.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public)) | {"kid": "k1", "alg": "EdDSA", "use": "sig"}
    payload = orjson.dumps({"keys": [jwk]})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


async def test_unknown_or_missing_kid_against_a_jwks_is_401(infra: Any, make_settings: Any, jwks_server: str) -> None:
    settings = make_settings(RegistrySettings, relay_enabled=False, jwt_public_key_file=None, jwt_jwks_url=jwks_server)
    key = _key(infra)
    async with serve(create_registry(settings)) as client:

        async def read(token: str) -> Any:
            return await client.get("/v1/participants", headers={"Authorization": f"Bearer {token}"})

        assert (await read(jwt.encode(_claims(), key, "EdDSA", headers={"kid": "k1"}))).status_code == 200
        assert_401(await read(jwt.encode(_claims(), key, "EdDSA", headers={"kid": "k2"})), "unknown-kid", "k2")
        assert_401(await read(jwt.encode(_claims(), key, "EdDSA")), "unknown-kid", "no kid")
        signing = f"{_j({'alg': 'EdDSA', 'kid': {'x': 1}})}.{_j(_claims())}"
        odd = f"{signing}.{_b64(key.sign(signing.encode()))}"
        assert_401(await read(odd), "malformed", "kid not a string")
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        r = await read(jwt.encode(_claims(), rsa_key, "RS256", headers={"kid": "k1"}))
        assert_401(r, "algorithm-not-allowed", "RS256 on the k1 Ed25519 key")


async def test_a_bad_session_token_on_a_ui_page_is_the_sign_in_page_never_500(infra: Any, make_settings: Any) -> None:
    settings = portal_settings(make_settings, relay_enabled=False, consumers_enabled=False)
    async with portal_app(settings) as portal:
        for case in TOKEN_ATTACKS:
            portal.cookies.set("bt_session", forged_token(infra, case), path="/ui")
            for path in ("/ui/ministry", "/ui/ops", "/ui/batteries/KR-NOPE-1"):
                r = await portal.get(path)
                assert r.status_code in (302, 303, 401), (case, path, r.status_code, r.text[:300])
        portal.cookies.clear()


# ---- identity first, body limits ----


async def test_an_unauthenticated_write_is_401_without_reading_its_body(make_settings: Any, token: Any) -> None:
    async with stack(make_settings, token) as s:
        for path in ("/v1/events", "/v1/events/batch", "/epcis/capture"):
            body = CountingBody(chunks=200)  # 12.5 MiB
            r = await s.events.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM), (path, r.text)
            assert body.pulled == 0, (path, body.pulled)
            r = await s.events.post(path, content=b"{}", headers={"Authorization": "Basic bG9sOmxvbA=="})
            assert_401(r, "malformed", path)
        body = CountingBody(chunks=200)
        r = await s.registry.post("/v1/batteries/bulk", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 401 and body.pulled == 0


async def test_each_endpoint_refuses_bodies_over_twice_its_largest_legal_body(make_settings: Any, token: Any) -> None:
    async with stack(make_settings, token) as s:
        maker, inspector = s.as_role("manufacturer"), s.as_role("inspector")
        bid = await s.battery()
        cases = [
            (s.events, "/v1/events", inspector, 2 * EVENT_BYTES),
            (s.events, "/v1/events/batch", inspector, 2 * BATCH_MAX_EVENTS * BATCH_EVENT_BYTES),
            (s.registry, "/v1/batteries", maker, 2 * BATTERY_BYTES),
            (s.registry, f"/v1/batteries/{bid}/aliases", maker, 4096),
        ]
        for client, path, headers, limit in cases:
            # Declared by Content-Length: refused from the headers.
            r = await client.post(
                path, content=b" " * (limit + 1), headers=headers | {"content-type": "application/json"}
            )
            assert r.status_code == 413 and r.json()["code"] == "payload-too-large", (path, r.text[:300])
            assert r.json()["limit"] == limit
            # Streamed: refused as soon as the limit is passed, the rest never pulled.
            body = CountingBody(chunks=limit // 1024 + 50, size=1024)
            r = await client.post(path, content=body, headers=headers | {"content-type": "application/json"})
            assert r.status_code == 413, (path, r.text[:300])
            assert body.pulled <= limit // 1024 + 2, (path, body.pulled)
        # The single-event limit is far below the batch's: one event cannot be a batch-sized body.
        assert 2 * EVENT_BYTES < 200 * 1024 < 2 * BATCH_MAX_EVENTS * BATCH_EVENT_BYTES
        # Nothing was stored: the battery has only its MANUFACTURED event.
        assert (await s.state(bid))["sequence"] == 1


def largest_incident(battery_id: str) -> dict[str, Any]:
    """The largest ordinary legal event: an INCIDENT with every string at its maximum length."""
    return {
        "event_id": str(uuid.uuid4()),
        "battery_id": battery_id,
        "type": "INCIDENT",
        "occurred_at": datetime.now(UTC).isoformat(),
        "location": {"site": "s" * 128, "region": "r" * 64},
        "data": {"kind": "swelling", "severity": "critical", "description": "d" * 2000},
        "expected_sequence": 2**63 - 1,
    }


def test_the_largest_legal_bodies_fit_their_declared_sizes() -> None:
    """The declared figures are not below what the schemas accept (else a legal body would be 413)."""
    bid = "X" * 24
    error_declared = largest_incident(bid) | {
        "type": "ERROR_DECLARED",
        "data": {
            "declared_event_id": str(uuid.uuid4()),
            "reason": "r" * 256,
            "corrective_event_ids": ["c" * 512] * 100,
        },
    }
    assert len(orjson.dumps(error_declared)) <= EVENT_BYTES
    assert len(orjson.dumps(largest_incident(bid))) <= BATCH_EVENT_BYTES
    batch = {"events": [largest_incident(bid) for _ in range(BATCH_MAX_EVENTS)]}
    assert len(orjson.dumps(batch)) <= BATCH_MAX_EVENTS * BATCH_EVENT_BYTES
    battery = battery_body(battery_id=bid) | {
        "model_id": "m" * 64,
        "serial_number": "s" * 64,
        "manufacturing_site": "울산공장" * 50,
        "materials_kg": {
            k: 1.7976931348623157e308
            for k in ("lithium", "nickel", "cobalt", "manganese", "copper", "aluminium", "graphite", "lead")
        },
        "carbon_footprint_kg_co2e_per_kwh": 1.7976931348623157e308,
    }
    assert len(orjson.dumps(battery)) <= BULK_BATTERY_BYTES
    every_char_escaped = re.sub(
        r'"([^"]*)"',
        lambda m: '"' + "".join(f"\\u{ord(c):04x}" for c in m.group(1)) + '"',
        orjson.dumps(battery).decode(),
    )
    assert len(every_char_escaped.encode()) <= BATTERY_BYTES
    assert len(orjson.dumps({"batteries": [battery] * BULK_MAX_BATTERIES})) <= BULK_MAX_BATTERIES * BULK_BATTERY_BYTES


# ---- rate limits ----


async def test_forged_tokens_naming_a_ministry_do_not_spend_its_budget(
    infra: Any, make_settings: Any, token: Any
) -> None:
    settings = make_settings(RegistrySettings, relay_enabled=False, rate_limit_per_s=1, rate_limit_burst=10)
    forged = jwt.encode(
        _claims(org="MOLIT", role="ministry", ministry="MOLIT", sub="MOLIT"), Ed25519PrivateKey.generate(), "EdDSA"
    )
    async with serve(create_registry(settings)) as client:
        flood = await asyncio.gather(
            *[client.get("/v1/participants", headers={"Authorization": f"Bearer {forged}"}) for _ in range(30)]
        )
        codes = [r.status_code for r in flood]
        assert set(codes) <= {401, 429} and codes.count(429) >= 15, codes
        limited = next(r for r in flood if r.status_code == 429)
        assert "ip:" in limited.json()["detail"] and "MOLIT" not in limited.json()["detail"]
        ministry = token("MOLIT", "ministry", ministry="MOLIT")
        served = await asyncio.gather(*[client.get("/v1/participants", headers=ministry) for _ in range(5)])
        assert [r.status_code for r in served] == [200] * 5


def test_the_rate_limiter_evicts_the_least_recently_used_bucket_never_all() -> None:
    limiter = RateLimiter(rate=0.001, burst=2, max_keys=100)
    assert limiter.take("org:FLOOD") == 0 and limiter.take("org:FLOOD") == 0
    assert limiter.take("org:FLOOD") > 0  # limited
    for i in range(1_000):  # many distinct callers, the limited one keeps calling
        limiter.take(f"ip:10.0.{i // 256}.{i % 256}")
        if i % 50 == 0:
            assert limiter.take("org:FLOOD") > 0, i  # never reset by the others
        assert len(limiter) <= 100
    assert limiter.take("org:FLOOD") > 0


# ---- the flood: real processes, the largest legal bodies ----

#: The bounds the README's "Limits" section documents: while flooded with the largest legal bodies (2 read at
#: once), the events service's resident memory grows by at most this much above its warmed-up level (about
#: 125 MB), and stays under the total; a small event is answered within the latency bound.
FLOOD_RSS_GROWTH_BOUND_MB = 300
FLOOD_RSS_BOUND_MB = 450
FLOOD_SMALL_EVENT_LATENCY_S = 15


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


@pytest.fixture
async def services(infra: Any, db_url: str, topic_prefix: str, token: Any) -> AsyncIterator[Any]:
    from tests.system import System

    sut = System(db_url, infra.kafka.bootstrap, topic_prefix, str(infra.public_key))
    await sut.start("registry", "events")
    try:
        from tests.system import register_participants

        await register_participants(
            sut,
            token,
            [("LGES", "manufacturer"), ("KOTSA", "inspector"), ("WARM", "inspector")]
            + [(f"INSP-{i}", "inspector") for i in range(4)],
        )
        yield sut
    finally:
        sut.stop()


async def test_a_flood_of_the_largest_legal_bodies_keeps_memory_bounded_and_others_served(
    services: Any, token: Any, infra: Any
) -> None:
    import httpx

    from tests.factories import create_models

    async with httpx.AsyncClient(base_url=services.url("registry"), timeout=30) as reg:
        maker = token("LGES", "manufacturer")
        await create_models(reg, maker, "NCM-PACK-77")
        polite_battery = battery_body(battery_id="KR-FLOOD-POLITE")
        assert (await reg.post("/v1/batteries", json=polite_battery, headers=maker)).status_code == 201
    events_url, pid = services.url("events"), services.procs["events"].pid
    # The largest legal batch (about 13 MB): 5,000 INCIDENTs at every maximum length, for a battery nobody
    # registered (refused after it is read and validated: what it costs is the reading).
    big = orjson.dumps({"events": [largest_incident("KR-FLOOD-NONE") for _ in range(BATCH_MAX_EVENTS)]})
    assert len(big) > 12_000_000
    polite_headers = token("KOTSA", "inspector")

    async def polite_event(c: httpx.AsyncClient) -> tuple[int, float]:
        body = {
            "event_id": str(uuid.uuid4()),
            "battery_id": "KR-FLOOD-POLITE",
            "type": "INCIDENT",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"kind": "swelling", "severity": "low"},
        }
        t0 = time.monotonic()
        r = await c.post("/v1/events", json=body, headers=polite_headers)
        return r.status_code, time.monotonic() - t0

    async with httpx.AsyncClient(base_url=events_url, timeout=120) as c:
        for _ in range(3):  # warm up: imports, pools, caches
            assert (await polite_event(c))[0] == 201
        r = await c.post("/v1/events/batch", content=big, headers=token("WARM", "inspector"))
        assert r.status_code in (404, 409, 422), r.text[:300]
        baseline = rss_mb(pid)

    done = asyncio.Event()
    outcomes: list[str] = []
    polite: list[tuple[int, float]] = []
    peak = baseline

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.05)

    async def flooder(headers: dict[str, str], times: int) -> None:
        async with httpx.AsyncClient(base_url=events_url, timeout=180) as fc:
            for _ in range(times):
                try:
                    r = await fc.post(
                        "/v1/events/batch", content=big, headers=headers | {"content-type": "application/json"}
                    )
                    outcomes.append(str(r.status_code))
                except httpx.TransportError as exc:  # refused unread: the server may close mid-upload
                    outcomes.append(type(exc).__name__)

    async def polite_client() -> None:
        async with httpx.AsyncClient(base_url=events_url, timeout=120) as pc:
            while not done.is_set() or len(polite) < 5:  # served throughout, however short the flood
                polite.append(await polite_event(pc))
                await asyncio.sleep(0.05)

    forged = {"Authorization": f"Bearer {jwt.encode(_claims(role='inspector'), Ed25519PrivateKey.generate(), 'EdDSA')}"}
    flooders = [flooder(token(f"INSP-{i}", "inspector"), 2) for i in range(4)]
    flooders += [flooder({}, 3) for _ in range(3)] + [flooder(forged, 3) for _ in range(2)]
    sampler, kind = asyncio.create_task(sample()), asyncio.create_task(polite_client())
    await asyncio.gather(*flooders)
    done.set()
    await asyncio.gather(sampler, kind)
    peak = max(peak, rss_mb(pid))

    growth = peak - baseline
    print(
        f"flood: baseline {baseline:.0f} MB, peak {peak:.0f} MB (+{growth:.0f}), outcomes {sorted(outcomes)}, "
        f"polite {len(polite)} max {max(t for _, t in polite):.2f} s"
    )
    assert growth < FLOOD_RSS_GROWTH_BOUND_MB, (baseline, peak, services.log_tail("events"))
    assert peak < FLOOD_RSS_BOUND_MB, (baseline, peak)
    authenticated = [o for o in outcomes if o in ("404", "409", "422")]
    assert len(authenticated) == 8, outcomes  # every legal big body was read and answered
    assert all(o in ("401", "404", "409", "422", "RemoteProtocolError", "WriteError", "ReadError") for o in outcomes)
    assert outcomes.count("401") >= 1
    assert polite and all(code == 201 for code, _ in polite), polite
    assert max(t for _, t in polite) < FLOOD_SMALL_EVENT_LATENCY_S, polite
    assert len(polite) >= 5
