"""The settings every service has. Each service declares its own subclass, with its own env prefix, in
`services/<name>/settings.py`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set the env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/batterytrace",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    database_pool_size: int = Field(20, ge=1, description="Connections kept per process (plus half as many overflow).")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated bootstrap servers.")
    kafka_topic_prefix: str = Field("", description="Prefix for every topic name (isolation in tests).")
    kafka_partitions: int = Field(4, ge=1, description="Partitions for topics the service creates.")
    kafka_session_timeout_ms: int = Field(10_000, ge=100, description="Consumer group session timeout.")
    kafka_heartbeat_interval_ms: int = Field(1_000, ge=50, description="Consumer group heartbeat interval.")
    jwt_public_key_file: Path | None = Field(None, description="PEM public key that verifies bearer tokens.")
    jwt_public_key: str | None = Field(None, description="PEM public key inline (instead of the file).")
    jwt_jwks_url: str | None = Field(None, description="OIDC JWKS URL (instead of a static key).")
    jwt_audience: str = "batterytrace"
    jwt_issuer: str = "batterytrace"
    jwt_algorithms: list[str] = ["EdDSA", "RS256", "ES256"]
    relay_enabled: bool = Field(True, description="Run the outbox relay inside the service process.")
    relay_batch_size: int = Field(2000, ge=1)
    relay_idle_sleep_s: float = Field(0.02, gt=0)
    relay_standby_poll_s: float = Field(
        0.5, gt=0, description="How often a standby relay tries to take the outbox's leader lock (takeover delay)."
    )
    outbox_retention_days: float = Field(
        7.0, ge=0, description="Published outbox rows older than this are pruned by the relay leader (days)."
    )
    outbox_prune_interval_s: float = Field(600.0, gt=0, description="Seconds between outbox prunes.")
    consumers_enabled: bool = Field(True, description="Run the Kafka consumers inside the service process.")
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Ceiling on every endpoint's body limit (each is twice its largest legal body; 413 above).",
    )
    default_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Body limit of endpoints that declare no largest legal body."
    )
    large_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Endpoints whose body limit is above this count as large-body endpoints."
    )
    large_bodies_in_flight: int = Field(
        2, ge=1, description="Requests to large-body endpoints handled at once per process (others wait)."
    )
    large_body_wait_s: float = Field(
        30.0, gt=0, description="How long a large-body request waits for a slot before 503 (its body unread)."
    )
    rate_limit_per_s: float = Field(2000.0, gt=0, description="Sustained requests per second per participant.")
    rate_limit_burst: float = Field(4000.0, ge=1, description="Burst size per participant.")
    rate_limit_max_keys: int = Field(
        100_000, ge=1, description="Rate limit buckets kept; the least recently used is evicted first."
    )
    bootstrap_admin_org: str = Field(
        "BT-ADMIN", description="The admin org admitted before any participant exists (registers the first ones)."
    )
    participants_ttl_s: float = Field(
        20.0, gt=0, le=30, description="How long a participant look-up is cached (a suspension's worst-case delay)."
    )
    participants_unchecked_for_unit_tests: bool = Field(
        False, description="Turn off the participant checks (tokens, receivers). Unit-level test fixtures only."
    )
    log_level: str = "INFO"
    log_json: bool = True

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"
