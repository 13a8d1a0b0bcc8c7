"""Signed passports: every passport is also served as a compact JWS (RFC 7515, EdDSA over Ed25519, RFC 8037),
verifiable offline with the keys the portal publishes at `/.well-known/jwks.json` (RFC 7517; `kid` is the
key's RFC 7638 thumbprint). The JWS library does the signing; this module holds the key and the headers."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

log = logging.getLogger("batterytrace.portal.passports")

#: The JWS `typ` of a signed passport (RFC 7515 §4.1.9: a media type without "application/").
TYP = "batterytrace-passport+json"
MEDIA_TYPE = "application/jose"


@dataclass(frozen=True)
class PassportSigner:
    key: Ed25519PrivateKey
    kid: str

    @classmethod
    def create(cls, key_file: Path | None) -> PassportSigner:
        if key_file is None:
            log.warning("no passport signing key configured: passports are signed with a key made for this process")
            key = Ed25519PrivateKey.generate()
        else:
            loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"{key_file} is not an Ed25519 private key")
            key = loaded
        return cls(key, thumbprint(OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)))

    def sign(self, passport: dict[str, Any]) -> str:
        payload = orjson.dumps(passport, option=orjson.OPT_SORT_KEYS)
        return jwt.api_jws.encode(payload, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": TYP})

    def jwks(self) -> dict[str, Any]:
        public = OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members (crv, kty, x for OKP), sorted, no whitespace; base64url."""
    canonical = orjson.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
