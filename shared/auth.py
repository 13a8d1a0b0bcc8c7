"""JWT bearer authentication: each service verifies; principals carry org, role and ministry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.access import AUTHORITY, LEGITIMATE_INTEREST, Ministry, Role, is_authority
from shared.participants import check_participant
from shared.problems import Forbidden, Unauthorized
from shared.settings import ServiceSettings

# The roles and their groups are declared with the access rules; importers of this module keep finding them here.
__all__ = [
    "AUTHORITY",
    "LEGITIMATE_INTEREST",
    "OPTIONAL_BEARER",
    "CurrentPrincipal",
    "Ministry",
    "OptionalPrincipal",
    "Principal",
    "Role",
    "TokenVerifier",
    "generate_keypair",
    "mint_token",
    "optional_principal",
    "require_principal",
    "require_role",
]


@dataclass(frozen=True, slots=True)
class Principal:
    org: str
    role: Role
    ministry: Ministry | None = None
    subject: str = ""

    @property
    def is_authority(self) -> bool:
        return is_authority(self)


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        self._cache: dict[str, tuple[Principal, float, float]] = {}
        if settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url)
        elif settings.jwt_public_key:
            self._key = serialization.load_pem_public_key(settings.jwt_public_key.encode())
        elif settings.jwt_public_key_file:
            self._key = serialization.load_pem_public_key(Path(settings.jwt_public_key_file).read_bytes())

    def verify(self, token: str) -> Principal:
        """Verify a token; a token verified before is answered from a small cache until it expires
        (signature checks are a measurable share of a read's CPU)."""
        hit = self._cache.get(token)
        if hit is not None and hit[1] > time.time() and hit[2] <= time.time():
            return hit[0]
        principal, exp, nbf = self._verify(token)
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[token] = (principal, exp, nbf)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float, float]:
        if self._key is None and self._jwks is None:
            raise Unauthorized("This service has no token verification key configured.", code="no-key")
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=self.settings.jwt_algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.", code="token-expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The bearer token is invalid: {exc}.", code="invalid-token") from None
        try:
            role = Role(str(claims.get("role")))
            ministry = Ministry(claims["ministry"]) if claims.get("ministry") else None
            org = str(claims["org"])
        except (KeyError, ValueError):
            raise Unauthorized("The bearer token lacks a valid org or role.", code="invalid-token") from None
        if role is Role.ministry and ministry is None:
            raise Unauthorized("A ministry token must carry a ministry code.", code="invalid-token")
        principal = Principal(org=org, role=role, ministry=ministry, subject=str(claims.get("sub", "")))
        return principal, float(claims["exp"]), float(claims.get("nbf", 0))


_bearer = HTTPBearer(auto_error=False, description="JWT bearer token (`batterytrace token` makes one).")


async def optional_principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    if creds is None:
        if request.headers.get("authorization"):
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.", code="invalid-token")
        return None
    verifier: TokenVerifier = request.app.state.verifier
    principal = verifier.verify(creds.credentials)
    ministry = principal.ministry.value if principal.ministry else None
    await check_participant(request, principal.org, principal.role.value, ministry)  # shared/participants.py
    request.state.principal = principal  # for the audit trail and the logs
    return principal


async def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthorized("This endpoint needs a bearer token.")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
#: `openapi_extra` for routes taking an `OptionalPrincipal`: the token is optional (FastAPI documents it as required).
OPTIONAL_BEARER: dict[str, Any] = {"security": [{}, {"HTTPBearer": []}]}
CurrentPrincipal = Annotated[Principal, Depends(require_principal)]


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits only the given roles (admin always). Use it in an alias:
    `Admin = Annotated[Principal, Depends(require_role(Role.admin))]`."""
    allowed = set(roles) | {Role.admin}

    async def dep(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"Role '{principal.role.value}' may not do this; allowed roles: {names}.")
        return principal

    return dep


# ---- key material and token minting (dev and tests) ----


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Create an Ed25519 key pair under `directory` unless it exists. Returns (private, public)."""
    directory.mkdir(parents=True, exist_ok=True)
    priv, pub = directory / "jwt-private.pem", directory / "jwt-public.pem"
    if not priv.exists() or not pub.exists():
        key = Ed25519PrivateKey.generate()
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        priv.chmod(0o600)
        pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return priv, pub


def mint_token(
    private_key_pem: bytes,
    *,
    org: str,
    role: str,
    ministry: str | None = None,
    ttl_s: int = 12 * 3600,
    audience: str = "batterytrace",
    issuer: str = "batterytrace",
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": f"{org}:{role}",
        "org": org,
        "role": Role(role).value,
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl_s,
        "aud": audience,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
    }
    if ministry:
        claims["ministry"] = Ministry(ministry).value
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return jwt.encode(claims, key, algorithm="EdDSA")  # type: ignore[arg-type]
