"""The rule of a recall removal, pure: REMOVED with reason `recall` names a known campaign that covers the
battery (shared.contract.recalls.covers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.events.lifecycle.machine import Refusal, field_error
from shared.contract.recalls import Campaign, covers

FIELD = "data.recall_campaign"


def recall_refusal(
    campaign_id: str,
    campaign: Mapping[str, Any] | None,
    *,
    manufacturer: str | None,
    model_id: str | None,
    serial: str | None,
    vins: Sequence[str],
) -> Refusal | None:
    if campaign is None:
        return Refusal(
            422,
            "unknown-recall-campaign",
            "Unknown recall campaign",
            f"{FIELD}: no recall campaign '{campaign_id}' is registered (MOLIT registers them in the registry).",
            (field_error(FIELD, "known-campaign", "must name a registered recall campaign"),),
        )
    c = Campaign.model_validate(campaign)
    if not covers(c, manufacturer=manufacturer, model_id=model_id, serial=serial, vins=vins):
        return Refusal(
            422,
            "recall-not-covering",
            "The recall campaign does not cover this battery",
            f"{FIELD}: campaign '{c.id}' covers {c.maker}'s "
            f"{', '.join(c.models) if c.models else 'batteries'}"
            f"{' in its serial or VIN ranges' if c.serial_ranges or c.vin_ranges else ''}, not this battery.",
            (field_error(FIELD, "campaign-covers-battery", "the campaign must cover this battery"),),
        )
    return None
