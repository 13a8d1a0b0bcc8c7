"""JWKS off the request path, against the real test provider process (tests/oidc_provider.py, authlib's
authorization server): its ID tokens are the bearer tokens. The keys are fetched when the app starts and
refreshed in the background; while the provider is stopped, requests with tokens never seen before keep
being verified with the keys held, until the stale bound, after which every token is refused (401
`keys-unavailable`, naming its reason), cached ones included; once the provider is back its new keys are
picked up. A token naming made-up key IDs cannot make the service hammer the provider."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.embedded import free_port, wait_port
from services.portal.ui import oidc
from services.portal.ui.settings import UISettings
from services.registry.app import create_app as create_registry
from services.registry.settings import RegistrySettings
from shared.jwks import KeysUnavailable
from tests.attacks.test_ui import REDIRECT, at_provider
from tests.conftest import eventually, serve

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = {"org": "OPS", "role": "operator"}
#: Fast timings for the test: refresh twice a second, keys usable for 4 s after their last fetch.
FAST = {"jwt_jwks_refresh_s": 0.5, "jwt_jwks_stale_s": 4.0, "jwt_jwks_timeout_s": 1.0}


@dataclass
class Provider:
    issuer: str
    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.oidc_provider", str(self.config)], cwd=ROOT)
        wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@contextmanager
def provider(tmp_path: Path, claims: dict[str, Any]) -> Iterator[Provider]:
    """The test provider as its own process; `stop()` and `start()` it again (a new key each start)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = tmp_path / f"oidc-{port}.json"
    config.write_text(
        json.dumps(
            {
                "port": port,
                "issuer": issuer,
                "client_id": "portal",
                "client_secret": "s3cret",
                "redirect_uri": REDIRECT,
                "user": {"sub": "kim.minji", "password": "pw-1234", "claims": claims},
            }
        )
    )
    p = Provider(issuer, config, port)
    p.start()
    try:
        yield p
    finally:
        p.stop()


async def sign_in(issuer: str) -> tuple[str, str]:
    """One authorization-code flow with PKCE at the provider: its ID token, and the nonce it carries."""
    verifier, nonce = generate_token(64), generate_token(32)
    async with AsyncOAuth2Client(
        client_id="portal",
        client_secret="s3cret",
        token_endpoint_auth_method="client_secret_basic",
        scope="openid profile",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
    ) as client:
        url, _ = client.create_authorization_url(f"{issuer}/authorize", code_verifier=verifier, nonce=nonce)
        answer = await at_provider(url)
        assert answer.status_code == 302, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        token = await client.fetch_token(
            f"{issuer}/token", grant_type="authorization_code", code=code, code_verifier=verifier
        )
    return str(token["id_token"]), nonce


def settings_for(make_settings: Callable[..., Any], issuer: str, **kw: Any) -> RegistrySettings:
    """The registry verifying the provider's ID tokens as bearer tokens."""
    return make_settings(  # type: ignore[no-any-return]
        RegistrySettings,
        relay_enabled=False,
        jwt_public_key_file=None,
        jwt_jwks_url=f"{issuer}/jwks",
        jwt_issuer=issuer,
        jwt_audience="portal",
        **(FAST | kw),
    )


