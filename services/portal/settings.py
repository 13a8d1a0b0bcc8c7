"""The portal's settings (env prefix BT_PORTAL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PortalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BT_PORTAL_", extra="ignore")
    consumer_group: str = "batterytrace-portal"
    events_url: str = Field("http://127.0.0.1:8002", description="Events service base URL.")
    registry_url: str = Field("http://127.0.0.1:8001", description="Registry base URL (stream monitoring).")
    self_url: str = Field("http://127.0.0.1:8003", description="This portal's own base URL (stream monitoring).")
    log_key: str | None = Field(
        None,
        description="The transparency log's note verifier key (`GET /v1/log/key` of the events service): only "
        "checkpoints signed by it are shown. Unset: the key of the first checkpoint received is kept.",
    )
    passport_signing_key_file: Path | None = Field(
        None,
        description="PEM Ed25519 private key that signs passports (JWS). Unset: a key made per process (dev only).",
    )
