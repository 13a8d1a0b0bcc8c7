"""JWT bearer authentication: each service verifies; principals carry org, role and ministry."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from shared import access
from shared.access import AUTHORITY, LEGITIMATE_INTEREST, Ministry, Role, is_authority
from shared.jwks import JwksCache
from shared.participants import check_participant
from shared.problems import Forbidden, Problem, Unauthorized
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
    "principal_of",
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


#: Longest bearer token verified; a longer one is refused before any decoding.
MAX_TOKEN_CHARS = 8192
#: Verified tokens kept (least recently used evicted first).
TOKEN_CACHE_SIZE = 10_000
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}


def algorithms_for(key: Any) -> frozenset[str]:
    """The JWS algorithms a public key can verify: a token naming another is refused before its signature is
    checked (PyJWT fails with a non-JWT error when, say, an RS256 header meets an Ed25519 key)."""
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        return frozenset({"EdDSA"})
    if isinstance(key, RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({alg} if alg else ())
    return frozenset()


def _invalid(detail: str, reason: str) -> Unauthorized:
    return Unauthorized(f"The bearer token is invalid: {detail}", code="invalid-token", reason=reason)


#: A provider's signing keys by key ID.
SigningKeys = dict[str, jwt.PyJWK]


def signing_keys(jwks: dict[str, Any]) -> SigningKeys:
    """The signing keys of a JWKS document that PyJWT can use, by `kid` (keys for encryption and keys without
    an ID are left out, as PyJWT's own client does)."""
    usable = jwt.PyJWKSet.from_dict(jwks).keys
    return {k.key_id: k for k in usable if k.key_id and k.public_key_use in ("sig", None)}


class TokenVerifier:
    """Verifies bearer tokens against one static public key or an OIDC JWKS (shared.jwks: fetched and
    refreshed in the background, used stale within a bound while the provider is down). Every failure is a
    401 problem naming its `reason`; nothing a caller puts in a token can make verification fail otherwise."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._key: Any = None
        self._jwks: JwksCache[SigningKeys] | None = None
        # token -> (principal, exp, nbf, the JWKS generation that verified it)
        self._cache: OrderedDict[str, tuple[Principal, float, float, int]] = OrderedDict()
        if settings.jwt_jwks_url:
            self._jwks = JwksCache(
                settings.jwt_jwks_url,
                signing_keys,
                refresh_s=settings.jwt_jwks_refresh_s,
                stale_s=settings.jwt_jwks_stale_s,
                timeout_s=settings.jwt_jwks_timeout_s,
                min_refetch_s=settings.jwt_jwks_min_refetch_s,
            )
        elif settings.jwt_public_key:
            self._key = serialization.load_pem_public_key(settings.jwt_public_key.encode())
        elif settings.jwt_public_key_file:
            self._key = serialization.load_pem_public_key(Path(settings.jwt_public_key_file).read_bytes())

    @property
    def jwks(self) -> JwksCache[SigningKeys] | None:
        return self._jwks

    async def start(self) -> None:
        """With a JWKS: fetch it and keep it fresh in the background (the app's lifespan)."""
        if self._jwks is not None:
            await self._jwks.start()

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    async def verify(self, token: str) -> Principal:
        """Verify a token; a token verified before is answered from a small cache until it expires
        (signature checks are a measurable share of a read's CPU), while the key set that verified it is the
        one held and may still be used (a provider that withdrew a key withdraws the tokens it signed)."""
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now and hit[2] <= now and self._same_keys(hit[3]):
            self._cache.move_to_end(token)
            return hit[0]
        generation = self._jwks.generation if self._jwks is not None else 0
        principal, exp, nbf = await self._verify(token)
        self._cache[token] = (principal, exp, nbf, generation)
        self._cache.move_to_end(token)
        while len(self._cache) > TOKEN_CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _same_keys(self, generation: int) -> bool:
        return self._jwks is None or (self._jwks.usable() and self._jwks.generation == generation)

    async def _signing_key(self, header: dict[str, Any]) -> tuple[Any, frozenset[str]]:
        """The key that must have signed the token and the algorithms it verifies."""
        if self._jwks is None:
            return self._key, algorithms_for(self._key)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _invalid("its header names no key (`kid`).", "unknown-kid")
        jwk = (await self._jwks.keys()).get(kid)  # KeysUnavailable (401) beyond the stale bound
        if jwk is None:  # the provider may have rotated its keys: fetch again (rate-limited)
            newer = await self._jwks.refetched()
            jwk = newer.get(kid) if newer else None
        if jwk is None:
            raise _invalid(f"no signing key has the ID {kid[:64]!r}.", "unknown-kid")
        allowed = algorithms_for(jwk.key)
        if jwk.algorithm_name:
            allowed &= {jwk.algorithm_name}
        return jwk.key, allowed

    async def _verify(self, token: str) -> tuple[Principal, float, float]:
        if self._key is None and self._jwks is None:
            raise Unauthorized("This service has no token verification key configured.", code="no-key")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid(f"it is longer than {MAX_TOKEN_CHARS} characters.", "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid(f"{exc}.", "malformed") from None
        alg = header.get("alg")
        key, allowed = await self._signing_key(header)
        allowed &= set(self.settings.jwt_algorithms)
        if not isinstance(alg, str) or alg not in allowed:
            raise _invalid(
                f"its algorithm {str(alg)[:32]!r} is not one the key verifies ({', '.join(sorted(allowed))}).",
                "algorithm-not-allowed",
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.", code="token-expired", reason="expired") from None
        except jwt.PyJWTError as exc:
            raise _invalid(f"{exc}.", _reason(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:  # a key or claim shape PyJWT does not wrap
            raise _invalid(f"{exc.__class__.__name__}.", "malformed") from None
        try:
            role = Role(str(claims.get("role")))
            ministry = Ministry(claims["ministry"]) if claims.get("ministry") else None
            org = claims["org"]
            if not isinstance(org, str) or not org or len(org) > 128:
                raise ValueError(org)
        except (KeyError, ValueError, TypeError):
            raise Unauthorized(
                "The bearer token lacks a valid org or role.", code="invalid-token", reason="claims"
            ) from None
        if role is Role.ministry and ministry is None:
            raise Unauthorized("A ministry token must carry a ministry code.", code="invalid-token", reason="claims")
        try:
            exp, nbf = float(claims["exp"]), float(claims.get("nbf", 0))
        except (TypeError, ValueError):
            raise _invalid("its `exp` or `nbf` is not a number.", "claims") from None
        principal = Principal(org=org, role=role, ministry=ministry, subject=str(claims.get("sub", "")))
        return principal, exp, nbf


def _reason(exc: jwt.PyJWTError) -> str:
    """A stable word for a PyJWT failure: the problem's `reason`."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return "signature"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not-yet-valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError | jwt.InvalidIssuedAtError):
        return "claims"
    if isinstance(exc, jwt.DecodeError):
        return "malformed"
    return "invalid"


_bearer = HTTPBearer(auto_error=False, description="JWT bearer token (`batterytrace token` makes one).")


#: Where `shared.limits.IdentityFirst` keeps the identity it decided from the headers, in the ASGI scope's
#: state: (token, Principal or the Problem that refused the token, whether the Principal's participant was
#: found registered and active; False when the directory could not be asked).
IDENTITY = "bt_identity"


async def optional_principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    if creds is None:
        if request.headers.get("authorization"):
            raise Unauthorized(
                "The Authorization header must be 'Bearer <token>'.", code="invalid-token", reason="malformed"
            )
        return None
    return await identify(request, creds.credentials)


async def identify(conn: HTTPConnection, token: str) -> Principal:
    """The principal a bearer token names, for an HTTP request or a WebSocket handshake: the token verified (or
    the decision `IdentityFirst` made from the headers already) and its org a registered, active participant with
    the token's role (shared/participants.py)."""
    decided: tuple[str, Principal | Problem, bool] | None = conn.scope.get("state", {}).get(IDENTITY)
    if decided is not None and decided[0] == token:  # verified from the headers already
        if isinstance(decided[1], Problem):
            raise decided[1]
        principal: Principal = decided[1]
        admitted = decided[2]
    else:
        verifier: TokenVerifier = conn.app.state.verifier
        principal = await verifier.verify(token)
        admitted = False
    if not admitted:  # IdentityFirst checked the participant already unless its directory did not answer
        await admit(conn, principal)
    conn.state.principal = principal  # for the audit trail and the logs
    return principal


async def admit(conn: HTTPConnection, principal: Principal) -> None:
    """401 unless the principal's org is a registered, active participant with its role (shared/participants.py)."""
    ministry = principal.ministry.value if principal.ministry else None
    await check_participant(conn, principal.org, principal.role.value, ministry)


async def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthorized("This endpoint needs a bearer token.")
    return principal


async def principal_of(request: Request) -> Principal | None:
    """`OptionalPrincipal` for a hot route that takes the request instead: FastAPI solves no dependencies for it."""
    return await optional_principal(request, await _bearer(request))


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


async def readable_groups(
    principal: Principal, prove: Callable[[], Awaitable[access.Relation]], refusal: str
) -> frozenset[access.FieldGroup]:
    """What of one battery the principal reads (shared.access.field_groups), the relation proved by `prove` (from
    the caller's own data) unless the principal sees every battery; 403 `not-handled` with `refusal` as its
    detail when the relation proves nothing."""
    if access.sees_every_battery(principal):
        return access.EVERY_GROUP  # without asking for the relation
    relation = await prove()
    if not access.may_read_battery(principal, relation):
        raise Forbidden(refusal, code="not-handled")
    return access.field_groups(principal, relation)


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
