"""The settings every service has. Each service declares its own subclass, with its own env prefix, in
`services/<name>/settings.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster and what this process may do to it: every client of the system (the
    services' producers, consumers and admin clients, and the ops commands) is built from these by
    `shared.kafka.client_options`. The defaults suit the embedded broker (plaintext on loopback)."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated bootstrap servers.")
    kafka_topic_prefix: str = Field("", description="Prefix for every topic name (isolation in tests).")
    kafka_partitions: int = Field(4, ge=1, description="Partitions for topics the service creates.")
    kafka_create_topics: bool = Field(
        True,
        description="Create missing topics (the relay, the consumers, dead letters). Off in production: the "
        "deploy/ topics job creates every topic with its partitions, replication and retention, and a "
        "missing topic is an error, never a topic made with this process's defaults.",
    )
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor of topics this process creates.")
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (production: SASL_SSL)."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (one per service, see deploy/README.md).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (or the file below).")
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (a mounted secret); read at start, whitespace trimmed."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle that verifies the brokers (SSL, SASL_SSL); unset: the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS), with the key.")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of the client key, if encrypted.")
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host connected to (leave on)."
    )

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(f"kafka_sasl_username is required with {self.kafka_security_protocol}")
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                raise ValueError(
                    f"kafka_sasl_password or kafka_sasl_password_file is required with {self.kafka_security_protocol}"
                )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together (a client certificate and its key)")
        return self

    def sasl_password(self) -> str | None:
        """The SASL password: the setting, else the file's content."""
        if self.kafka_sasl_password is not None:
            return self.kafka_sasl_password.get_secret_value()
        if self.kafka_sasl_password_file is not None:
            return self.kafka_sasl_password_file.read_text().strip()
        return None

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"


#: A consumer's linger (`ConsumerLoop.linger_ms`), in milliseconds.
LingerMs = Annotated[int, Field(ge=0, le=1_000)]
LINGER_DOC = (
    "After a fetch shorter than a full batch, wait this long and take what arrived meanwhile into the same batch: "
    "one transaction, offset commit and position save for many records instead of one each (a stream of single "
    "events). Each batch's records become visible up to this much later. 0: no wait."
)


class ServiceSettings(KafkaSettings):
    """Settings every service has. Subclasses set the env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/batterytrace",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    database_pool_size: int = Field(20, ge=1, description="Connections kept per process (plus half as many overflow).")
    kafka_session_timeout_ms: int = Field(10_000, ge=100, description="Consumer group session timeout.")
    kafka_heartbeat_interval_ms: int = Field(1_000, ge=50, description="Consumer group heartbeat interval.")
    kafka_consumer_linger_ms: LingerMs = Field(0, description=LINGER_DOC)
    jwt_public_key_file: Path | None = Field(None, description="PEM public key that verifies bearer tokens.")
    jwt_public_key: str | None = Field(None, description="PEM public key inline (instead of the file).")
    jwt_jwks_url: str | None = Field(None, description="OIDC JWKS URL (instead of a static key).")
    jwt_jwks_refresh_s: float = Field(300.0, gt=0, description="Seconds between background refreshes of the JWKS.")
    jwt_jwks_stale_s: float = Field(
        3600.0,
        gt=0,
        description="How long after its last successful fetch a JWKS still verifies tokens while the provider "
        "does not answer; beyond it tokens are refused (401 `keys-unavailable`).",
    )
    jwt_jwks_timeout_s: float = Field(5.0, gt=0, description="Timeout of one JWKS fetch.")
    jwt_jwks_min_refetch_s: float = Field(
        30.0, ge=0, description="Least seconds between fetches caused by a token naming an unknown key ID."
    )
    jwt_audience: str = "batterytrace"
    jwt_issuer: str = "batterytrace"
    jwt_algorithms: list[str] = ["EdDSA", "RS256", "ES256"]
    relay_enabled: bool = Field(True, description="Run the outbox relay inside the service process.")
    relay_batch_size: int = Field(2000, ge=1)
    relay_idle_sleep_s: float = Field(0.02, gt=0, description="Pause after a batch that emptied the outbox (s).")
    relay_idle_max_s: float = Field(
        0.1,
        gt=0,
        description="Longest pause while the outbox stays empty: each empty poll doubles the pause up to this, so an "
        "idle relay polls ten times a second, not fifty; the first row after a quiet spell waits at most this long.",
    )
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
