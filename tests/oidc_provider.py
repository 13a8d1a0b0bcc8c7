"""A small OpenID Connect provider for the sign-in tests, built on authlib's authorization-server components
(Flask integration): discovery, JWKS, an authorize endpoint with a login form, a token endpoint. One
confidential client and one test user. Policy: the authorization code flow only, PKCE with S256 required,
a nonce required. Run as its own process: `python -m tests.oidc_provider CONFIG.json` (127.0.0.1, the
config's port), where the config names the issuer, the client, the user and its claims.

With `"rogue_signing": true` the provider signs ID tokens with a key other than the one its JWKS publishes
(same `kid`): what an attacker who does not hold the provider's key can do at best."""

from __future__ import annotations

import hmac
import html
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core import grants as oidc_grants
from flask import Flask, Response, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

KID = "test-key-1"


@dataclass
class User:
    sub: str
    password: str
    claims: dict[str, Any]


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in {"openid", "profile"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return "0"

    def get_amr(self) -> list[str]:
        return ["pwd"]


def create_app(config: dict[str, Any]) -> Flask:
    issuer = config["issuer"]
    client = Client(config["client_id"], config["client_secret"], config["redirect_uri"])
    user = User(config["user"]["sub"], config["user"]["password"], config["user"]["claims"])
    key = RSAKey.generate_key(2048, parameters={"kid": KID, "alg": "RS256", "use": "sig"})
    signing = RSAKey.generate_key(2048, parameters={"kid": KID}) if config.get("rogue_signing") else key
    codes: dict[str, Code] = {}
    nonces: set[str] = set()

    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            codes[code] = Code(
                code,
                client.client_id,
                req.payload.redirect_uri,
                req.payload.scope,
                req.user,
                data.get("nonce"),
                data.get("code_challenge"),
                data.get("code_challenge_method"),
            )
            if data.get("nonce"):
                nonces.add(data["nonce"])

        def query_authorization_code(self, code: str, c: Any) -> Code | None:
            found = codes.get(code)
            return found if found and found.client_id == c.get_client_id() else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> User:
            return authorization_code.user

    class OpenIDCode(oidc_grants.OpenIDCode):  # type: ignore[misc]
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return nonce in nonces

        def resolve_client_private_key(self, c: Any) -> Any:
            return signing

        def get_client_algorithm(self, c: Any) -> str:
            return "RS256"

        def get_client_claims(self, c: Any) -> dict[str, Any]:
            return {"iss": issuer, "aud": [c.get_client_id()], "exp": int(time.time()) + 300}

        def get_encode_header(self, c: Any) -> dict[str, Any]:
            return {"alg": "RS256", "kid": KID}

        def generate_user_info(self, u: User, scope: str) -> UserInfo:
            return UserInfo(sub=u.sub, **u.claims)

    app = Flask(__name__)
    server = AuthorizationServer(
        app,
        query_client=lambda cid: client if cid == client.client_id else None,
        save_token=lambda token, req: None,
    )
    server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True), OpenIDCode(require_nonce=True)])

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": ["openid", "profile"],
            }
        )

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify({"keys": [key.as_dict(private=False)]})

    def refuse(message: str) -> Response:
        return Response(f"<p id=error>{html.escape(message)}</p>", status=400, mimetype="text/html")

    def policy_refusal() -> str | None:
        if request.values.get("code_challenge_method") != "S256" or not request.values.get("code_challenge"):
            return "PKCE with S256 is required"
        return None

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        if refusal := policy_refusal():
            return refuse(refusal)
        try:
            server.get_consent_grant(end_user=None)
        except OAuth2Error as exc:
            return refuse(f"{exc.error}: {exc.description}")
        if request.method == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in request.args.items()
            )
            return Response(
                f'<form method="post" action="/authorize">{hidden}'
                '<input name="username"><input name="password" type="password"><button>Sign in</button></form>',
                mimetype="text/html",
            )
        ok = request.form.get("username") == user.sub and hmac.compare_digest(
            request.form.get("password", "").encode(), user.password.encode()
        )
        if not ok:
            return refuse("wrong username or password")
        return server.create_authorization_response(grant_user=user)

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    return app


def main() -> None:
    config = json.loads(open(sys.argv[1]).read())
    app = create_app(config)
    app.secret_key = secrets.token_hex(16)
    make_server("127.0.0.1", int(config["port"]), app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
