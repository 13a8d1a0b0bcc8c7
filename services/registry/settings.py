"""The registry's settings (env prefix BT_REGISTRY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BT_REGISTRY_", extra="ignore")
    bulk_max_items: int = 10_000