async def read(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/participants", headers={"Authorization": f"Bearer {token}"})


def assert_refused(r: httpx.Response, reason: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert (body["code"], body["reason"]) == ("keys-unavailable", reason), body
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_requests_keep_working_while_the_provider_is_down_and_fail_cleanly_after_the_bound(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    with provider(tmp_path, OPERATOR) as p:
        tokens = [(await sign_in(p.issuer))[0] for _ in range(4)]
        app = create_registry(settings_for(make_settings, p.issuer))
        async with serve(app) as client:
            jwks = app.state.verifier.jwks
            assert jwks.usable() and jwks.fetches == 1  # fetched when the app started, not by a request
            assert (await read(client, tokens[0])).status_code == 200
            await eventually(lambda: jwks.fetches >= 3, timeout_s=5)  # refreshed in the background
            p.stop()
            await eventually(lambda: jwks.last_error is not None, timeout_s=5)
            # The provider is down: tokens never seen before still verify with the keys held.
            r = await read(client, tokens[1])
            assert r.status_code == 200, r.text
            assert jwks.age_s > FAST["jwt_jwks_refresh_s"] and jwks.usable()
            # Beyond the stale bound: refused, the token verified before (cached) as well as a new one.
            await eventually(lambda: not jwks.usable(), timeout_s=10)
            assert_refused(await read(client, tokens[2]), "keys-stale")
            assert_refused(await read(client, tokens[0]), "keys-stale")
            detail = (await read(client, tokens[2])).json()["detail"]
            assert "4 s" in detail and "cannot be verified" in detail
            # A write is refused the same way, from its headers (IdentityFirst), nothing stored.
            r = await client.post(
                "/v1/models", headers={"Authorization": f"Bearer {tokens[3]}"}, json={"model_id": "X"}
            )
            assert_refused(r, "keys-stale")
            # The provider comes back (with a new key): its new tokens work once the background refresh ran;
            # a token signed by the withdrawn key does not.
            p.start()
            await eventually(lambda: jwks.usable(), timeout_s=10)
            fresh, _ = await sign_in(p.issuer)
            assert (await read(client, fresh)).status_code == 200
            for old in (tokens[3], tokens[0]):  # never seen, and verified (cached) under the withdrawn key
                r = await read(client, old)
                assert r.status_code == 401 and r.json()["reason"] == "signature", r.text


async def test_a_service_started_while_the_provider_is_down_refuses_tokens_cleanly(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    with provider(tmp_path, OPERATOR) as p:
        token, _ = await sign_in(p.issuer)
        p.stop()
        app = create_registry(settings_for(make_settings, p.issuer))
        async with serve(app) as client:  # starts although the provider does not answer
            assert_refused(await read(client, token), "keys-never-fetched")
            p.start()
            await eventually(lambda: app.state.verifier.jwks.usable(), timeout_s=10)
            fresh, _ = await sign_in(p.issuer)
            assert (await read(client, fresh)).status_code == 200


async def test_made_up_key_ids_do_not_make_the_service_fetch_the_jwks_again(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    with provider(tmp_path, OPERATOR) as p:
        # refreshes far apart, so only fetches caused by tokens would count
        app = create_registry(settings_for(make_settings, p.issuer, jwt_jwks_refresh_s=600, jwt_jwks_min_refetch_s=30))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        async with serve(app) as client:
            jwks = app.state.verifier.jwks
            before = jwks.fetches
            for _ in range(20):
                claims = {"sub": "x", "org": "OPS", "role": "operator", "iss": p.issuer, "aud": "portal"}
                forged = jwt.encode(claims | {"iat": 1, "exp": 2**31}, key, "RS256", headers={"kid": uuid.uuid4().hex})
                r = await read(client, forged)
                assert r.status_code == 401 and r.json()["reason"] == "unknown-kid", r.text
            assert jwks.fetches == before  # the last fetch is under min_refetch_s old: none made


async def test_the_portal_sign_in_verifies_id_tokens_with_stale_keys_within_the_bound_only(
    tmp_path: Path,
) -> None:
    settings = UISettings(
        oidc_issuer="http://placeholder",
        oidc_client_id="portal",
        oidc_client_secret="s3cret",
        oidc_redirect_uri=REDIRECT,
        oidc_keys_refresh_s=0.2,
        oidc_keys_stale_s=3.0,
        oidc_timeout_s=1.0,
    )
    with provider(tmp_path, OPERATOR) as p:
        settings = settings.model_copy(update={"oidc_issuer": p.issuer})
        meta = await oidc.metadata(settings)
        first, second = [await sign_in(p.issuer) for _ in range(2)]
        assert (await oidc.verify_id_token(settings, meta, *first))["org"] == "OPS"
        p.stop()
        cache = oidc.key_cache(settings, meta)
        await eventually(lambda: cache.age_s > 1.2, timeout_s=3)  # due a refresh, and one may be tried
        # down, past the refresh interval: the discovery document and the keys held still serve
        assert await oidc.metadata(settings) == meta
        assert (await oidc.verify_id_token(settings, meta, *second))["org"] == "OPS"
        await eventually(lambda: cache.last_error is not None, timeout_s=5)  # the refresh it started failed
        await eventually(lambda: not cache.usable(), timeout_s=6)
        with pytest.raises(KeysUnavailable) as refused:
            await oidc.verify_id_token(settings, meta, *second)
        assert refused.value.status == 401 and refused.value.extra["reason"] == "keys-stale"
