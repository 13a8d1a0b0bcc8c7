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
    websocket_max_message_bytes: int = Field(
        64 * 2**20, ge=1024, description="Largest message the gateway passes from a service's WebSocket (a page)."
    )
    log_level: str = "INFO"
