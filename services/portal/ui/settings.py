"""Settings of the web UI (`BT_PORTAL_UI_*`). The UI verifies its session cookie with the portal's own
`TokenVerifier` (`BT_PORTAL_JWT_*`), so a cookie token is exactly as good as a bearer token."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UISettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BT_PORTAL_UI_", extra="ignore")

    dev_signin: bool = Field(
        False, description="Offer the demo sign-in page that mints local tokens. Never in production."
    )
    dev_signing_key_file: Path | None = Field(
        None, description="PEM private key the demo sign-in signs with (`make dev` uses .data/keys/jwt-private.pem)."
    )
    session_ttl_s: int = Field(8 * 3600, description="Lifetime of a demo sign-in token and its cookie.")
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (set true behind HTTPS).")
    oidc_authorize_url: str | None = Field(None, description="The provider's authorization endpoint.")
    oidc_client_id: str | None = Field(None, description="This portal's client ID at the provider.")
    oidc_redirect_uri: str | None = Field(
        None, description="Where the provider sends the user back: …/ui/oidc/callback."
    )
    oidc_scope: str = Field("openid profile", description="Scopes asked for.")
    ops_refresh_s: int = Field(5, description="How often the operations page refreshes itself.")

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_authorize_url and self.oidc_client_id and self.oidc_redirect_uri)
