"""The rules of a recall removal, pure: REMOVED with reason `recall` names a known campaign that covers the
battery (shared.contract.recalls.covers), and must name one when a known campaign covers it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.events.lifecycle.machine import Refusal, field_error, refuse
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
        return refuse(
            "unknown-recall-campaign",
            f"{FIELD}: no recall campaign '{campaign_id}' is registered (MOLIT registers them in the registry).",
            field_error(FIELD, "known-campaign", "must name a registered recall campaign"),
        )
    c = Campaign.model_validate(campaign)
    if not covers(c, manufacturer=manufacturer, model_id=model_id, serial=serial, vins=vins):
        return refuse(
            "recall-not-covering",
            f"{FIELD}: campaign '{c.id}' covers {c.maker}'s "
            f"{', '.join(c.models) if c.models else 'batteries'}"
            f"{' in its serial or VIN ranges' if c.serial_ranges or c.vin_ranges else ''}, not this battery.",
            field_error(FIELD, "campaign-covers-battery", "the campaign must cover this battery"),
        )
    return None


def unnamed_recall_refusal(
    campaigns: Sequence[Mapping[str, Any]],
    *,
    manufacturer: str | None,
    model_id: str | None,
    serial: str | None,
    vins: Sequence[str],
) -> Refusal | None:
    """A recall removal without `recall_campaign`, of a battery that known campaigns cover: name one of them.
    (A recall no registered campaign covers, such as an OEM's own, is accepted without one.)"""
    covering = sorted(
        c.id
        for c in (Campaign.model_validate(x) for x in campaigns)
        if covers(c, manufacturer=manufacturer, model_id=model_id, serial=serial, vins=vins)
    )
    if not covering:
        return None
    return refuse(
        "recall-campaign-required",
        f"{FIELD}: recall campaigns cover this battery ({', '.join(covering)}); a recall removal names the one it "
        "answers.",
        field_error(FIELD, "names-covering-campaign", f"one of {', '.join(covering)}"),
    )
