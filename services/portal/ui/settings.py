"""Settings of the web UI (`BT_PORTAL_UI_*`). Production sign-in is OpenID Connect against any standard
provider (discovery from `oidc_issuer`); the demo sign-in exists only when `batterytrace dev` runs on a
loopback host (it sets `dev_signin`) and only answers requests from the machine itself."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BT_PORTAL_UI_", extra="ignore")

    dev_signin: bool = Field(
        False,
        description="The dev command's flag: offer the demo sign-in that mints local tokens (loopback only). "
        "Set by `batterytrace dev` on a loopback host; never in production.",
    )
    dev_signing_key_file: Path | None = Field(
        None, description="PEM private key the demo sign-in signs with (`make dev` uses .data/keys/jwt-private.pem)."
    )
    session_ttl_s: int = Field(8 * 3600, description="Lifetime of a UI session (server-side) and its cookie.")
    cookie_secure: bool | None = Field(
        None, description="Mark the UI's cookies Secure. Unset: Secure unless the dev command's flag is set."
    )
    oidc_issuer: str | None = Field(
        None, description="The OIDC provider's issuer URL; its `/.well-known/openid-configuration` is read."
    )
    oidc_client_id: str | None = Field(None, description="This portal's client ID at the provider.")
    oidc_client_secret: SecretStr | None = Field(
        None, description="This portal's client secret (client_secret_basic); unset for a public client."
    )
    oidc_redirect_uri: str | None = Field(
        None, description="Where the provider sends the user back: …/ui/oidc/callback."
    )
    oidc_scope: str = Field("openid profile", description="Scopes asked for (space-separated; `openid` needed).")
    oidc_org_claim: str = Field("org", description="ID-token claim naming the participant (organisation code).")
    oidc_role_claim: str = Field("role", description="ID-token claim naming the participant's role.")
    oidc_ministry_claim: str = Field("ministry", description="ID-token claim naming the ministry (ministry role).")
    oidc_timeout_s: float = Field(10.0, description="Timeout of each call to the provider.")
    oidc_keys_refresh_s: float = Field(
        300.0, gt=0, description="Seconds after which the provider's discovery document and JWKS are fetched again."
    )
    oidc_keys_stale_s: float = Field(
        3600.0,
        gt=0,
        description="How long after their last fetch the provider's keys still verify ID tokens while it does "
        "not answer; beyond it sign-ins are refused (401 `keys-unavailable`).",
    )
    oidc_keys_min_refetch_s: float = Field(
        10.0, ge=0, description="Least seconds between fetches caused by an ID token the keys held do not verify."
    )
    ops_refresh_s: int = Field(5, description="How often the operations page refreshes itself.")

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_redirect_uri)

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else not self.dev_signin
