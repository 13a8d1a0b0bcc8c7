"""The EPCIS gateway's settings (env prefix BT_GATEWAY_). It holds no data: no database, no broker."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BT_GATEWAY_", extra="ignore")
    events_url: str = Field("http://127.0.0.1:8002", description="Events service base URL (EPCIS capture).")
    portal_url: str = Field("http://127.0.0.1:8003", description="Portal base URL (EPCIS query).")
    connect_timeout_s: float = Field(5.0, gt=0, description="Connecting to a service.")
    read_timeout_s: float = Field(120.0, gt=0, description="Waiting for a service's answer (a 5,000-event capture).")
    max_connections: int = Field(200, ge=1, description="Connections kept open to each service.")
    log_level: str = "INFO"
