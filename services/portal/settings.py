"""The portal's settings (env prefix BT_PORTAL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import LINGER_DOC, LingerMs, ServiceSettings


class PortalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BT_PORTAL_", extra="ignore")
    consumer_group: str = "batterytrace-portal"
    #: The read models' consumers linger by default: single events otherwise arrive one per fetch.
    kafka_consumer_linger_ms: LingerMs = Field(50, description=LINGER_DOC)
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
    subscriptions_enabled: bool = Field(True, description="Run the EPCIS subscription dispatcher in this process.")
    subscription_allow_private_dest: bool = Field(
        False,
        description="Allow webhook destinations on loopback/private/reserved addresses (tests and dev only: SSRF).",
    )
    subscription_batch: int = Field(500, ge=1, le=1000, description="Events per webhook POST at most.")
    subscription_timeout_s: float = Field(5.0, gt=0, description="How long a subscriber has to answer a POST.")
    subscription_retry_base_s: float = Field(0.5, gt=0, description="First retry delay (doubles per failure).")
    subscription_retry_cap_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    subscription_poll_s: float = Field(1.0, gt=0, description="Dispatcher poll when no notification arrives.")
    subscription_stream_idle_s: float = Field(
        5.0, gt=0, description="A streaming subscription is looked at this often even without a notification."
    )
    subscription_lease_s: float = Field(
        10.0,
        gt=0,
        description="How long a process holds a claimed subscription: after a crash, its subscriptions resume this "
        "much later (a graceful stop gives them up at once). Above the POST timeout.",
    )
    subscription_claim: int = Field(50, ge=1, description="Subscriptions one dispatcher round delivers at once.")
