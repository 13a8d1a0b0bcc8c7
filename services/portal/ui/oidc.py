"""Production sign-in: OpenID Connect, authorization code with PKCE (S256), through authlib's client and
joserfc (the same project's JOSE library) against any standard provider.

The provider's endpoints come from its discovery document; the ID token is verified against its JWKS
(signature, `iss`, `aud`, `exp`, `iat`, and the `nonce` this sign-in sent); the participant's org, role and
ministry come from the configured claims. The state, nonce and PKCE verifier of a sign-in in flight live in
a single-use server-side record (`sessions`), keyed by a cookie of the browser that started it.

The discovery document and the JWKS are fetched asynchronously and kept (shared.jwks): refreshed in the
background, used stale within `oidc_keys_stale_s` while the provider does not answer, refused beyond it."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.portal.ui.settings import UISettings
from shared.auth import Ministry, Principal, Role
from shared.jwks import JwksCache
from shared.problems import Forbidden, Problem, Unavailable

ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]


class SignInFailed(Problem):
    status, code, title = 401, "oidc-failed", "Sign-in failed"


@dataclass
class _Provider:
    at: float  # monotonic time the discovery document was fetched
    metadata: dict[str, Any]
    keys: JwksCache[KeySet] | None = None


#: What is known of each provider (by issuer), per event loop (a cache's fetch in flight belongs to one loop).
_providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Provider]] = weakref.WeakKeyDictionary()


def _known() -> dict[str, _Provider]:
    return _providers.setdefault(asyncio.get_running_loop(), {})


def _key_set(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(jwks)  # type: ignore[arg-type]


def _client(settings: UISettings) -> AsyncOAuth2Client:
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return AsyncOAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=settings.oidc_scope,
        redirect_uri=settings.oidc_redirect_uri,
        code_challenge_method="S256",
        timeout=settings.oidc_timeout_s,
    )


async def _get_json(settings: UISettings, url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=settings.oidc_timeout_s) as http:
            r = await http.get(url)
            r.raise_for_status()
            body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"The sign-in provider did not answer: {exc}", code="oidc-unavailable") from None
    if not isinstance(body, dict):
        raise Unavailable("The sign-in provider answered something unexpected.", code="oidc-unavailable")
    return body


async def metadata(settings: UISettings) -> dict[str, Any]:
    """The provider's discovery document: fetched again after `oidc_keys_refresh_s`; while the provider does
    not answer, the one held is used within `oidc_keys_stale_s` of its fetch."""
    issuer = str(settings.oidc_issuer).rstrip("/")
    cached = _known().get(issuer)
    age = time.monotonic() - cached.at if cached else None
    if cached and age is not None and age < settings.oidc_keys_refresh_s:
        return cached.metadata
    try:
        meta = await _get_json(settings, f"{issuer}/.well-known/openid-configuration")
    except Unavailable:
        if cached and age is not None and age <= settings.oidc_keys_stale_s:
            return cached.metadata
        raise
    if str(meta.get("issuer", "")).rstrip("/") != issuer or not all(
        isinstance(meta.get(k), str) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
    ):
        raise Unavailable("The sign-in provider's discovery document does not fit its issuer.", code="oidc-unavailable")
    keys = cached.keys if cached and cached.keys and cached.keys.url == meta["jwks_uri"] else None
    _known()[issuer] = _Provider(time.monotonic(), meta, keys)
    return meta


def key_cache(settings: UISettings, meta: dict[str, Any]) -> JwksCache[KeySet]:
    """The provider's JWKS cache (made on first use; no task of its own: a request due a refresh starts it)."""
    provider = _known()[str(settings.oidc_issuer).rstrip("/")]
    if provider.keys is None:
        provider.keys = JwksCache(
            meta["jwks_uri"],
            _key_set,
            refresh_s=settings.oidc_keys_refresh_s,
            stale_s=settings.oidc_keys_stale_s,
            timeout_s=settings.oidc_timeout_s,
            min_refetch_s=settings.oidc_keys_min_refetch_s,
        )
    return provider.keys


async def _keys(settings: UISettings, meta: dict[str, Any], refresh: bool) -> KeySet:
    """The keys to verify an ID token with (KeysUnavailable, a 401, beyond the stale bound); `refresh`: a
    token did not verify with them, so fetch again if allowed (a provider that rotated its keys)."""
    cache = key_cache(settings, meta)
    if refresh:
        return await cache.refetched() or await cache.keys()
    return await cache.keys()


async def start(settings: UISettings) -> tuple[str, dict[str, str]]:
    """The provider's authorization URL, and what the callback must find again (state, nonce, verifier)."""
    meta = await metadata(settings)
    pending = {"state": generate_token(32), "nonce": generate_token(32), "verifier": generate_token(64)}
    async with _client(settings) as client:
        url, _ = client.create_authorization_url(
            meta["authorization_endpoint"],
            state=pending["state"],
            code_verifier=pending["verifier"],
            nonce=pending["nonce"],
        )
    return url, pending


async def finish(settings: UISettings, pending: dict[str, str], code: str) -> dict[str, Any]:
    """Exchange the code (with the PKCE verifier) and return the verified ID token's claims."""
    meta = await metadata(settings)
    try:
        async with _client(settings) as client:
            token = await client.fetch_token(
                meta["token_endpoint"], grant_type="authorization_code", code=code, code_verifier=pending["verifier"]
            )
    except (OAuthError, httpx.HTTPError, ValueError) as exc:
        raise SignInFailed(f"The provider refused the code: {exc}") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SignInFailed("The provider sent no ID token.")
    return await verify_id_token(settings, meta, id_token, pending["nonce"])


async def verify_id_token(settings: UISettings, meta: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
    for refresh in (False, True):  # the provider may have rotated its keys: read them again once
        try:
            decoded = jwt.decode(id_token, await _keys(settings, meta, refresh), algorithms=ALGORITHMS)
            break
        except JoseError as exc:
            error = exc
        except ValueError as exc:  # a malformed token
            raise SignInFailed(f"The ID token is malformed: {exc}") from None
    else:
        raise SignInFailed(f"The ID token's signature does not verify: {error}")
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": str(settings.oidc_client_id)},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise SignInFailed(f"The ID token's claims do not hold: {exc}") from None
    aud = decoded.claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and decoded.claims.get("azp") != settings.oidc_client_id:
        raise SignInFailed("The ID token was issued to another client.")
    return dict(decoded.claims)


def _one(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else ""


def principal_from(settings: UISettings, claims: dict[str, Any], org_pattern: Any) -> Principal:
    """The participant the configured claims name; claims that name none is 403 `oidc-claims`."""
    org, role, ministry = (
        _one(claims.get(settings.oidc_org_claim)).strip(),
        _one(claims.get(settings.oidc_role_claim)),
        _one(claims.get(settings.oidc_ministry_claim)) or None,
    )
    refused = Forbidden("The account carries no valid role, org or ministry.", code="oidc-claims")
    try:
        p = Principal(
            org=org, role=Role(role), ministry=Ministry(ministry) if ministry else None, subject=str(claims["sub"])
        )
    except (ValueError, KeyError):
        raise refused from None
    if not org_pattern.match(org) or (p.role is Role.ministry) != (p.ministry is not None):
        raise refused
    return p
