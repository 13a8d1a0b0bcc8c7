"""Recall campaigns as MOLIT registers them and the registry answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contract.recalls import Campaign
from shared.validation import documented

EXAMPLE: dict[str, Any] = {
    "id": "MOLIT-2026-017",
    "title": "Cell swelling risk, NCM packs made in Ochang, Jan 2026",
    "maker": "LGES",
    "models": ["NCM-PACK-77"],
    "serial_ranges": [{"first": "SN00000000", "last": "SN00099999"}],
    "vin_ranges": [],
    "opened_on": "2026-11-20",
}


class CampaignIn(Campaign):
    model_config = documented(EXAMPLE, extra="forbid")


class CampaignOut(Campaign):
    registered_by: str
    registered_at: datetime
