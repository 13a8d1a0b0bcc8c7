"""Hardening: tokens, body size and rate limits, pagination caps."""

from __future__ import annotations

import asyncio
import base64
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.registry.app import create_app as create_registry
from services.registry.settings import RegistrySettings
from shared.limits import RateLimiter
from tests.conftest import serve


def _claims(**over):
    now = int(time.time())
    return {
        "sub": "LGES:manufacturer",
        "org": "LGES",
        "role": "manufacturer",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
        "aud": "batterytrace",
        "iss": "batterytrace",
    } | over


def _sign(infra, claims, alg="EdDSA", key=None):
    key = key or serialization.load_pem_private_key(infra.private_key, None)
    return jwt.encode(claims, key, algorithm=alg)


def _b64(d: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-issuer",
        "alg-none",
        "hs256-with-public-key",
        "tampered-signature",
        "tampered-claims",
        "other-key",
        "no-role",
        "garbage",
    ],
)
async def test_bad_tokens_are_401(registry, infra, case) -> None:
    now = int(time.time())
    if case == "expired":
        token = _sign(infra, _claims(exp=now - 10))
    elif case == "not-yet-valid":
        token = _sign(infra, _claims(nbf=now + 600))
    elif case == "wrong-audience":
        token = _sign(infra, _claims(aud="someone-else"))
    elif case == "wrong-issuer":
        token = _sign(infra, _claims(iss="evil"))
    elif case == "alg-none":
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    elif case == "hs256-with-public-key":
        public = infra.public_key.read_bytes()
        token = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
        import hashlib
        import hmac

        sig = hmac.new(public, token.encode(), hashlib.sha256).digest()
        token += "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    elif case == "tampered-signature":
        good = _sign(infra, _claims())
        token = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    elif case == "tampered-claims":
        head, _, sig = _sign(infra, _claims()).split(".")
        token = f"{head}.{_b64(_claims(role='admin'))}.{sig}"
    elif case == "other-key":
        token = _sign(infra, _claims(), key=Ed25519PrivateKey.generate())
    elif case == "no-role":
        claims = _claims()
        del claims["role"]
        token = _sign(infra, claims)
    else:
        token = "not-a-token"
    r = await registry.get("/v1/participants", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, (case, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers.get("www-authenticate") == "Bearer"


async def test_a_good_token_passes(registry, infra) -> None:
    r = await registry.get("/v1/participants", headers={"Authorization": f"Bearer {_sign(infra, _claims())}"})
    assert r.status_code == 200


async def test_body_size_limit_is_413(make_settings, token) -> None:
    async with serve(create_registry(make_settings(RegistrySettings, max_body_bytes=4096))) as client:
        big = {"batteries": [{"id": f"KR-{i}", "pad": "x" * 100} for i in range(100)]}
        r = await client.post("/v1/batteries/bulk", json=big, headers=token("LGES", "manufacturer"))
        assert r.status_code == 413 and r.json()["code"] == "payload-too-large"

        async def chunks():  # no Content-Length: the limit holds while streaming too
            for _ in range(10):
                yield b"x" * 1024

        r = await client.post("/v1/batteries/bulk", content=chunks(), headers=token("LGES", "manufacturer"))
        assert r.status_code == 413


class ManualClock:
    """A monotonic clock the test moves by hand: the rate limiter's refill no longer depends on how fast
    this machine serves a burst (under CPU load 40 concurrent requests took 0.5 s, which refilled 2 tokens)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_refills_by_elapsed_time_up_to_the_burst() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=5, burst=10, clock=clock)
    assert [limiter.take("org:A") for _ in range(10)] == [0.0] * 10
    assert limiter.take("org:A") == pytest.approx(0.2)  # one token comes back in 1/rate s
    clock.now += 0.1
    assert limiter.take("org:A") == pytest.approx(0.1)  # half a token is not a request
    clock.now += 0.1
    assert limiter.take("org:A") == 0.0 and limiter.take("org:A") > 0
    clock.now += 3600  # a long pause refills to the burst, never beyond
    assert [limiter.take("org:A") for _ in range(10)] == [0.0] * 10 and limiter.take("org:A") > 0
    assert limiter.take("org:B") == 0.0  # another key has its own bucket


async def test_rate_limit_429_per_participant_while_others_proceed(make_settings, token) -> None:
    settings = make_settings(RegistrySettings, rate_limit_per_s=5, rate_limit_burst=10)
    async with serve(create_registry(settings)) as client:
        clock = client.app.state.rate_limiter.clock = ManualClock()  # time stands still during the flood
        flooder, polite = token("FLOOD", "operator"), token("POLITE", "operator")
        flood = await asyncio.gather(*[client.get("/v1/participants", headers=flooder) for _ in range(40)])
        codes = [r.status_code for r in flood]
        assert codes.count(200) == 10 and codes.count(429) == 30, codes
        limited = next(r for r in flood if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1 and limited.json()["code"] == "too-many-requests"
        # The flood spends only the flooder's budget: another participant is served at once.
        others = await asyncio.gather(*[client.get("/v1/participants", headers=polite) for _ in range(5)])
        assert [r.status_code for r in others] == [200] * 5
        assert (await client.get("/healthz")).status_code == 200
        # A second later the flooder has `rate` requests again, and no more.
        clock.now += 1
        again = await asyncio.gather(*[client.get("/v1/participants", headers=flooder) for _ in range(8)])
        assert sorted(r.status_code for r in again) == [200] * 5 + [429] * 3


async def test_pagination_is_capped(registry, token) -> None:
    r = await registry.get("/v1/batteries", params={"limit": 100_000}, headers=token("X", "operator"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit"


async def test_a_cached_token_still_expires(registry, token) -> None:
    headers = token("LGES", "manufacturer", ttl_s=2)
    assert (await registry.get("/v1/participants", headers=headers)).status_code == 200
    await asyncio.sleep(2.5)
    r = await registry.get("/v1/participants", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "token-expired"
